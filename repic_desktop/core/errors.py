"""The one base class of every error whose message is written for the user, and the one function that
turns any exception into a line a user can read.

Why: the CLI prints a RepicError as one `repic: error: ...` line and the GUI shows it as is; anything
else is a bug or an environment problem and gets its type named. Before this, the CLI listed the
user-facing classes it knew and the GUI had three message helpers that each knew a different list.
"""
from __future__ import annotations


class RepicError(Exception):
    """A problem the user can act on; str(exc) is one or two plain sentences, shown as is."""


class UserError(RepicError):
    """Bad input on the command line or in a dialog (unknown photo, nothing to do, conflicting options)."""


def user_message(exc: BaseException) -> str:
    """One readable line for an exception (no traceback): our own errors are written for users; file
    system errors say what and where; anything else names its type so a report can be matched to code."""
    if isinstance(exc, RepicError):
        return str(exc)
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    text = str(exc).strip().splitlines()
    return f"unexpected error ({type(exc).__name__}: {text[0][:300] if text else 'no details'})"

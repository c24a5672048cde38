"""Text the command line prints: nothing in it may act on a terminal, and all of it is valid UTF-8.

File names, captions and names come from other people's files and libraries; printed raw, an ESC sequence
in one could clear the screen, retitle the window or hide text, and a right-to-left override could make
a file name read backwards. A file name that is not UTF-8 reaches us as text with lone surrogates
(os.fsdecode), which a UTF-8 stdout refuses: JSON gets them as \\uXXXX escapes (what json's ensure_ascii
writes; Python reads the exact name back), text gets the original byte as \\xNN.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from typing import Any, Callable

# C0/C1 controls except newline and tab, text-direction marks/overrides/isolates, line/paragraph separators.
_TERMINAL_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate_escape(ch: str) -> str:
    n = ord(ch)
    return f"\\x{n - 0xDC00:02x}" if n >= 0xDC80 else f"\\u{n:04x}"


def terminal_safe(text: str) -> str:
    """`text` with everything a terminal would interpret written as a visible escape (\\x1b, \\u202e), and
    the undecodable bytes of a non-UTF-8 file name as \\xNN."""
    text = _LONE_SURROGATE.sub(lambda m: _surrogate_escape(m.group(0)), text)
    return _TERMINAL_UNSAFE.sub(lambda m: ascii(m.group(0))[1:-1], text)


def json_safe(json_text: str) -> str:
    """JSON text (ensure_ascii=False) with lone surrogates as \\uXXXX escapes, so it can be written as UTF-8."""
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", json_text)


def error_line(text: str) -> str:
    """An error message as the one terminal-safe line the CLIs promise: a newline or tab inside it (a file
    name typed with one) is written as \\n / \\t."""
    return terminal_safe(text).replace("\n", "\\n").replace("\t", "\\t")


# ---- --json: nothing but our JSON on stdout -------------------------------------------------------------

_JSON_OUT: list[Any] = []  # the stream --json output goes to while fd 1 is pointed at stderr


def json_stream():
    """Where --json output goes: the real stdout, even while fd 1 is redirected during a command."""
    return _JSON_OUT[-1] if _JSON_OUT else sys.stdout


@contextlib.contextmanager
def stdout_for_json_only(args):
    """With --json, nothing but our JSON may reach stdout: a C library (exiv2, libtiff, a CUDA runtime)
    writes to file descriptor 1 behind Python's back. During the command fd 1 points to stderr, and the
    JSON goes to a duplicate of the original stdout. (Only when sys.stdout is fd 1: an in-process caller
    that captured sys.stdout gets the JSON there.)"""
    try:
        real = getattr(args, "json", False) and sys.stdout.fileno() == 1
    except (AttributeError, ValueError, OSError):
        real = False
    if not real:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    out = open(saved, "w", encoding="utf-8", closefd=False)
    _JSON_OUT.append(out)
    try:
        yield
    finally:
        _JSON_OUT.pop()
        try:
            out.flush()
        except (BrokenPipeError, OSError):
            pass
        try:
            sys.stdout.flush()
        except (BrokenPipeError, OSError):
            pass
        os.dup2(saved, 1)
        os.close(saved)


def write_json(data: Any, indent: int | None = 2) -> None:
    """One JSON document (or, with indent=None, one JSON line) on the --json stream."""
    out = json_stream()
    out.write(json_safe(json.dumps(data, ensure_ascii=False, indent=indent)) + "\n")
    out.flush()


def emit(args, data: Any, text: Callable[[], str] | str) -> None:
    """A command's result: `data` as JSON with --json, else `text` (or text()) for a person."""
    if getattr(args, "json", False):
        write_json(data)
    else:
        out = text() if callable(text) else text
        if out:
            print(terminal_safe(out))

"""What `repic` prints (--json streams, emit, progress bars); the terminal-safety rules are in core.terminal.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any, Callable

from ..core.terminal import json_safe, terminal_safe

# C0/C1 controls except newline and tab, text-direction marks/overrides/isolates, line/paragraph separators.
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


def progress_bar(args: argparse.Namespace, desc: str):
    """A tqdm bar on stderr, or None with --json/--quiet (stdout stays machine-readable)."""
    if getattr(args, "json", False) or getattr(args, "quiet", False):
        return None
    from tqdm import tqdm

    return tqdm(total=0, unit="photo", desc=desc, file=sys.stderr, disable=None)


def bar_progress(bar) -> Callable[[int, int, str], None]:
    """The `progress(done, total, path)` callback of scans and exports, drawing on `bar` (may be None)."""
    def progress(done: int, total: int, path: str) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()
    return progress

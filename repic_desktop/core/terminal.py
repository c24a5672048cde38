"""Text the command line prints: nothing in it may act on a terminal, and all of it is valid UTF-8.

File names, captions and names come from other people's files and libraries; printed raw, an ESC sequence
in one could clear the screen, retitle the window or hide text, and a right-to-left override could make
a file name read backwards. A file name that is not UTF-8 reaches us as text with lone surrogates
(os.fsdecode), which a UTF-8 stdout refuses: JSON gets them as \\uXXXX escapes (what json's ensure_ascii
writes; Python reads the exact name back), text gets the original byte as \\xNN.
"""
from __future__ import annotations

import re


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

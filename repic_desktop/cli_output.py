"""Text the command line prints for a person: nothing in it may act on their terminal.

File names, captions and names come from other people's files and libraries; printed raw, an ESC sequence
in one could clear the screen, retitle the window or hide text, and a right-to-left override could make
a file name read backwards.
"""
from __future__ import annotations

import re

# C0/C1 controls except newline and tab, text-direction marks/overrides/isolates, line/paragraph separators.
_TERMINAL_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def terminal_safe(text: str) -> str:
    """`text` with everything a terminal would interpret written as a visible escape (\\x1b, \\u202e)."""
    return _TERMINAL_UNSAFE.sub(lambda m: ascii(m.group(0))[1:-1], text)

"""argparse value types shared by `repic` and `repic-train`: a bad number or text is a usage error (exit 2,
one line naming the option) before any library, job or model is touched.

Ranges are the ones the value is used with (a library id is an SQLite integer, a seed is numpy's 32 bits);
limits that belong to a service (caption batch sizes, pixel limits) come from that service's constants.
"""
from __future__ import annotations

import argparse
import math
import re
import unicodedata
from typing import Callable

SQLITE_MAX_INT = 2 ** 63 - 1
SEED_MAX = 2 ** 32 - 1  # numpy / torch manual seeds
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")  # as captioning.models (which imports torch helpers)


def _parse_int(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def whole_number(lo: int, hi: int = SQLITE_MAX_INT, *, also: tuple[int, ...] = ()) -> Callable[[str], int]:
    """An int from lo to hi (or one of the special values in `also`, e.g. -1 meaning "use epochs")."""
    def parse(text: str) -> int:
        value = _parse_int(text)
        if value in also or lo <= value <= hi:
            return value
        extra = "".join(f" or {a}" for a in also)
        raise argparse.ArgumentTypeError(f"must be a whole number from {lo} to {hi}{extra} (got {text!r})")
    parse.__name__ = "whole number"  # argparse names the type in its own messages
    return parse


record_id = whole_number(1)  # a row id in the library (photo, job, cluster, face): an SQLite integer
record_id.__name__ = "id"


def number(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Callable[[str], float]:
    """A finite float within [lo, hi] (an open end when lo_open / hi_open)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        ok = (math.isfinite(value) and (lo < value if lo_open else lo <= value)
              and (value < hi if hi_open else value <= hi))
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a number {'above' if lo_open else 'from'} {lo:g} "
                                             f"{'and below' if hi_open else 'to'} {hi:g} (got {text!r})")
        return value
    parse.__name__ = "number"
    return parse


def control_character(text: str) -> str | None:
    """The first control, format or line/paragraph separator character in text (tabs and newlines too)."""
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            return ch
    return None


def text(value: str) -> str:
    """One line of text (a request, an info line, a path, a hub id): no control characters, which would
    be written into the library or settings and reach a terminal or a prompt."""
    bad = control_character(value)
    if bad is not None:
        raise argparse.ArgumentTypeError(f"{value!r} contains the control character {bad!r}")
    return value


text.__name__ = "text"


def nonempty_text(value: str) -> str:
    """As `text`, and not empty or blank (an empty value would silently mean "the default")."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text(value)


nonempty_text.__name__ = "text"


def device(value: str) -> str:
    if not _DEVICE_RE.match(value):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N (got {value!r})")
    return value


device.__name__ = "device"


def nonempty_path(value: str) -> str:
    """An existing file or folder to read: any name a file system allows (control characters included),
    but not empty, which would silently mean the working folder."""
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    return value


nonempty_path.__name__ = "path"


def http_url(value: str) -> str:
    """An http(s) address with a host (a server the user runs); anything else is a usage error."""
    from urllib.parse import urlsplit

    value = nonempty_text(value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an address: {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"give an http:// or https:// address with a host, not {value!r}")
    return value


http_url.__name__ = "address"

"""What every store shares: the link to its library and small SQL helpers."""
from __future__ import annotations

import os
import sqlite3
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Iterable, Sequence

from ..types import fs_bytes

if TYPE_CHECKING:
    from ..library import Library

SQL_CHUNK = 900  # SQLite's default limit on host parameters is 999

PHOTO_COLS = ("id, path, path_bytes, folder, filename, size, mtime_ns, content_hash, format, width, height, "
              "orientation, date_taken, status, current_caption_id")


class Store:
    """One domain of the library (lib.photos, lib.concepts, ...). A store owns no connection of its own: it
    writes through its library's, inside the library's transaction(), so operations spanning stores (a
    merge that also moves retrieval records) stay one transaction."""

    def __init__(self, lib: "Library"):
        self.lib = lib
        self.conn: sqlite3.Connection = lib.conn

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self.lib.transaction()


def chunks(ids: Iterable[int], n: int = SQL_CHUNK) -> Iterable[Sequence[int]]:
    ids = list(ids)
    for i in range(0, len(ids), n):
        yield ids[i:i + n]


def under_folder(under: str | os.PathLike | bytes | None) -> tuple[str, tuple]:
    """WHERE clause for "path_bytes is below this folder": a BLOB range scan means "starts with prefix"
    without LIKE's escaping problems ('0' is the byte after '/')."""
    if under is None:
        return "", ()
    prefix = fs_bytes(under).rstrip(b"/") + b"/"
    return " WHERE path_bytes >= ? AND path_bytes < ?", (prefix, prefix[:-1] + b"0")

"""The photo grid's queries: which photos match a filter (status, person, folder, caption search), and
one page of display rows by primary key. Plain SQLite, no Qt: the browser runs them in workers (the id
list) or on the GUI thread (one page, ~1 ms)."""
from __future__ import annotations

import os
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from .types import fts_query

if TYPE_CHECKING:
    from .library import Library


@dataclass(frozen=True)
class PhotoFilter:
    status: str = "all"               # all | uncaptioned | draft | accepted
    concept_id: int | None = None
    search: str = ""
    folder: str | None = None         # this folder and everything below it
    include_missing: bool = False     # also photos whose file is gone
    suggested: bool = False           # only photos with suggestions waiting for review

    @property
    def is_default(self) -> bool:
        return (self.status == "all" and self.concept_id is None and not self.search.strip() and self.folder is None
                and not self.suggested)


def filter_sql(f: PhotoFilter) -> tuple[str, list[Any]]:
    """JOIN and WHERE clauses (on `photos p`) for a filter: the one photo filter, used by the grid and by
    lib.photos.list/count_photos/photo_listing (`repic photos list`), so both agree on every rule."""
    joins, where, args = "", [] if f.include_missing else ["p.status = 'ok'"], []
    if f.status == "uncaptioned":
        where.append("p.current_caption_id IS NULL")
    elif f.status in ("draft", "accepted"):
        joins = " JOIN captions c ON c.id = p.current_caption_id"
        where.append("c.status = 'draft'" if f.status == "draft" else "c.status != 'draft'")
    if f.concept_id is not None:
        where.append("p.id IN (SELECT photo_id FROM photo_concepts WHERE concept_id = ?)")
        args.append(f.concept_id)
    if f.suggested:
        where.append("p.id IN (SELECT photo_id FROM suggestions WHERE status = 'pending')")
    if f.folder is not None:
        folder = f.folder.rstrip("/") or "/"
        prefix = folder if folder.endswith("/") else folder + "/"
        where.append("(p.folder = ? OR (p.folder >= ? AND p.folder < ?))")
        args += [folder, prefix, prefix[:-1] + "0"]
    if f.search.strip():
        where.append("p.current_caption_id IN (SELECT rowid FROM captions_fts WHERE captions_fts MATCH ?)")
        args.append(fts_query(f.search))
    return joins + (" WHERE " + " AND ".join(where) if where else ""), args


def query_photo_ids(lib: Library, f: PhotoFilter) -> array:
    """Ids of the photos matching `f`, in path order (the grid's order)."""
    sql, args = filter_sql(f)
    out = array("q")
    cur = lib.conn.execute("SELECT p.id FROM photos p" + sql + " ORDER BY p.path_bytes", args)
    while True:
        rows = cur.fetchmany(8192)
        if not rows:
            return out
        out.extend(r[0] for r in rows)


class RowInfo(NamedTuple):
    id: int
    filename: str
    path: str               # file-system path to open (non-UTF-8 names included)
    content_hash: str
    width: int | None
    height: int | None
    folder: str
    caption_status: str | None   # None: no caption yet
    caption: str | None
    names: str              # "Anna, Rex"


def fetch_rows(lib: Library, ids) -> dict[int, RowInfo]:
    ids = list(ids)
    if not ids:
        return {}
    sql = ("SELECT p.id, p.filename, p.path_bytes, p.content_hash, p.width, p.height, p.folder, c.status,"
           " substr(c.text, 1, 400),"
           " (SELECT group_concat(name, ', ') FROM (SELECT co.name AS name FROM photo_concepts pc"
           "   JOIN concepts co ON co.id = pc.concept_id WHERE pc.photo_id = p.id ORDER BY co.position, co.id))"
           " FROM photos p LEFT JOIN captions c ON c.id = p.current_caption_id"
           f" WHERE p.id IN ({','.join('?' * len(ids))})")
    out = {}
    for r in lib.conn.execute(sql, ids):
        out[r[0]] = RowInfo(r[0], r[1], os.fsdecode(r[2]), r[3], r[4], r[5], r[6], r[7], r[8], r[9] or "")
    return out

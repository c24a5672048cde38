"""lib.photos: the photo rows (file facts, found by path, id or content hash), listing and filtering them,
and the record of files an import could not use (skipped_files).

Paths are stored twice: `path_bytes` is the exact file-system name (os.fsencode, so non-UTF-8 names
round-trip) and is what we look up by; `path` is a display string (undecodable bytes replaced).
"""
from __future__ import annotations

import json
import os
import sqlite3
from typing import Any, Iterable, Iterator

from ..photo_queries import PhotoFilter, filter_sql
from ..types import NotFound, Photo, display_path, fs_bytes, now
from .common import PHOTO_COLS, Store, chunks, under_folder


class PhotoStore(Store):
    def get(self, photo_id: int) -> Photo:
        if not -2 ** 63 <= photo_id < 2 ** 63:  # beyond SQLite's integers ("--ref 10**30"): no such photo
            raise NotFound(f"no photo with id {photo_id}")
        row = self.conn.execute(f"SELECT {PHOTO_COLS} FROM photos WHERE id = ?", (photo_id,)).fetchone()
        if row is None:
            raise NotFound(f"no photo with id {photo_id}")
        return Photo(*row)

    def by_path(self, path: str | os.PathLike | bytes) -> Photo | None:
        row = self.conn.execute(f"SELECT {PHOTO_COLS} FROM photos WHERE path_bytes = ?",
                                (fs_bytes(path),)).fetchone()
        return Photo(*row) if row else None

    def resolve(self, ref: str | int) -> Photo:
        """A photo given as an id or a path (as users type them on the command line)."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdecimal() and not os.path.exists(ref)):
            return self.get(int(ref))
        p = self.by_path(os.path.abspath(ref))
        if p is None:
            raise NotFound(f"{ref} is not in the library (import its folder first)")
        return p

    def file_states(self, under: str | os.PathLike | bytes | None = None) -> dict[bytes, tuple[int, int, int, str]]:
        """path_bytes -> (id, size, mtime_ns, status) for every photo (below a folder): the rescan's
        incremental check needs this without opening any file."""
        where, args = under_folder(under)
        sql = "SELECT path_bytes, id, size, mtime_ns, status FROM photos" + where
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in self.conn.execute(sql, args)}

    _INSERT = ("INSERT INTO photos (path, path_bytes, folder, filename, size, mtime_ns, content_hash, format,"
               " width, height, orientation, date_taken, status, added_at, updated_at)"
               " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'ok',?,?)")

    @staticmethod
    def _insert_row(path, *, size: int, mtime_ns: int, content_hash: str, format: str | None = None,
                    width: int | None = None, height: int | None = None, orientation: int = 1,
                    date_taken: str | None = None) -> tuple:
        pb = fs_bytes(path)
        folder, _, filename = pb.rpartition(b"/")
        t = now()
        return (display_path(pb), pb, display_path(folder or b"/"), display_path(filename), size, mtime_ns,
                content_hash, format, width, height, orientation, date_taken, t, t)

    def add(self, path: str | os.PathLike | bytes, **fields) -> int:
        """Add one photo; fields: size, mtime_ns, content_hash, format, width, height, orientation, date_taken."""
        row = self._insert_row(path, **fields)
        with self.transaction():
            cur = self.conn.execute(self._INSERT, row)
            self.conn.execute("DELETE FROM skipped_files WHERE path_bytes = ?", (row[1],))
            return cur.lastrowid

    def update(self, photo_id: int, *, path: str | os.PathLike | bytes | None = None, **fields) -> None:
        """Update a photo's file facts (after a change on disk, or a move: then `path` is the new one)."""
        allowed = {"size", "mtime_ns", "content_hash", "format", "width", "height", "orientation",
                   "date_taken", "status"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"unknown photo fields: {sorted(bad)}")
        if path is not None:
            pb = fs_bytes(path)
            folder, _, filename = pb.rpartition(b"/")
            fields.update(path=display_path(pb), path_bytes=pb, folder=display_path(folder or b"/"),
                          filename=display_path(filename))
        fields["updated_at"] = now()
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction():
            self.conn.execute(f"UPDATE photos SET {cols} WHERE id = ?", (*fields.values(), photo_id))
            if path is not None:
                self.conn.execute("DELETE FROM skipped_files WHERE path_bytes = ?", (fields["path_bytes"],))

    def added_at(self, photo_ids: Iterable[int]) -> dict[int, float]:
        """photo id -> when it was first imported (the rescan tells an unplugged drive by it)."""
        out: dict[int, float] = {}
        for chunk in chunks(photo_ids):
            marks = ",".join("?" * len(chunk))
            out.update(self.conn.execute(f"SELECT id, added_at FROM photos WHERE id IN ({marks})", chunk).fetchall())
        return out

    def mark_missing(self, photo_ids: Iterable[int]) -> int:
        ids = list(photo_ids)
        with self.transaction():
            self.conn.executemany("UPDATE photos SET status = 'missing', updated_at = ? WHERE id = ?",
                                  [(now(), i) for i in ids])
        return len(ids)

    def record_skip(self, path: str | os.PathLike | bytes, reason: str, *, size: int | None = None,
                    mtime_ns: int | None = None) -> None:
        pb = fs_bytes(path)
        with self.transaction():
            self.conn.execute(
                "INSERT INTO skipped_files (path_bytes, path, reason, size, mtime_ns, seen_at) VALUES (?,?,?,?,?,?)"
                " ON CONFLICT(path_bytes) DO UPDATE SET reason = excluded.reason, size = excluded.size,"
                " mtime_ns = excluded.mtime_ns, seen_at = excluded.seen_at",
                (pb, display_path(pb), reason, size, mtime_ns, now()))

    def skipped(self) -> list[dict[str, Any]]:
        return [{"path": r[0], "reason": r[1]} for r in
                self.conn.execute("SELECT path, reason FROM skipped_files ORDER BY path")]

    def skip_state(self, path: str | os.PathLike | bytes) -> tuple[str, int | None, int | None] | None:
        row = self.conn.execute("SELECT reason, size, mtime_ns FROM skipped_files WHERE path_bytes = ?",
                                (fs_bytes(path),)).fetchone()
        return tuple(row) if row else None

    def list(self, *, uncaptioned: bool = False, concept: str | None = None, search: str | None = None,
             folder: str | None = None, include_missing: bool = False, limit: int | None = None,
             offset: int = 0) -> list[Photo]:
        where_sql, args = self._filter(uncaptioned, concept, search, folder, include_missing)
        sql = f"SELECT {', '.join('p.' + c.strip() for c in PHOTO_COLS.split(','))} FROM photos p" + where_sql
        sql += " ORDER BY p.path_bytes"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        return [Photo(*r) for r in self.conn.execute(sql, args)]

    def count(self, *, uncaptioned: bool = False, concept: str | None = None, search: str | None = None,
              folder: str | None = None, include_missing: bool = False) -> int:
        """How many photos list_photos would give without a limit."""
        where_sql, args = self._filter(uncaptioned, concept, search, folder, include_missing)
        return self.conn.execute("SELECT count(*) FROM photos p" + where_sql, args).fetchone()[0]

    # Photo.as_dict's keys, then the current caption and the concept names (a JSON array, library order)
    _LISTING_SQL = (
        "SELECT p.id, p.path, p.folder, p.filename, p.size, p.content_hash, p.format, p.width, p.height,"
        " p.orientation, p.date_taken, p.status, c.text, c.status,"
        " (SELECT json_group_array(name) FROM (SELECT co.name AS name FROM photo_concepts pc"
        "   JOIN concepts co ON co.id = pc.concept_id WHERE pc.photo_id = p.id ORDER BY co.position, co.id))"
        " FROM photos p LEFT JOIN captions c ON c.id = p.current_caption_id")
    _LISTING_KEYS = ("id", "path", "folder", "filename", "size", "content_hash", "format", "width", "height",
                     "orientation", "date_taken", "status", "caption", "caption_status")

    def listing(self, *, uncaptioned: bool = False, concept: str | None = None, search: str | None = None,
                folder: str | None = None, include_missing: bool = False, limit: int | None = None,
                offset: int = 0) -> Iterator[dict[str, Any]]:
        """list_photos' photos as `repic photos list` shows them: Photo.as_dict() plus "caption",
        "caption_status" and "concepts". One statement, streamed from its cursor, so time and memory stay
        flat with the library's size (a query per photo for its caption and another for its concepts, with
        each caption's JSON parsed, took 14 s for 100k photos; bench/library_bench.py --listing)."""
        where_sql, args = self._filter(uncaptioned, concept, search, folder, include_missing)
        sql = self._LISTING_SQL + where_sql + " ORDER BY p.path_bytes"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            args += [-1 if limit is None else limit, offset]
        return self._listing_rows(self.conn.execute(sql, args))  # errors (unknown concept) before any row

    def _listing_rows(self, cur: sqlite3.Cursor) -> Iterator[dict[str, Any]]:
        keys, loads = self._LISTING_KEYS, json.loads
        while rows := cur.fetchmany(512):
            for r in rows:
                d = dict(zip(keys, r))
                d["concepts"] = loads(r[14])
                yield d

    def _filter(self, uncaptioned: bool, concept: str | None, search: str | None, folder: str | None,
                include_missing: bool) -> tuple[str, list[Any]]:
        # the grid's filter (core/photo_queries.py): one rule set, e.g. a folder means it and its subfolders
        return filter_sql(PhotoFilter(status="uncaptioned" if uncaptioned else "all",
                                      concept_id=self.lib.concepts.get(concept).id if concept is not None else None,
                                      search=search or "", folder=folder, include_missing=include_missing))

    def folder_counts(self) -> list[tuple[str, int]]:
        """(folder, number of present photos) for every folder that has some."""
        return self.conn.execute("SELECT folder, count(*) FROM photos WHERE status = 'ok' GROUP BY folder").fetchall()

    def folders(self) -> list[str]:
        """Every folder any photo (present or missing) lives in, sorted."""
        return sorted(r[0] for r in self.conn.execute("SELECT DISTINCT folder FROM photos"))

    # ---------------------------------------------------------------- scanner support (core/scanner.py)
    # Bulk form of skip_state for one rescan, and forgetting skip records whose file is gone, so the
    # "could not import" list does not keep files the user has since deleted or fixed.
    def skip_states(self, under: str | os.PathLike | bytes | None = None
                    ) -> dict[bytes, tuple[str, int | None, int | None]]:
        """path_bytes -> (reason, size, mtime_ns) for every skipped file (below a folder)."""
        where, args = under_folder(under)
        sql = "SELECT path_bytes, reason, size, mtime_ns FROM skipped_files" + where
        return {r[0]: (r[1], r[2], r[3]) for r in self.conn.execute(sql, args)}

    def forget_skips(self, paths: Iterable[str | os.PathLike | bytes]) -> int:
        rows = [(fs_bytes(p),) for p in paths]
        with self.transaction():
            self.conn.executemany("DELETE FROM skipped_files WHERE path_bytes = ?", rows)
        return len(rows)

    # Bulk forms for a batch of an import: one statement per batch instead of per file (the per-file
    # statements were a third of an import's time for small photos).
    def ok_by_ids(self, photo_ids: Iterable[int]) -> dict[int, Photo]:
        """id -> photo for the given ids that are not marked missing."""
        out: dict[int, Photo] = {}
        for chunk in chunks(sorted(set(photo_ids))):
            for r in self.conn.execute(f"SELECT {PHOTO_COLS} FROM photos WHERE status = 'ok' AND id IN"
                                       f" ({','.join('?' * len(chunk))})", list(chunk)):
                p = Photo(*r)
                out[p.id] = p
        return out

    def by_hashes(self, hashes: Iterable[str]) -> dict[str, list[Photo]]:
        """content_hash -> photos with that hash (ordered by id), for the hashes that have any."""
        out: dict[str, list[Photo]] = {}
        hs = list(dict.fromkeys(hashes))
        for i in range(0, len(hs), 500):  # stay far below SQLite's bound-parameter limit
            chunk = hs[i:i + 500]
            for r in self.conn.execute(f"SELECT {PHOTO_COLS} FROM photos WHERE content_hash IN"
                                       f" ({','.join('?' * len(chunk))}) ORDER BY id", chunk):
                p = Photo(*r)
                out.setdefault(p.content_hash, []).append(p)
        return out

    def add_many(self, photos: Iterable[dict[str, Any]]) -> int:
        """add_photo for many: each dict has `path` and add_photo's keyword fields."""
        rows = [self._insert_row(ph["path"], **{k: v for k, v in ph.items() if k != "path"}) for ph in photos]
        with self.transaction():
            self.conn.executemany(self._INSERT, rows)
            self.conn.executemany("DELETE FROM skipped_files WHERE path_bytes = ?", [(r[1],) for r in rows])
        return len(rows)

"""The photo library: one SQLite file holding photos, concepts (people/pets), captions, jobs, adapters.

Design notes (why, not what):
- WAL + a busy timeout so the GUI and a CLI process can share one library: readers never block the
  writer, and a writer waits for the other's short transaction instead of failing with "locked".
- Every write is one short transaction (`with self.transaction():`), so a crash loses at most the
  operation in flight and never leaves half an import or half a merge behind.
- Paths are stored twice: `path_bytes` is the exact file-system name (os.fsencode, so non-UTF-8 names
  round-trip) and is what we look up by; `path` is a display string (undecodable bytes replaced).
- Captions are never overwritten: each generation or edit is a new row, `photos.current_caption_id`
  points at the one in force. History and undo come for free.
- Schema changes are forward migrations keyed by PRAGMA user_version; a library from an older
  version is upgraded in place, inside one IMMEDIATE transaction, so two processes opening an old
  library at the same moment migrate it once.
- Box coordinates (regions, reference crops) are pixels of the photo as displayed, i.e. after EXIF
  orientation, at full resolution.
"""
from __future__ import annotations

import json
import os
import sqlite3
import textwrap
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

BUSY_TIMEOUT_MS = 15_000
CONCEPT_KINDS = ("person", "pet", "other")
CAPTION_STATUSES = ("draft", "accepted", "exported")
REGION_SOURCES = ("manual", "detected", "model", "import", "suggestion")
# Tags and regions a person stands behind: drawn or typed by hand, read from the photo's own metadata, or
# a suggestion the user confirmed. Training and the Personalize page learn from these only.
CONFIRMED_SOURCES = ("manual", "import", "suggestion")


class LibraryError(Exception):
    """A user-facing problem with a library operation (message is shown as is)."""


class NotFound(LibraryError):
    pass


def fs_bytes(path: str | os.PathLike | bytes) -> bytes:
    return path if isinstance(path, bytes) else os.fsencode(os.fspath(path))


def display_path(path_bytes: bytes) -> str:
    return path_bytes.decode("utf-8", errors="replace")


def now() -> float:
    return time.time()


# --------------------------------------------------------------------------------------------------
# Schema: MIGRATIONS[i] brings a library from version i to i+1. Never edit a released step; add one.
# --------------------------------------------------------------------------------------------------

def _executescript(conn: sqlite3.Connection, sql: str) -> None:
    """Run a script statement by statement: sqlite3's executescript() COMMITs an open transaction first,
    which would split a migration from the IMMEDIATE transaction that guards it."""
    statement = ""
    for part in sql.split(";"):
        statement += part + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip(" \n;"):
                conn.execute(statement)
            statement = ""
    if statement.strip(" \n;"):
        conn.execute(statement)


def _migrate_0_to_1(db: sqlite3.Connection) -> None:
    _executescript(db,
        """
        CREATE TABLE photos (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL,
            path_bytes BLOB NOT NULL UNIQUE,
            folder TEXT NOT NULL,
            filename TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            content_hash TEXT NOT NULL,
            format TEXT,
            width INTEGER,
            height INTEGER,
            orientation INTEGER NOT NULL DEFAULT 1,
            date_taken TEXT,
            status TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'missing')),
            added_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX photos_hash ON photos(content_hash);
        CREATE INDEX photos_folder ON photos(folder);

        CREATE TABLE concepts (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE COLLATE NOCASE,
            kind TEXT NOT NULL CHECK (kind IN ('person', 'pet', 'other')),
            info TEXT NOT NULL DEFAULT '',
            position INTEGER NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );

        CREATE TABLE concept_refs (
            id INTEGER PRIMARY KEY,
            concept_id INTEGER NOT NULL REFERENCES concepts(id) ON DELETE CASCADE,
            photo_id INTEGER REFERENCES photos(id) ON DELETE SET NULL,
            file_path TEXT,
            box_x INTEGER, box_y INTEGER, box_w INTEGER, box_h INTEGER,
            position INTEGER NOT NULL,
            created_at REAL NOT NULL,
            CHECK (photo_id IS NOT NULL OR file_path IS NOT NULL)
        );
        CREATE INDEX concept_refs_concept ON concept_refs(concept_id);

        CREATE TABLE photo_concepts (
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            concept_id INTEGER NOT NULL REFERENCES concepts(id) ON DELETE CASCADE,
            source TEXT NOT NULL DEFAULT 'manual',
            created_at REAL NOT NULL,
            PRIMARY KEY (photo_id, concept_id)
        );
        CREATE INDEX photo_concepts_concept ON photo_concepts(concept_id);

        CREATE TABLE regions (
            id INTEGER PRIMARY KEY,
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            concept_id INTEGER NOT NULL REFERENCES concepts(id) ON DELETE CASCADE,
            x INTEGER NOT NULL, y INTEGER NOT NULL, w INTEGER NOT NULL, h INTEGER NOT NULL,
            source TEXT NOT NULL DEFAULT 'manual',
            created_at REAL NOT NULL
        );
        CREATE INDEX regions_photo ON regions(photo_id);

        CREATE TABLE captions (
            id INTEGER PRIMARY KEY,
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            text TEXT NOT NULL,
            tags TEXT NOT NULL DEFAULT '[]',
            concept_set TEXT NOT NULL DEFAULT '[]',
            model_id TEXT,
            model_revision TEXT,
            adapter_id TEXT,
            prompt_hash TEXT,
            source TEXT NOT NULL DEFAULT 'model',
            status TEXT NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'accepted', 'exported')),
            parent_id INTEGER REFERENCES captions(id) ON DELETE SET NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX captions_photo ON captions(photo_id, id);
        ALTER TABLE photos ADD COLUMN current_caption_id INTEGER REFERENCES captions(id) ON DELETE SET NULL;
        CREATE INDEX photos_current_caption ON photos(current_caption_id);
        """
    )


def _migrate_1_to_2(db: sqlite3.Connection) -> None:
    _executescript(db,
        """
        CREATE TABLE skipped_files (
            path_bytes BLOB PRIMARY KEY,
            path TEXT NOT NULL,
            reason TEXT NOT NULL,
            size INTEGER,
            mtime_ns INTEGER,
            seen_at REAL NOT NULL
        );

        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'paused', 'done', 'cancelled', 'failed')),
            params TEXT NOT NULL DEFAULT '{}',
            error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE job_items (
            job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'done', 'failed', 'skipped')),
            error TEXT,
            caption_id INTEGER REFERENCES captions(id) ON DELETE SET NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (job_id, photo_id)
        );

        CREATE TABLE adapters (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            path TEXT NOT NULL,
            base_model TEXT NOT NULL,
            base_revision TEXT,
            manifest TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL
        );

        CREATE TABLE concept_meta (
            concept_id INTEGER PRIMARY KEY REFERENCES concepts(id) ON DELETE CASCADE,
            category TEXT,
            repic_key TEXT
        );
        """
    )
    # Full-text search over caption text; triggers keep it in sync with every insert/update/delete.
    # The same table and triggers sqlite-utils' enable_fts(["text"], fts_version="FTS5", create_triggers=True,
    # tokenize="unicode61") made when libraries used it, so old and new libraries have one schema.
    _executescript(db, textwrap.dedent(
        """
        CREATE VIRTUAL TABLE "captions_fts" USING FTS5 (
            "text",
            tokenize='unicode61',
            content="captions"
        );
        INSERT INTO "captions_fts" (rowid, "text") SELECT rowid, "text" FROM "captions";
        CREATE TRIGGER "captions_ai" AFTER INSERT ON "captions" BEGIN
          INSERT INTO "captions_fts" (rowid, "text") VALUES (new.rowid, new."text");
        END;
        CREATE TRIGGER "captions_ad" AFTER DELETE ON "captions" BEGIN
          INSERT INTO "captions_fts" ("captions_fts", rowid, "text") VALUES('delete', old.rowid, old."text");
        END;
        CREATE TRIGGER "captions_au" AFTER UPDATE ON "captions" BEGIN
          INSERT INTO "captions_fts" ("captions_fts", rowid, "text") VALUES('delete', old.rowid, old."text");
          INSERT INTO "captions_fts" (rowid, "text") VALUES (new.rowid, new."text");
        END;
        """))


def _migrate_2_to_3(db: sqlite3.Connection) -> None:
    # Full provenance of generated captions (quantization, request, preset, concept ids, seconds, ...) and
    # the job that produced them, so a resumed job can tell done photos from pending ones.
    _executescript(db,
        """
        ALTER TABLE captions ADD COLUMN provenance TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE captions ADD COLUMN job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL;
        CREATE INDEX job_items_status ON job_items(job_id, status, position);
        """
    )


def _migrate_3_to_4(db: sqlite3.Connection) -> None:
    # "Who is in this photo?" (retrieval/): cached embeddings of reference photos and of the crops found
    # in library photos, per matcher, the suggestions made from them, and clusters of unknown faces.
    # Vectors are float32 BLOBs: at <= 10k vectors an exact numpy search is faster than any ANN index
    # (shared/reference/retrieval.md §3), so no vector extension is needed.
    _executescript(db,
        """
        CREATE TABLE ref_embeddings (
            ref_id INTEGER NOT NULL REFERENCES concept_refs(id) ON DELETE CASCADE,
            concept_id INTEGER NOT NULL REFERENCES concepts(id) ON DELETE CASCADE,
            matcher_id TEXT NOT NULL,
            signature TEXT NOT NULL,
            box_x INTEGER, box_y INTEGER, box_w INTEGER, box_h INTEGER,
            kind TEXT,
            det_score REAL,
            dim INTEGER NOT NULL DEFAULT 0,
            vec BLOB,
            error TEXT,
            updated_at REAL NOT NULL,
            PRIMARY KEY (ref_id, matcher_id)
        );
        CREATE INDEX ref_embeddings_matcher ON ref_embeddings(matcher_id, concept_id);

        CREATE TABLE face_clusters (
            id INTEGER PRIMARY KEY,
            matcher_id TEXT NOT NULL,
            concept_id INTEGER REFERENCES concepts(id) ON DELETE SET NULL,
            created_at REAL NOT NULL
        );

        CREATE TABLE photo_crops (
            id INTEGER PRIMARY KEY,
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            matcher_id TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            x INTEGER NOT NULL, y INTEGER NOT NULL, w INTEGER NOT NULL, h INTEGER NOT NULL,
            kind TEXT NOT NULL,
            det_score REAL NOT NULL,
            dim INTEGER NOT NULL DEFAULT 0,
            vec BLOB,
            match_concept_id INTEGER REFERENCES concepts(id) ON DELETE SET NULL,
            match_score REAL,
            cluster_id INTEGER REFERENCES face_clusters(id) ON DELETE SET NULL
        );
        CREATE INDEX photo_crops_photo ON photo_crops(photo_id, matcher_id);
        CREATE INDEX photo_crops_cluster ON photo_crops(cluster_id);

        CREATE TABLE photo_index_state (
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            matcher_id TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            model_sig TEXT NOT NULL,
            refs_sig TEXT,
            n_crops INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            indexed_at REAL NOT NULL,
            PRIMARY KEY (photo_id, matcher_id)
        );

        CREATE TABLE suggestions (
            id INTEGER PRIMARY KEY,
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            concept_id INTEGER NOT NULL REFERENCES concepts(id) ON DELETE CASCADE,
            matcher_id TEXT NOT NULL,
            score REAL NOT NULL,
            x INTEGER, y INTEGER, w INTEGER, h INTEGER,
            crop_id INTEGER REFERENCES photo_crops(id) ON DELETE SET NULL,
            kind TEXT NOT NULL,
            weak INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed', 'rejected')),
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            UNIQUE (photo_id, concept_id, matcher_id)
        );
        CREATE INDEX suggestions_photo ON suggestions(photo_id, status);
        CREATE INDEX suggestions_crop ON suggestions(crop_id);
        """
    )


def _migrate_4_to_5(db: sqlite3.Connection) -> None:
    # Undo of a confirmation must remove exactly what that confirmation added and nothing the user had
    # made before, so the suggestion remembers it (confirm_tag: 1 = it added the tag, 0 = the tag was
    # already there, NULL = confirmed before v5). "Not a face / ignore" is the user's word about one
    # detection: stored on the crop and carried over when the photo is re-detected.
    _executescript(db,
        """
        ALTER TABLE photo_crops ADD COLUMN ignored_at REAL;
        ALTER TABLE suggestions ADD COLUMN confirm_tag INTEGER;
        ALTER TABLE suggestions ADD COLUMN confirm_region_id INTEGER REFERENCES regions(id) ON DELETE SET NULL;
        """
    )


MIGRATIONS = [_migrate_0_to_1, _migrate_1_to_2, _migrate_2_to_3, _migrate_3_to_4, _migrate_4_to_5]
SCHEMA_VERSION = len(MIGRATIONS)


# --------------------------------------------------------------------------------------------------
# Row types handed to callers (plain data, safe to pass between threads).
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Photo:
    id: int
    path: str
    path_bytes: bytes
    folder: str
    filename: str
    size: int
    mtime_ns: int
    content_hash: str
    format: str | None
    width: int | None
    height: int | None
    orientation: int
    date_taken: str | None
    status: str
    current_caption_id: int | None

    @property
    def fs_path(self) -> str:
        """The exact path to open on this file system (non-UTF-8 names included)."""
        return os.fsdecode(self.path_bytes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "path": self.path, "folder": self.folder, "filename": self.filename,
            "size": self.size, "content_hash": self.content_hash, "format": self.format,
            "width": self.width, "height": self.height, "orientation": self.orientation,
            "date_taken": self.date_taken, "status": self.status,
        }


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


@dataclass(frozen=True)
class ConceptRef:
    id: int
    concept_id: int
    photo_id: int | None
    file_path: str | None
    box: Box | None
    position: int

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "photo_id": self.photo_id, "file_path": self.file_path,
                "box": self.box.as_list() if self.box else None, "position": self.position}


@dataclass(frozen=True)
class Concept:
    id: int
    name: str
    kind: str
    info: str
    position: int
    category: str | None = None
    repic_key: str | None = None

    @property
    def tag(self) -> str:
        return f"<{self.name}>"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "kind": self.kind, "info": self.info,
                "position": self.position, "category": self.category}


@dataclass(frozen=True)
class Caption:
    id: int
    photo_id: int
    text: str
    tags: list[str]
    concept_set: list[str]
    model_id: str | None
    model_revision: str | None
    adapter_id: str | None
    prompt_hash: str | None
    source: str
    status: str
    parent_id: int | None
    created_at: float
    provenance: dict[str, Any] = field(default_factory=dict)
    job_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Region:
    id: int
    photo_id: int
    concept_id: int
    box: Box
    source: str


@dataclass(frozen=True)
class Adapter:
    id: int
    name: str
    path: str
    base_model: str
    base_revision: str | None
    manifest: dict[str, Any]
    created_at: float

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


_PHOTO_COLS = ("id, path, path_bytes, folder, filename, size, mtime_ns, content_hash, format, width, height, "
               "orientation, date_taken, status, current_caption_id")


def _photo(row: Sequence) -> Photo:
    return Photo(*row)


def _box(x, y, w, h) -> Box | None:
    return None if x is None else Box(x, y, w, h)


class Library:
    """One library file. Not shared between threads: open one Library per thread (opening is cheap)."""

    def __init__(self, path: str | os.PathLike, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise LibraryError(f"no library at {self.path}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise LibraryError(f"cannot open library {self.path}: {exc}") from exc
        self.conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # Libraries were opened through sqlite-utils, which turns this on; INSERT OR REPLACE keeps firing
            # delete triggers as before.
            conn.execute("PRAGMA recursive_triggers = ON")
            conn.execute("PRAGMA foreign_keys = ON")
            self._setup_with_retry()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise LibraryError(f"{self.path} is not a usable RePIC library: {exc}") from exc
        except BaseException:
            conn.close()
            raise

    def _setup_with_retry(self) -> None:
        """Switch to WAL and migrate. While a brand-new file is still in rollback-journal mode, SQLite
        answers a second connection's journal-mode switch or lock upgrade with an immediate "database
        is locked" (its deadlock avoidance skips the busy handler), so two threads or processes opening a
        new library at once would fail; retrying briefly until the first one has finished is enough."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        delay = 0.005
        while True:
            try:
                mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise LibraryError(f"cannot use WAL journaling for {self.path} (got {mode})")
                self.conn.execute("PRAGMA synchronous = NORMAL")
                self._migrate()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    # ---------------------------------------------------------------- lifecycle / transactions
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """IMMEDIATE transaction: take the write lock up front so two processes never deadlock on
        upgrading a read lock; nested use joins the outer transaction."""
        if self.conn.in_transaction:
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def quick_check(self, limit: int = 10) -> list[str]:
        """SQLite's quick_check: [] when the file is sound, else up to `limit` problems as SQLite words them."""
        try:
            rows = [r[0] for r in self.conn.execute(f"PRAGMA quick_check({int(limit)})").fetchall()]
        except sqlite3.OperationalError:
            raise  # locked or an I/O error: not a verdict on the file
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        if rows == ["ok"]:
            return []
        lines = [ln for r in rows for ln in str(r).splitlines() if ln and not ln.startswith("*** in database")]
        return lines or rows

    def _migrate(self) -> None:
        if self.schema_version == SCHEMA_VERSION:
            return
        with self.transaction():
            version = self.schema_version  # re-read under the write lock: another process may have won
            if version > SCHEMA_VERSION:
                raise LibraryError(
                    f"{self.path} was written by a newer RePIC Desktop (schema {version}, this version "
                    f"knows {SCHEMA_VERSION}); update the app to open it")
            for step in MIGRATIONS[version:]:
                step(self.conn)
                version += 1
                self.conn.execute(f"PRAGMA user_version = {version}")

    @property
    def data_dir(self) -> Path:
        """Files the library owns (copied reference photos), next to the library file."""
        return self.path.parent / f"{self.path.stem}-files"

    def own_file_keys(self) -> set[tuple[int, int]]:
        """(st_dev, st_ino) of the library's database files that exist now (the file, -wal, -shm, -journal).

        Only SQLite may ever open these. POSIX locks belong to the process, and closing *any* descriptor on
        the inode drops all of them: one read of the library by an importer, a thumbnailer or a file dialog
        lets the next process to close it delete the -wal and -shm files this process still uses, and the
        library ends up malformed (issue #13). Code that opens files it did not choose itself (a folder
        walk, a path the user typed) checks them against this set by stat, before opening anything."""
        keys = set()
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                st = os.stat(f"{self.path}{suffix}")
            except OSError:
                continue
            keys.add((st.st_dev, st.st_ino))
        return keys

    # ---------------------------------------------------------------- photos
    def photo(self, photo_id: int) -> Photo:
        if not -2 ** 63 <= photo_id < 2 ** 63:  # beyond SQLite's integers ("--ref 10**30"): no such photo
            raise NotFound(f"no photo with id {photo_id}")
        row = self.conn.execute(f"SELECT {_PHOTO_COLS} FROM photos WHERE id = ?", (photo_id,)).fetchone()
        if row is None:
            raise NotFound(f"no photo with id {photo_id}")
        return _photo(row)

    def photo_by_path(self, path: str | os.PathLike | bytes) -> Photo | None:
        row = self.conn.execute(f"SELECT {_PHOTO_COLS} FROM photos WHERE path_bytes = ?",
                                (fs_bytes(path),)).fetchone()
        return _photo(row) if row else None

    def resolve_photo(self, ref: str | int) -> Photo:
        """A photo given as an id or a path (as users type them on the command line)."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdecimal() and not os.path.exists(ref)):
            return self.photo(int(ref))
        p = self.photo_by_path(os.path.abspath(ref))
        if p is None:
            raise NotFound(f"{ref} is not in the library (import its folder first)")
        return p

    def photos_by_hash(self, content_hash: str) -> list[Photo]:
        return self.photos_by_hashes([content_hash]).get(content_hash, [])

    def file_states(self, under: str | os.PathLike | bytes | None = None) -> dict[bytes, tuple[int, int, int, str]]:
        """path_bytes -> (id, size, mtime_ns, status) for every photo (below a folder): the rescan's
        incremental check needs this without opening any file."""
        where, args = _under_folder(under)
        sql = "SELECT path_bytes, id, size, mtime_ns, status FROM photos" + where
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in self.conn.execute(sql, args)}

    _INSERT_PHOTO = ("INSERT INTO photos (path, path_bytes, folder, filename, size, mtime_ns, content_hash, format,"
                     " width, height, orientation, date_taken, status, added_at, updated_at)"
                     " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'ok',?,?)")

    @staticmethod
    def _photo_insert_row(path, *, size: int, mtime_ns: int, content_hash: str, format: str | None = None,
                          width: int | None = None, height: int | None = None, orientation: int = 1,
                          date_taken: str | None = None) -> tuple:
        pb = fs_bytes(path)
        folder, _, filename = pb.rpartition(b"/")
        t = now()
        return (display_path(pb), pb, display_path(folder or b"/"), display_path(filename), size, mtime_ns,
                content_hash, format, width, height, orientation, date_taken, t, t)

    def add_photo(self, path: str | os.PathLike | bytes, **fields) -> int:
        """Add one photo; fields: size, mtime_ns, content_hash, format, width, height, orientation, date_taken."""
        row = self._photo_insert_row(path, **fields)
        with self.transaction():
            cur = self.conn.execute(self._INSERT_PHOTO, row)
            self.conn.execute("DELETE FROM skipped_files WHERE path_bytes = ?", (row[1],))
            return cur.lastrowid

    def update_photo(self, photo_id: int, *, path: str | os.PathLike | bytes | None = None, **fields) -> None:
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

    def photos_added_at(self, photo_ids: Iterable[int]) -> dict[int, float]:
        """photo id -> when it was first imported (the rescan tells an unplugged drive by it)."""
        out: dict[int, float] = {}
        for chunk in _chunks(photo_ids):
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

    def skipped_files(self) -> list[dict[str, Any]]:
        return [{"path": r[0], "reason": r[1]} for r in
                self.conn.execute("SELECT path, reason FROM skipped_files ORDER BY path")]

    def skip_state(self, path: str | os.PathLike | bytes) -> tuple[str, int | None, int | None] | None:
        row = self.conn.execute("SELECT reason, size, mtime_ns FROM skipped_files WHERE path_bytes = ?",
                                (fs_bytes(path),)).fetchone()
        return tuple(row) if row else None

    def list_photos(self, *, uncaptioned: bool = False, concept: str | None = None, search: str | None = None,
                    folder: str | None = None, include_missing: bool = False, limit: int | None = None,
                    offset: int = 0) -> list[Photo]:
        where_sql, args = self._photo_filter(uncaptioned, concept, search, folder, include_missing)
        sql = f"SELECT {', '.join('p.' + c.strip() for c in _PHOTO_COLS.split(','))} FROM photos p" + where_sql
        sql += " ORDER BY p.path_bytes"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        return [_photo(r) for r in self.conn.execute(sql, args)]

    def count_photos(self, *, uncaptioned: bool = False, concept: str | None = None, search: str | None = None,
                     folder: str | None = None, include_missing: bool = False) -> int:
        """How many photos list_photos would give without a limit."""
        where_sql, args = self._photo_filter(uncaptioned, concept, search, folder, include_missing)
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

    def photo_listing(self, *, uncaptioned: bool = False, concept: str | None = None, search: str | None = None,
                      folder: str | None = None, include_missing: bool = False, limit: int | None = None,
                      offset: int = 0) -> Iterator[dict[str, Any]]:
        """list_photos' photos as `repic photos list` shows them: Photo.as_dict() plus "caption",
        "caption_status" and "concepts". One statement, streamed from its cursor, so time and memory stay
        flat with the library's size (a query per photo for its caption and another for its concepts, with
        each caption's JSON parsed, took 14 s for 100k photos; bench/library_bench.py --listing)."""
        where_sql, args = self._photo_filter(uncaptioned, concept, search, folder, include_missing)
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

    def _photo_filter(self, uncaptioned: bool, concept: str | None, search: str | None, folder: str | None,
                      include_missing: bool) -> tuple[str, list[Any]]:
        where, args = [], []
        if not include_missing:
            where.append("p.status = 'ok'")
        if uncaptioned:
            where.append("p.current_caption_id IS NULL")
        if concept is not None:
            c = self.concept(concept)
            where.append("p.id IN (SELECT photo_id FROM photo_concepts WHERE concept_id = ?)")
            args.append(c.id)
        if folder is not None:
            where.append("p.folder = ?")
            args.append(folder)
        if search:
            where.append("p.current_caption_id IN (SELECT rowid FROM captions_fts WHERE captions_fts MATCH ?)")
            args.append(fts_query(search))
        return (" WHERE " + " AND ".join(where) if where else ""), args

    def counts(self) -> dict[str, int]:
        q = lambda sql: self.conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "photos": q("SELECT count(*) FROM photos WHERE status = 'ok'"),
            "missing": q("SELECT count(*) FROM photos WHERE status = 'missing'"),
            "captioned": q("SELECT count(*) FROM photos WHERE status = 'ok' AND current_caption_id IS NOT NULL"),
            "accepted": q("SELECT count(*) FROM photos p JOIN captions c ON c.id = p.current_caption_id"
                          " WHERE p.status = 'ok' AND c.status != 'draft'"),
            "skipped": q("SELECT count(*) FROM skipped_files"),
            "concepts": q("SELECT count(*) FROM concepts"),
            "people": q("SELECT count(*) FROM concepts WHERE kind = 'person'"),
            "pets": q("SELECT count(*) FROM concepts WHERE kind = 'pet'"),
        }

    def ok_photo_count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM photos WHERE status = 'ok'").fetchone()[0]

    def folder_counts(self) -> list[tuple[str, int]]:
        """(folder, number of present photos) for every folder that has some."""
        return self.conn.execute("SELECT folder, count(*) FROM photos WHERE status = 'ok' GROUP BY folder").fetchall()

    def folders(self) -> list[str]:
        """Every folder any photo (present or missing) lives in, sorted."""
        return sorted(r[0] for r in self.conn.execute("SELECT DISTINCT folder FROM photos"))

    def captioned_photo_ids(self, photo_ids: Sequence[int]) -> set[int]:
        """Which of these photos have a current caption."""
        out: set[int] = set()
        for chunk in _chunks(photo_ids):
            q = ",".join("?" * len(chunk))
            out.update(r[0] for r in self.conn.execute(
                f"SELECT id FROM photos WHERE id IN ({q}) AND current_caption_id IS NOT NULL", tuple(chunk)))
        return out

    def tagged_photo_count(self, photo_ids: Sequence[int]) -> int:
        """How many of these photos have at least one concept."""
        n = 0
        for chunk in _chunks(photo_ids):
            q = ",".join("?" * len(chunk))
            n += self.conn.execute(f"SELECT count(DISTINCT photo_id) FROM photo_concepts WHERE photo_id IN ({q})",
                                   tuple(chunk)).fetchone()[0]
        return n

    def failed_job_items(self, job_id: int, limit: int = 100) -> list[tuple[str, str]]:
        """(file name, reason) of a job's failed photos, in job order."""
        return [(r[0], r[1] or "") for r in self.conn.execute(
            "SELECT p.filename, ji.error FROM job_items ji JOIN photos p ON p.id = ji.photo_id"
            " WHERE ji.job_id = ? AND ji.status = 'failed' ORDER BY ji.position LIMIT ?", (job_id, limit))]

    # ---------------------------------------------------------------- concepts
    def _concept_row(self, row) -> Concept:
        return Concept(*row)

    _CONCEPT_SQL = ("SELECT c.id, c.name, c.kind, c.info, c.position, m.category, m.repic_key FROM concepts c"
                    " LEFT JOIN concept_meta m ON m.concept_id = c.id")

    def concepts(self) -> list[Concept]:
        """All concepts in library order (the order RePIC's skip-retrieval puts references in)."""
        return [self._concept_row(r) for r in self.conn.execute(self._CONCEPT_SQL + " ORDER BY c.position, c.id")]

    def concept(self, name_or_id: str | int) -> Concept:
        if isinstance(name_or_id, int):
            row = self.conn.execute(self._CONCEPT_SQL + " WHERE c.id = ?", (name_or_id,)).fetchone()
        else:
            row = self.conn.execute(self._CONCEPT_SQL + " WHERE c.name = ? COLLATE NOCASE",
                                    (name_or_id.strip().removeprefix("<").removesuffix(">").strip(),)).fetchone()
        if row is None:
            raise NotFound(f"no person, pet or thing called {name_or_id!r} in this library")
        return self._concept_row(row)

    def _check_unique(self, name: str, except_id: int | None = None) -> None:
        row = self.conn.execute("SELECT id, name FROM concepts WHERE name = ? COLLATE NOCASE", (name,)).fetchone()
        if row and row[0] != except_id:
            raise LibraryError(f"the name <{name}> is already used by <{row[1]}>; names must be unique")

    def add_concept(self, name: str, kind: str, info: str = "", *, category: str | None = None,
                    repic_key: str | None = None) -> Concept:
        from .concepts import validate_info, validate_kind, validate_name
        name, kind, info = validate_name(name), validate_kind(kind), validate_info(info)
        t = now()
        with self.transaction():
            self._check_unique(name)
            pos = self.conn.execute("SELECT coalesce(max(position), -1) + 1 FROM concepts").fetchone()[0]
            cid = self.conn.execute(
                "INSERT INTO concepts (name, kind, info, position, created_at, updated_at) VALUES (?,?,?,?,?,?)",
                (name, kind, info, pos, t, t)).lastrowid
            if category is not None or repic_key is not None:
                self.conn.execute("INSERT INTO concept_meta (concept_id, category, repic_key) VALUES (?,?,?)",
                                  (cid, category, repic_key))
        return self.concept(cid)

    def rename_concept(self, old: str, new: str) -> Concept:
        """Renaming changes future prompts; captions already written keep the name they were made with."""
        from .concepts import validate_name
        c = self.concept(old)
        new = validate_name(new)
        with self.transaction():
            self._check_unique(new, except_id=c.id)
            self.conn.execute("UPDATE concepts SET name = ?, updated_at = ? WHERE id = ?", (new, now(), c.id))
        return self.concept(c.id)

    def update_concept(self, name: str, *, info: str | None = None, kind: str | None = None) -> Concept:
        from .concepts import validate_info, validate_kind
        c = self.concept(name)
        with self.transaction():
            if info is not None:
                self.conn.execute("UPDATE concepts SET info = ?, updated_at = ? WHERE id = ?",
                                  (validate_info(info), now(), c.id))
            if kind is not None:
                self.conn.execute("UPDATE concepts SET kind = ?, updated_at = ? WHERE id = ?",
                                  (validate_kind(kind), now(), c.id))
        return self.concept(c.id)

    def remove_concept(self, name: str) -> Concept:
        """Deletes the concept, its references, tags and regions. Captions keep their text."""
        c = self.concept(name)
        with self.transaction():
            self.conn.execute("DELETE FROM concepts WHERE id = ?", (c.id,))
        return c

    def merge_concepts(self, source: str, target: str) -> Concept:
        """Fold `source` into `target` (the same person entered twice): references, photo tags,
        regions and the retrieval records (suggestions, cached reference vectors, crop matches, named
        face clusters) move over, `source` disappears. Target's name, kind and info win."""
        s, t = self.concept(source), self.concept(target)
        if s.id == t.id:
            raise LibraryError("cannot merge a concept with itself")
        with self.transaction():
            base = self.conn.execute("SELECT coalesce(max(position), -1) + 1 FROM concept_refs WHERE concept_id = ?",
                                     (t.id,)).fetchone()[0]
            self.conn.execute("UPDATE concept_refs SET concept_id = ?, position = position + ? WHERE concept_id = ?",
                              (t.id, base, s.id))
            self.conn.execute("INSERT OR IGNORE INTO photo_concepts (photo_id, concept_id, source, created_at)"
                              " SELECT photo_id, ?, source, created_at FROM photo_concepts WHERE concept_id = ?",
                              (t.id, s.id))
            self.conn.execute("UPDATE regions SET concept_id = ? WHERE concept_id = ?", (t.id, s.id))
            self._merge_retrieval(s.id, t.id)
            self.conn.execute("DELETE FROM concepts WHERE id = ?", (s.id,))
            self.conn.execute("UPDATE concepts SET updated_at = ? WHERE id = ?", (now(), t.id))
        return self.concept(t.id)

    def move_concept(self, name: str, position: int) -> None:
        """Reorder: library order is prompt order, so users may want to control it."""
        c = self.concept(name)
        ids = [x.id for x in self.concepts() if x.id != c.id]
        ids.insert(max(0, min(position, len(ids))), c.id)
        with self.transaction():
            self.conn.executemany("UPDATE concepts SET position = ? WHERE id = ?", list(enumerate(ids)))

    # ---------------------------------------------------------------- concept references
    def concept_photo_counts(self) -> dict[int, int]:
        """concept id -> number of photos tagged with it (any source)."""
        return dict(self.conn.execute("SELECT concept_id, count(*) FROM photo_concepts GROUP BY concept_id"))

    def concept_photo_count(self, concept_id: int) -> int:
        return self.conn.execute("SELECT count(*) FROM photo_concepts WHERE concept_id = ?",
                                 (concept_id,)).fetchone()[0]

    def concepts_with_references(self) -> set[int]:
        return {r[0] for r in self.conn.execute("SELECT DISTINCT concept_id FROM concept_refs")}

    def concept_refs(self, name_or_id: str | int) -> list[ConceptRef]:
        c = self.concept(name_or_id)
        return [ConceptRef(r[0], r[1], r[2], r[3], _box(*r[4:8]), r[8]) for r in self.conn.execute(
            "SELECT id, concept_id, photo_id, file_path, box_x, box_y, box_w, box_h, position FROM concept_refs"
            " WHERE concept_id = ? ORDER BY position, id", (c.id,))]

    def add_concept_ref(self, name: str, *, photo_id: int | None = None, file_path: str | None = None,
                        box: Box | None = None, primary: bool = False) -> ConceptRef:
        if (photo_id is None) == (file_path is None):
            raise ValueError("a reference is either a library photo or a file")
        c = self.concept(name)
        if photo_id is not None:
            p = self.photo(photo_id)
            if box is not None:
                check_box(box, p.width, p.height)
        with self.transaction():
            if primary:
                self.conn.execute("UPDATE concept_refs SET position = position + 1 WHERE concept_id = ?", (c.id,))
                pos = 0
            else:
                pos = self.conn.execute("SELECT coalesce(max(position), -1) + 1 FROM concept_refs"
                                        " WHERE concept_id = ?", (c.id,)).fetchone()[0]
            b = box.as_list() if box else [None] * 4
            rid = self.conn.execute(
                "INSERT INTO concept_refs (concept_id, photo_id, file_path, box_x, box_y, box_w, box_h, position,"
                " created_at) VALUES (?,?,?,?,?,?,?,?,?)", (c.id, photo_id, file_path, *b, pos, now())).lastrowid
        return next(r for r in self.concept_refs(c.id) if r.id == rid)

    def remove_concept_ref(self, ref_id: int) -> None:
        with self.transaction():
            if self.conn.execute("DELETE FROM concept_refs WHERE id = ?", (ref_id,)).rowcount == 0:
                raise NotFound(f"no reference photo with id {ref_id}")

    def set_primary_reference(self, ref_id: int) -> None:
        """Make `ref_id` its concept's primary reference (position 0, the one prompts use); the others
        keep their relative order after it."""
        with self.transaction():
            row = self.conn.execute("SELECT concept_id FROM concept_refs WHERE id = ?", (ref_id,)).fetchone()
            if row is None:
                raise NotFound(f"no reference photo with id {ref_id}")
            others = [r[0] for r in self.conn.execute(
                "SELECT id FROM concept_refs WHERE concept_id = ? AND id != ? ORDER BY position, id",
                (row[0], ref_id))]
            self.conn.executemany("UPDATE concept_refs SET position = ? WHERE id = ?",
                                  list(enumerate([ref_id, *others])))

    # ---------------------------------------------------------------- photo tags and regions
    def tag_photo(self, photo_id: int, concept: str, *, box: Box | None = None, source: str = "manual",
                  replace: bool = True) -> list[Box]:
        """Say `concept` is in the photo; with `box`, that is where: the box replaces the concept's earlier
        boxes on this photo (tagging again moves the box; one region per person from tagging). Returns the
        boxes replaced. `replace=False` adds the box beside them: another tool's metadata may mark one
        person twice (a collage), and undo puts several back."""
        p, c = self.photo(photo_id), self.concept(concept)
        if source not in REGION_SOURCES:
            raise ValueError(f"source must be one of {REGION_SOURCES}")
        if box is not None:
            check_box(box, p.width, p.height)
        replaced: list[Box] = []
        with self.transaction():
            self.conn.execute("INSERT OR IGNORE INTO photo_concepts (photo_id, concept_id, source, created_at)"
                              " VALUES (?,?,?,?)", (p.id, c.id, source, now()))
            if box is not None:
                if replace:
                    replaced = [Box(*r) for r in self.conn.execute(
                        "SELECT x, y, w, h FROM regions WHERE photo_id = ? AND concept_id = ? ORDER BY id",
                        (p.id, c.id))]
                    self.conn.execute("DELETE FROM regions WHERE photo_id = ? AND concept_id = ?", (p.id, c.id))
                self.conn.execute("INSERT INTO regions (photo_id, concept_id, x, y, w, h, source, created_at)"
                                  " VALUES (?,?,?,?,?,?,?,?)", (p.id, c.id, *box.as_list(), source, now()))
        return replaced

    def untag_photo(self, photo_id: int, concept: str) -> bool:
        p, c = self.photo(photo_id), self.concept(concept)
        with self.transaction():
            n = self.conn.execute("DELETE FROM photo_concepts WHERE photo_id = ? AND concept_id = ?",
                                  (p.id, c.id)).rowcount
            self.conn.execute("DELETE FROM regions WHERE photo_id = ? AND concept_id = ?", (p.id, c.id))
        return n > 0

    def confirmed_tags(self) -> dict[int, set[int]]:
        """photo id -> ids of the concepts a person confirmed in it (see CONFIRMED_SOURCES)."""
        out: dict[int, set[int]] = {}
        marks = ",".join("?" * len(CONFIRMED_SOURCES))
        for pid, cid in self.conn.execute(
                f"SELECT photo_id, concept_id FROM photo_concepts WHERE source IN ({marks})", CONFIRMED_SOURCES):
            out.setdefault(pid, set()).add(cid)
        return out

    def confirmed_tag_counts(self) -> dict[int, int]:
        """concept id -> number of photos with a confirmed tag of it."""
        marks = ",".join("?" * len(CONFIRMED_SOURCES))
        return dict(self.conn.execute(
            f"SELECT concept_id, count(*) FROM photo_concepts WHERE source IN ({marks}) GROUP BY concept_id",
            CONFIRMED_SOURCES))

    def photo_concepts(self, photo_id: int) -> list[Concept]:
        """The photo's concepts in library order (= RePIC prompt order)."""
        return [self._concept_row(r) for r in self.conn.execute(
            self._CONCEPT_SQL + " JOIN photo_concepts pc ON pc.concept_id = c.id WHERE pc.photo_id = ?"
            " ORDER BY c.position, c.id", (photo_id,))]

    def regions(self, photo_id: int) -> list[Region]:
        return [Region(r[0], r[1], r[2], Box(*r[3:7]), r[7]) for r in self.conn.execute(
            "SELECT id, photo_id, concept_id, x, y, w, h, source FROM regions WHERE photo_id = ? ORDER BY id",
            (photo_id,))]

    # ---------------------------------------------------------------- captions
    def add_caption(self, photo_id: int, text: str, *, tags: list[str] | None = None,
                    concept_set: list[str] | None = None, model_id: str | None = None,
                    model_revision: str | None = None, adapter_id: str | None = None,
                    prompt_hash: str | None = None, source: str = "model", status: str = "draft",
                    parent_id: int | None = None, provenance: dict[str, Any] | None = None,
                    job_id: int | None = None) -> int:
        if status not in CAPTION_STATUSES:
            raise ValueError(f"status must be one of {CAPTION_STATUSES}")
        with self.transaction():
            cid = self.conn.execute(
                "INSERT INTO captions (photo_id, text, tags, concept_set, model_id, model_revision, adapter_id,"
                " prompt_hash, source, status, parent_id, created_at, provenance, job_id)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (photo_id, text, json.dumps(tags or []), json.dumps(concept_set or []), model_id, model_revision,
                 adapter_id, prompt_hash, source, status, parent_id, now(),
                 json.dumps(provenance or {}, ensure_ascii=False), job_id)).lastrowid
            self.conn.execute("UPDATE photos SET current_caption_id = ? WHERE id = ?", (cid, photo_id))
        return cid

    def caption_status(self, caption_id: int) -> str | None:
        row = self.conn.execute("SELECT status FROM captions WHERE id = ?", (caption_id,)).fetchone()
        return row[0] if row else None

    def set_caption_status(self, caption_id: int, status: str) -> None:
        if status not in CAPTION_STATUSES:
            raise ValueError(f"status must be one of {CAPTION_STATUSES}")
        with self.transaction():
            self.conn.execute("UPDATE captions SET status = ? WHERE id = ?", (status, caption_id))

    def set_current_caption(self, photo_id: int, caption_id: int | None) -> None:
        """Point a photo at one of its own captions (None: no caption); every row is kept (undo)."""
        with self.transaction():
            if caption_id is not None:
                row = self.conn.execute("SELECT photo_id FROM captions WHERE id = ?", (caption_id,)).fetchone()
                if row is None or row[0] != photo_id:
                    raise NotFound(f"caption {caption_id} does not belong to photo {photo_id}")
            self.conn.execute("UPDATE photos SET current_caption_id = ? WHERE id = ?", (caption_id, photo_id))

    def update_caption_provenance(self, caption_id: int, provenance: dict[str, Any]) -> None:
        """Replace a caption's provenance JSON (e.g. to record where it was exported)."""
        with self.transaction():
            self.conn.execute("UPDATE captions SET provenance = ? WHERE id = ?",
                              (json.dumps(provenance, ensure_ascii=False), caption_id))

    _CAPTION_SQL = ("SELECT id, photo_id, text, tags, concept_set, model_id, model_revision, adapter_id,"
                    " prompt_hash, source, status, parent_id, created_at, provenance, job_id FROM captions")

    @staticmethod
    def _caption(r) -> Caption:
        return Caption(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), *r[5:13], json.loads(r[13]), r[14])

    def current_caption(self, photo_id: int) -> Caption | None:
        row = self.conn.execute(self._CAPTION_SQL + " WHERE id = (SELECT current_caption_id FROM photos"
                                " WHERE id = ?)", (photo_id,)).fetchone()
        return self._caption(row) if row else None

    def caption_history(self, photo_id: int) -> list[Caption]:
        """Every caption the photo ever had, oldest first."""
        return [self._caption(r) for r in
                self.conn.execute(self._CAPTION_SQL + " WHERE photo_id = ? ORDER BY id", (photo_id,))]

    def search_captions(self, text: str, limit: int = 100) -> list[int]:
        """Photo ids whose current caption matches `text` (FTS5, words ANDed), most recently captioned
        first. Not ranked by bm25: ranking must score every match before LIMIT applies (17 ms on 100k
        captions with common words, see bench/library_bench.py), newest-first walks the index backwards
        and stops at LIMIT (0.2 ms), and for a photo album recency is the more useful order anyway."""
        return [r[0] for r in self.conn.execute(
            "SELECT p.id FROM captions_fts f JOIN photos p ON p.current_caption_id = f.rowid"
            " WHERE captions_fts MATCH ? ORDER BY f.rowid DESC LIMIT ?", (fts_query(text), limit))]

    # ---------------------------------------------------------------- scanner support (core/scanner.py)
    # Bulk form of skip_state for one rescan, and forgetting skip records whose file is gone, so the
    # "could not import" list does not keep files the user has since deleted or fixed.
    def skip_states(self, under: str | os.PathLike | bytes | None = None
                    ) -> dict[bytes, tuple[str, int | None, int | None]]:
        """path_bytes -> (reason, size, mtime_ns) for every skipped file (below a folder)."""
        where, args = _under_folder(under)
        sql = "SELECT path_bytes, reason, size, mtime_ns FROM skipped_files" + where
        return {r[0]: (r[1], r[2], r[3]) for r in self.conn.execute(sql, args)}

    def forget_skips(self, paths: Iterable[str | os.PathLike | bytes]) -> int:
        rows = [(fs_bytes(p),) for p in paths]
        with self.transaction():
            self.conn.executemany("DELETE FROM skipped_files WHERE path_bytes = ?", rows)
        return len(rows)

    # Bulk forms for a batch of an import: one statement per batch instead of per file (the per-file
    # statements were a third of an import's time for small photos).
    def accepted_caption_tags(self) -> dict[int, list]:
        """photo id -> the tags of its accepted or exported current caption, for photos not missing (one
        query: the People page counts training photos from this on every reload)."""
        return {pid: json.loads(tags) for pid, tags in self.conn.execute(
            "SELECT p.id, c.tags FROM photos p JOIN captions c ON c.id = p.current_caption_id"
            " WHERE p.status = 'ok' AND c.status IN ('accepted', 'exported') AND c.tags != '[]'")}

    def ok_photos_by_ids(self, photo_ids: Iterable[int]) -> dict[int, Photo]:
        """id -> photo for the given ids that are not marked missing."""
        out: dict[int, Photo] = {}
        for chunk in _chunks(sorted(set(photo_ids))):
            for r in self.conn.execute(f"SELECT {_PHOTO_COLS} FROM photos WHERE status = 'ok' AND id IN"
                                       f" ({','.join('?' * len(chunk))})", list(chunk)):
                p = _photo(r)
                out[p.id] = p
        return out

    def photos_by_hashes(self, hashes: Iterable[str]) -> dict[str, list[Photo]]:
        """content_hash -> photos with that hash (ordered by id), for the hashes that have any."""
        out: dict[str, list[Photo]] = {}
        hs = list(dict.fromkeys(hashes))
        for i in range(0, len(hs), 500):  # stay far below SQLite's bound-parameter limit
            chunk = hs[i:i + 500]
            for r in self.conn.execute(f"SELECT {_PHOTO_COLS} FROM photos WHERE content_hash IN"
                                       f" ({','.join('?' * len(chunk))}) ORDER BY id", chunk):
                p = _photo(r)
                out.setdefault(p.content_hash, []).append(p)
        return out

    def add_photos(self, photos: Iterable[dict[str, Any]]) -> int:
        """add_photo for many: each dict has `path` and add_photo's keyword fields."""
        rows = [self._photo_insert_row(ph["path"], **{k: v for k, v in ph.items() if k != "path"}) for ph in photos]
        with self.transaction():
            self.conn.executemany(self._INSERT_PHOTO, rows)
            self.conn.executemany("DELETE FROM skipped_files WHERE path_bytes = ?", [(r[1],) for r in rows])
        return len(rows)

    # ---------------------------------------------------------------- retrieval
    # Storage for retrieval/ ("who is in this photo?"). Vectors arrive and leave as float32 bytes so
    # core needs no numpy; the vector math lives in retrieval/. Suggestions are never decisions: only
    # confirm_suggestion / name_face_cluster write the photo's tags and regions.
    def _merge_retrieval(self, source_id: int, target_id: int) -> None:
        """merge_concepts' retrieval part (inside its transaction). On a (photo, matcher) clash the user's
        answer (confirmed/rejected) wins over a pending suggestion, else target's row stays; a pending
        suggestion of a photo where the target is settled by another matcher goes too. The photos
        involved are re-matched by the next index run (their refs signature is cleared)."""
        s, t = source_id, target_id
        photos = [r[0] for r in self.conn.execute(
            "SELECT photo_id FROM suggestions WHERE concept_id IN (?, ?) UNION"
            " SELECT photo_id FROM photo_crops WHERE match_concept_id IN (?, ?)", (s, t, s, t))]
        self.conn.execute(
            "DELETE FROM suggestions WHERE concept_id = ? AND status = 'pending' AND EXISTS (SELECT 1 FROM suggestions"
            " o WHERE o.concept_id = ? AND o.photo_id = suggestions.photo_id AND o.matcher_id = suggestions.matcher_id"
            " AND o.status != 'pending')", (t, s))
        self.conn.execute(
            "DELETE FROM suggestions WHERE concept_id = ? AND EXISTS (SELECT 1 FROM suggestions o WHERE"
            " o.concept_id = ? AND o.photo_id = suggestions.photo_id AND o.matcher_id = suggestions.matcher_id)", (s, t))
        self.conn.execute("UPDATE suggestions SET concept_id = ? WHERE concept_id = ?", (t, s))
        self.conn.execute(
            "DELETE FROM suggestions WHERE concept_id = ? AND status = 'pending' AND EXISTS (SELECT 1 FROM suggestions"
            " o WHERE o.concept_id = ? AND o.photo_id = suggestions.photo_id AND o.status != 'pending')", (t, t))
        self.conn.execute("UPDATE ref_embeddings SET concept_id = ? WHERE concept_id = ?", (t, s))
        self.conn.execute("UPDATE photo_crops SET match_concept_id = ? WHERE match_concept_id = ?", (t, s))
        self.conn.execute("UPDATE face_clusters SET concept_id = ? WHERE concept_id = ?", (t, s))
        self._invalidate_matches(photos)

    def _invalidate_matches(self, photo_ids: Iterable[int]) -> None:
        """The next index run re-matches these photos' stored crops (no re-detection)."""
        for pid in set(photo_ids):
            self.conn.execute("UPDATE photo_index_state SET refs_sig = NULL WHERE photo_id = ?", (pid,))

    def ref_embedding_signatures(self, matcher_id: str) -> dict[int, str]:
        """ref_id -> signature of the cached embedding (stale when the reference's own signature differs)."""
        return dict(self.conn.execute("SELECT ref_id, signature FROM ref_embeddings WHERE matcher_id = ?",
                                      (matcher_id,)))

    def put_ref_embedding(self, ref_id: int, matcher_id: str, signature: str, *, box: Box | None = None,
                          kind: str | None = None, det_score: float | None = None, dim: int = 0,
                          vec: bytes | None = None, error: str | None = None) -> None:
        with self.transaction():
            row = self.conn.execute("SELECT concept_id FROM concept_refs WHERE id = ?", (ref_id,)).fetchone()
            if row is None:  # removed while it was being embedded: nothing to cache
                return
            b = box.as_list() if box else [None] * 4
            self.conn.execute(
                "INSERT OR REPLACE INTO ref_embeddings (ref_id, concept_id, matcher_id, signature, box_x, box_y,"
                " box_w, box_h, kind, det_score, dim, vec, error, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (ref_id, row[0], matcher_id, signature, *b, kind, det_score, dim, vec, error, now()))

    def ref_embeddings(self, matcher_id: str, *, with_errors: bool = False) -> list[dict[str, Any]]:
        """Cached reference embeddings of one matcher, by concept then reference (the index's row order)."""
        sql = ("SELECT ref_id, concept_id, signature, box_x, box_y, box_w, box_h, kind, det_score, dim, vec, error"
               " FROM ref_embeddings WHERE matcher_id = ?" + ("" if with_errors else " AND vec IS NOT NULL")
               + " ORDER BY concept_id, ref_id")
        return [{"ref_id": r[0], "concept_id": r[1], "signature": r[2], "box": _box(*r[3:7]), "kind": r[7],
                 "det_score": r[8], "dim": r[9], "vec": r[10], "error": r[11]}
                for r in self.conn.execute(sql, (matcher_id,))]

    def all_concept_refs(self) -> list[tuple[ConceptRef, str | None]]:
        """Every reference with its library photo's content hash (None for copied files), in library order."""
        return [(ConceptRef(r[0], r[1], r[2], r[3], _box(*r[4:8]), r[8]), r[9]) for r in self.conn.execute(
            "SELECT r.id, r.concept_id, r.photo_id, r.file_path, r.box_x, r.box_y, r.box_w, r.box_h, r.position,"
            " p.content_hash FROM concept_refs r JOIN concepts c ON c.id = r.concept_id"
            " LEFT JOIN photos p ON p.id = r.photo_id ORDER BY c.position, c.id, r.position, r.id")]

    def index_states(self, matcher_id: str) -> dict[int, dict[str, Any]]:
        """photo_id -> what the last indexing of that photo by this matcher was based on."""
        return {r[0]: {"content_hash": r[1], "model_sig": r[2], "refs_sig": r[3], "n_crops": r[4], "error": r[5],
                       "indexed_at": r[6]} for r in self.conn.execute(
            "SELECT photo_id, content_hash, model_sig, refs_sig, n_crops, error, indexed_at FROM photo_index_state"
            " WHERE matcher_id = ?", (matcher_id,))}

    def index_state(self, photo_id: int, matcher_id: str) -> dict[str, Any] | None:
        r = self.conn.execute("SELECT content_hash, model_sig, refs_sig, n_crops, error, indexed_at FROM"
                              " photo_index_state WHERE photo_id = ? AND matcher_id = ?",
                              (photo_id, matcher_id)).fetchone()
        return None if r is None else {"content_hash": r[0], "model_sig": r[1], "refs_sig": r[2], "n_crops": r[3],
                                       "error": r[4], "indexed_at": r[5]}

    _CROP_SQL = ("SELECT id, photo_id, x, y, w, h, kind, det_score, dim, vec, match_concept_id, match_score,"
                 " cluster_id, content_hash, ignored_at FROM photo_crops")
    IGNORE_OVERLAP = 0.5  # IoU at which a re-detected (or other matcher's) box is "the same face"

    @staticmethod
    def _crop(r) -> dict[str, Any]:
        return {"id": r[0], "photo_id": r[1], "box": Box(*r[2:6]), "kind": r[6], "det_score": r[7], "dim": r[8],
                "vec": r[9], "match_concept_id": r[10], "match_score": r[11], "cluster_id": r[12],
                "content_hash": r[13], "ignored": r[14] is not None}

    @staticmethod
    def box_iou(a: Box, b: Box) -> float:
        ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
        iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
        inter = ix * iy
        union = a.w * a.h + b.w * b.h - inter
        return inter / union if union > 0 else 0.0

    def ignored_boxes(self, photo_id: int) -> list[Box]:
        """Boxes the user dismissed on this photo (any matcher): a re-detected face there stays ignored."""
        return [Box(*r) for r in self.conn.execute(
            "SELECT x, y, w, h FROM photo_crops WHERE photo_id = ? AND ignored_at IS NOT NULL", (photo_id,))]

    def photo_crops(self, photo_id: int, matcher_id: str) -> list[dict[str, Any]]:
        return [self._crop(r) for r in self.conn.execute(
            self._CROP_SQL + " WHERE photo_id = ? AND matcher_id = ? ORDER BY id", (photo_id, matcher_id))]

    def store_photo_retrieval(self, photo_id: int, matcher_id: str, *, content_hash: str, model_sig: str,
                              refs_sig: str | None, crops: list[dict[str, Any]] | None,
                              matches: list[dict[str, Any]], suggestions: list[dict[str, Any]],
                              error: str | None = None, job_id: int | None = None) -> list[int]:
        """Everything one photo's indexing produced, in ONE transaction (with the job item's done mark),
        so a killed index job keeps every finished photo and redoes only the one in flight.

        crops: new crops (box, kind, det_score, dim, vec) replacing this matcher's old ones, or None to
        keep the stored crops (only the references changed). matches: per crop position, the best
        concept {"concept_id", "score"} or None. suggestions: {"concept_id", "score", "box", "crop",
        "kind", "weak"} with "crop" a crop position or None. Returns the crop ids in crop order.

        A photo deleted meanwhile is skipped (returns []); matches and suggestions naming a concept that
        was removed or merged away meanwhile are dropped. An ignored crop is never deleted here: it is
        the only record of the user's "ignore", so a re-detection that misses its box keeps it, and one
        that finds the box again carries the ignore over to the new crop (and the old row goes)."""
        t = now()
        with self.transaction():
            if self.conn.execute("SELECT 1 FROM photos WHERE id = ?", (photo_id,)).fetchone() is None:
                return []
            wanted = {m["concept_id"] for m in matches if m} | {x["concept_id"] for x in suggestions}
            if wanted:
                alive = {r[0] for r in self.conn.execute(
                    f"SELECT id FROM concepts WHERE id IN ({','.join('?' * len(wanted))})", tuple(wanted))}
                matches = [m if m is None or m["concept_id"] in alive else None for m in matches]
                suggestions = [x for x in suggestions if x["concept_id"] in alive]
            if crops is not None:
                # Read under the write lock: an ignore made while this photo was being detected still holds.
                old_ignored = self.conn.execute(
                    "SELECT id, matcher_id, x, y, w, h FROM photo_crops WHERE photo_id = ? AND ignored_at IS NOT NULL",
                    (photo_id,)).fetchall()
                ignored = [Box(*r[2:6]) for r in old_ignored]
                self.conn.execute("DELETE FROM photo_crops WHERE photo_id = ? AND matcher_id = ? AND ignored_at IS NULL",
                                  (photo_id, matcher_id))
                crop_ids, ignored_pos = [], set()
                for i, c in enumerate(crops):
                    gone = c.get("ignored") or any(self.box_iou(c["box"], b) >= self.IGNORE_OVERLAP for b in ignored)
                    crop_ids.append(self.conn.execute(
                        "INSERT INTO photo_crops (photo_id, matcher_id, content_hash, x, y, w, h, kind, det_score,"
                        " dim, vec, ignored_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        (photo_id, matcher_id, content_hash, *c["box"].as_list(), c["kind"], float(c["det_score"]),
                         int(c.get("dim") or 0), c.get("vec"), t if gone else None)).lastrowid)
                    if gone:
                        ignored_pos.add(i)
                # This matcher's old ignored rows that a new crop now carries are dropped (no duplicates).
                for oid, mid, *b in old_ignored:
                    if mid == matcher_id and any(self.box_iou(Box(*b), crops[i]["box"]) >= self.IGNORE_OVERLAP
                                                 for i in ignored_pos):
                        self.conn.execute("DELETE FROM photo_crops WHERE id = ?", (oid,))
            else:
                crop_rows = self.conn.execute("SELECT id, ignored_at FROM photo_crops WHERE photo_id = ? AND"
                                              " matcher_id = ? ORDER BY id", (photo_id, matcher_id)).fetchall()
                crop_ids = [r[0] for r in crop_rows]
                ignored_pos = {i for i, r in enumerate(crop_rows) if r[1] is not None}
            suggestions = [s for s in suggestions if s.get("crop") is None or s["crop"] not in ignored_pos]
            for cid, m in zip(crop_ids, matches):
                self.conn.execute("UPDATE photo_crops SET match_concept_id = ?, match_score = ? WHERE id = ?",
                                  (m["concept_id"] if m else None, m["score"] if m else None, cid))
            # Pending suggestions are recomputed (an unchanged one keeps its id, which a window may hold);
            # confirmed and rejected ones are the user's word and stay.
            keep = [s["concept_id"] for s in suggestions]
            self.conn.execute(f"DELETE FROM suggestions WHERE photo_id = ? AND matcher_id = ? AND status = 'pending'"
                              f" AND concept_id NOT IN ({','.join('?' * len(keep))})", (photo_id, matcher_id, *keep))
            # A concept the user rejected (by any matcher) or already tagged is not suggested again.
            settled = {r[0] for r in self.conn.execute(
                "SELECT concept_id FROM suggestions WHERE photo_id = ? AND status != 'pending'"
                " UNION SELECT concept_id FROM photo_concepts WHERE photo_id = ?", (photo_id, photo_id))}
            for s in suggestions:
                if s["concept_id"] in settled:
                    self.conn.execute("DELETE FROM suggestions WHERE photo_id = ? AND concept_id = ? AND"
                                      " matcher_id = ? AND status = 'pending'", (photo_id, s["concept_id"], matcher_id))
                    continue
                b = s["box"].as_list() if s.get("box") else [None] * 4
                crop = s.get("crop")
                self.conn.execute(
                    "INSERT INTO suggestions (photo_id, concept_id, matcher_id, score, x, y, w, h, crop_id, kind, weak,"
                    " status, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,'pending',?,?)"
                    " ON CONFLICT (photo_id, concept_id, matcher_id) DO UPDATE SET score = excluded.score,"
                    " x = excluded.x, y = excluded.y, w = excluded.w, h = excluded.h, crop_id = excluded.crop_id,"
                    " kind = excluded.kind, weak = excluded.weak, updated_at = excluded.updated_at"
                    " WHERE status = 'pending'",
                    (photo_id, s["concept_id"], matcher_id, float(s["score"]), *b,
                     crop_ids[crop] if crop is not None and crop < len(crop_ids) else None, s["kind"],
                     int(bool(s.get("weak"))), t, t))
            self.conn.execute(
                "INSERT OR REPLACE INTO photo_index_state (photo_id, matcher_id, content_hash, model_sig, refs_sig,"
                " n_crops, error, indexed_at) VALUES (?,?,?,?,?,?,?,?)",
                (photo_id, matcher_id, content_hash, model_sig, refs_sig, len(crop_ids), error, t))
            if job_id is not None:
                self.conn.execute("UPDATE job_items SET status = 'done', error = ?, updated_at = ?"
                                  " WHERE job_id = ? AND photo_id = ?", (error, t, job_id, photo_id))
        return crop_ids

    def fail_photo_retrieval(self, photo_id: int, matcher_id: str, *, content_hash: str, model_sig: str,
                             error: str, job_id: int | None = None) -> None:
        """An unusable photo: its old crops and pending suggestions go (they describe other pixels), the
        reason is kept, and the same unchanged file is not retried by the next index run. Ignored crops
        stay: they are the record of the user's "ignore", carried over when the photo is detected again."""
        t = now()
        with self.transaction():
            if self.conn.execute("SELECT 1 FROM photos WHERE id = ?", (photo_id,)).fetchone() is None:
                return
            self.conn.execute("DELETE FROM photo_crops WHERE photo_id = ? AND matcher_id = ? AND ignored_at IS NULL",
                              (photo_id, matcher_id))
            self.conn.execute("DELETE FROM suggestions WHERE photo_id = ? AND matcher_id = ? AND status = 'pending'",
                              (photo_id, matcher_id))
            self.conn.execute(
                "INSERT OR REPLACE INTO photo_index_state (photo_id, matcher_id, content_hash, model_sig, refs_sig,"
                " n_crops, error, indexed_at) VALUES (?,?,?,?,NULL,0,?,?)",
                (photo_id, matcher_id, content_hash, model_sig, error, t))
            if job_id is not None:
                self.conn.execute("UPDATE job_items SET status = 'failed', error = ?, updated_at = ?"
                                  " WHERE job_id = ? AND photo_id = ?", (error, t, job_id, photo_id))

    def finish_index_item(self, job_id: int, photo_id: int, *, error: str | None = None) -> None:
        """Mark an index job's photo finished without new results (unchanged, or known unusable)."""
        with self.transaction():
            self.conn.execute("UPDATE job_items SET status = ?, error = ?, updated_at = ? WHERE job_id = ?"
                              " AND photo_id = ?", ("failed" if error else "done", error, now(), job_id, photo_id))

    _SUGGESTION_SQL = ("SELECT s.id, s.photo_id, s.concept_id, c.name, s.kind, s.matcher_id, s.score, s.x, s.y, s.w,"
                       " s.h, s.status, s.weak, s.crop_id, s.confirm_tag, s.confirm_region_id"
                       " FROM suggestions s JOIN concepts c ON c.id = s.concept_id")

    @staticmethod
    def _suggestion(r) -> dict[str, Any]:
        return {"id": r[0], "photo_id": r[1], "concept_id": r[2], "concept_name": r[3], "kind": r[4],
                "matcher_id": r[5], "score": r[6], "box": _box(*r[7:11]), "status": r[11], "weak": bool(r[12]),
                "crop_id": r[13], "confirm_tag": r[14], "confirm_region_id": r[15]}

    def suggestion_rows(self, photo_id: int, *, include_rejected: bool = False) -> list[dict[str, Any]]:
        sql = self._SUGGESTION_SQL + " WHERE s.photo_id = ?"
        if not include_rejected:
            sql += " AND s.status != 'rejected'"
        return [self._suggestion(r) for r in self.conn.execute(sql + " ORDER BY s.weak, s.score DESC, s.id",
                                                               (photo_id,))]

    def suggestion_row(self, suggestion_id: int) -> dict[str, Any]:
        row = self.conn.execute(self._SUGGESTION_SQL + " WHERE s.id = ?", (suggestion_id,)).fetchone()
        if row is None:
            raise NotFound(f"no suggestion with id {suggestion_id}")
        return self._suggestion(row)

    def confirm_suggestion(self, suggestion_id: int, box: Box | None = None) -> None:
        """The user says yes: the concept becomes the photo's (with the suggestion's box as its region)."""
        s = self.suggestion_row(suggestion_id)
        pid, cid = s["photo_id"], s["concept_id"]
        with self.transaction():
            tagged = self.conn.execute("SELECT 1 FROM photo_concepts WHERE photo_id = ? AND concept_id = ?",
                                       (pid, cid)).fetchone()
            already = self.conn.execute("SELECT 1 FROM regions WHERE photo_id = ? AND concept_id = ?",
                                        (pid, cid)).fetchone()
            self.tag_photo(pid, s["concept_name"], box=None if already else box, source="suggestion")
            region = None
            if box is not None and not already:
                region = self.conn.execute("SELECT max(id) FROM regions WHERE photo_id = ? AND concept_id = ?",
                                           (pid, cid)).fetchone()[0]
            rec = (now(), 0 if tagged else 1, region)
            self.conn.execute("UPDATE suggestions SET status = 'confirmed', updated_at = ?, confirm_tag = ?,"
                              " confirm_region_id = ? WHERE photo_id = ? AND concept_id = ? AND status = 'pending'",
                              (*rec, pid, cid))
            # Confirming again (the tag was removed meanwhile) adds to the record; it never forgets what
            # the first confirmation made, which undo must remove.
            self.conn.execute("UPDATE suggestions SET updated_at = ?, confirm_tag = CASE WHEN status = 'confirmed'"
                              " THEN max(coalesce(confirm_tag, 0), ?) ELSE ? END, confirm_region_id = CASE WHEN"
                              " status = 'confirmed' THEN coalesce(?, confirm_region_id) ELSE ? END,"
                              " status = 'confirmed' WHERE id = ?", (rec[0], rec[1], rec[1], rec[2], rec[2], suggestion_id))

    def reject_suggestion(self, suggestion_id: int) -> None:
        """The user says no, for every matcher's suggestion of that concept on that photo; re-indexing
        will not bring it back."""
        s = self.suggestion_row(suggestion_id)
        with self.transaction():
            self.conn.execute("UPDATE suggestions SET status = 'rejected', updated_at = ? WHERE photo_id = ?"
                              " AND concept_id = ?", (now(), s["photo_id"], s["concept_id"]))

    def reset_suggestion(self, suggestion_id: int) -> dict[str, Any]:
        """Undo the user's answer: the concept's suggestions on that photo are pending again. Undoing a
        confirmation also removes the tag and region that confirmation created (source "suggestion"),
        never one that was there before it. Returns {"was", "untagged", "regions_removed"}."""
        s = self.suggestion_row(suggestion_id)
        pid, cid = s["photo_id"], s["concept_id"]
        out = {"was": s["status"], "untagged": False, "regions_removed": 0}
        with self.transaction():
            if s["status"] == "confirmed":
                recs = self.conn.execute(
                    "SELECT confirm_tag, confirm_region_id, x, y, w, h FROM suggestions WHERE photo_id = ? AND"
                    " concept_id = ? AND status = 'confirmed'", (pid, cid)).fetchall()
                src = self.conn.execute("SELECT source FROM photo_concepts WHERE photo_id = ? AND concept_id = ?",
                                        (pid, cid)).fetchone()
                regions = self.conn.execute("SELECT id, x, y, w, h FROM regions WHERE photo_id = ? AND concept_id = ?"
                                            " AND source = 'suggestion'", (pid, cid)).fetchall()
                if any(r[0] is not None for r in recs):
                    made_tag = any(r[0] == 1 for r in recs)
                    drop = {r[1] for r in recs if r[1] is not None} & {g[0] for g in regions}
                else:
                    # Confirmed before v5 (nothing recorded): only a suggestion-made tag with this very box.
                    boxes = {tuple(r[2:6]) for r in recs if r[2] is not None}
                    drop = {g[0] for g in regions if tuple(g[1:5]) in boxes}
                    made_tag = bool(drop) or not boxes
                for rid in drop:
                    self.conn.execute("DELETE FROM regions WHERE id = ?", (rid,))
                out["regions_removed"] = len(drop)
                left = self.conn.execute("SELECT 1 FROM regions WHERE photo_id = ? AND concept_id = ?",
                                         (pid, cid)).fetchone()
                # A region the user drew since is their word that the person is there: the tag stays.
                if made_tag and src is not None and src[0] == "suggestion" and left is None:
                    self.conn.execute("DELETE FROM photo_concepts WHERE photo_id = ? AND concept_id = ?", (pid, cid))
                    out["untagged"] = True
            self.conn.execute("UPDATE suggestions SET status = 'pending', confirm_tag = NULL, confirm_region_id = NULL,"
                              " updated_at = ? WHERE photo_id = ? AND concept_id = ? AND status != 'pending'",
                              (now(), pid, cid))
        return out

    def pending_suggestion_count(self) -> tuple[int, int]:
        """(pending suggestions, photos they are on), weak hints included: what awaits review."""
        return tuple(self.conn.execute(
            "SELECT count(*), count(DISTINCT photo_id) FROM suggestions WHERE status = 'pending'").fetchone())

    def suggestion_for(self, photo_id: int, concept_id: int) -> dict[str, Any] | None:
        """The best non-weak suggestion of a concept on a photo (any status), else the best weak one."""
        row = self.conn.execute(self._SUGGESTION_SQL + " WHERE s.photo_id = ? AND s.concept_id = ?"
                                " ORDER BY s.weak, s.score DESC, s.id LIMIT 1", (photo_id, concept_id)).fetchone()
        return self._suggestion(row) if row else None

    # A face crop nobody is matched to (or only someone the user rejected for that photo), not ignored.
    _UNKNOWN_FACE = (" pc.kind = 'face' AND pc.vec IS NOT NULL AND pc.ignored_at IS NULL"
                     " AND (pc.match_concept_id IS NULL OR EXISTS (SELECT 1 FROM suggestions s WHERE"
                     " s.photo_id = pc.photo_id AND s.concept_id = pc.match_concept_id AND s.status = 'rejected'))")

    def unknown_face_crops(self, matcher_id: str) -> list[dict[str, Any]]:
        """Face crops that match no concept (or only one the user rejected for that photo) and are not in
        a named cluster: the faces the user may want to name."""
        return [self._crop(r) for r in self.conn.execute(
            self._CROP_SQL.replace("FROM photo_crops", "FROM photo_crops pc") +
            " WHERE pc.matcher_id = ? AND" + self._UNKNOWN_FACE +
            " AND NOT EXISTS (SELECT 1 FROM face_clusters f WHERE f.id = pc.cluster_id AND f.concept_id IS NOT NULL)"
            " AND EXISTS (SELECT 1 FROM photos p WHERE p.id = pc.photo_id AND p.status = 'ok')"
            " ORDER BY pc.id", (matcher_id,))]

    def assign_face_clusters(self, matcher_id: str, assignment: dict[int, int | None]) -> dict[int, int]:
        """crop_id -> cluster id, where None means "a new cluster" and equal negative numbers mean "the
        same new cluster". Unnamed clusters left without members are deleted. Returns crop_id -> id."""
        out: dict[int, int] = {}
        new: dict[int, int] = {}
        with self.transaction():
            for crop_id, cl in assignment.items():
                if cl is None or cl < 0:
                    key = cl if cl is not None else -10**9 - crop_id
                    if key not in new:
                        new[key] = self.conn.execute("INSERT INTO face_clusters (matcher_id, created_at) VALUES (?,?)",
                                                     (matcher_id, now())).lastrowid
                    cl = new[key]
                self.conn.execute("UPDATE photo_crops SET cluster_id = ? WHERE id = ?", (cl, crop_id))
                out[crop_id] = cl
            # A face that now matches someone (or was ignored) leaves its unnamed cluster.
            self.conn.execute(
                "UPDATE photo_crops AS pc SET cluster_id = NULL WHERE pc.matcher_id = ? AND pc.cluster_id IN"
                " (SELECT id FROM face_clusters WHERE concept_id IS NULL) AND NOT (" + self._UNKNOWN_FACE + ")",
                (matcher_id,))
            self.conn.execute("DELETE FROM face_clusters WHERE matcher_id = ? AND concept_id IS NULL AND id NOT IN"
                              " (SELECT cluster_id FROM photo_crops WHERE cluster_id IS NOT NULL)", (matcher_id,))
        return out

    def face_cluster_members(self, cluster_id: int) -> list[dict[str, Any]]:
        """The faces of a cluster. For an unnamed cluster only those still unknown: a face that matched
        someone since (or was ignored) is not named or ignored with the cluster."""
        row = self.conn.execute("SELECT concept_id FROM face_clusters WHERE id = ?", (cluster_id,)).fetchone()
        if row is None:
            raise NotFound(f"no face cluster with id {cluster_id} (see `repic faces clusters`)")
        sql = self._CROP_SQL.replace("FROM photo_crops", "FROM photo_crops pc") + " WHERE pc.cluster_id = ?"
        if row[0] is None:
            sql += " AND" + self._UNKNOWN_FACE
        return [self._crop(r) for r in self.conn.execute(sql + " ORDER BY pc.det_score DESC, pc.id", (cluster_id,))]

    def face_cluster_concept(self, cluster_id: int) -> int | None:
        row = self.conn.execute("SELECT concept_id FROM face_clusters WHERE id = ?", (cluster_id,)).fetchone()
        if row is None:
            raise NotFound(f"no face cluster with id {cluster_id} (see `repic faces clusters`)")
        return row[0]

    def set_face_cluster_concept(self, cluster_id: int, concept_id: int) -> None:
        with self.transaction():
            self.conn.execute("UPDATE face_clusters SET concept_id = ? WHERE id = ?", (concept_id, cluster_id))

    def set_faces_ignored(self, crop_ids: Iterable[int], ignored: bool = True) -> list[int]:
        """Dismiss ("not a face", a stranger) or restore detections. The same box found by another
        matcher on that photo goes with it. An ignored crop leaves its cluster, and a pending suggestion
        it was the evidence for moves to another crop of that photo that matched the same concept, or
        goes. Returns every crop id changed."""
        ids = sorted(set(crop_ids))
        t = now()
        changed: list[int] = []
        with self.transaction():
            for cid in ids:
                row = self.conn.execute("SELECT photo_id, x, y, w, h FROM photo_crops WHERE id = ?", (cid,)).fetchone()
                if row is None:
                    continue
                box = Box(*row[1:5])
                for oid, *b in self.conn.execute("SELECT id, x, y, w, h FROM photo_crops WHERE photo_id = ? AND"
                                                 " (ignored_at IS NULL) = ?", (row[0], 1 if ignored else 0)).fetchall():
                    if oid == cid or self.box_iou(box, Box(*b)) >= self.IGNORE_OVERLAP:
                        changed.append(oid)
            for oid in changed:
                self.conn.execute("UPDATE photo_crops SET ignored_at = ?, cluster_id = CASE WHEN ? THEN NULL"
                                  " ELSE cluster_id END WHERE id = ?", (t if ignored else None, ignored, oid))
            if not ignored and changed:
                # A face back in play may be the evidence of a suggestion: the next index run re-matches.
                marks = ",".join("?" * len(changed))
                self._invalidate_matches(r[0] for r in self.conn.execute(
                    f"SELECT DISTINCT photo_id FROM photo_crops WHERE id IN ({marks})", changed).fetchall())
                # An ignore kept only as a record (its photo was re-detected since without that box)
                # describes other pixels: un-ignoring it ends the record instead of reviving the face.
                self.conn.execute(f"DELETE FROM photo_crops WHERE id IN ({marks}) AND content_hash !="
                                  f" (SELECT p.content_hash FROM photos p WHERE p.id = photo_crops.photo_id)", changed)
            if ignored and changed:
                marks = ",".join("?" * len(changed))
                for sid, pid, concept, matcher in self.conn.execute(
                        f"SELECT id, photo_id, concept_id, matcher_id FROM suggestions WHERE status = 'pending'"
                        f" AND crop_id IN ({marks})", changed).fetchall():
                    other = self.conn.execute(
                        "SELECT id, x, y, w, h, match_score FROM photo_crops WHERE photo_id = ? AND matcher_id = ?"
                        " AND match_concept_id = ? AND ignored_at IS NULL ORDER BY match_score DESC LIMIT 1",
                        (pid, matcher, concept)).fetchone()
                    if other is None:
                        self.conn.execute("DELETE FROM suggestions WHERE id = ?", (sid,))
                    else:
                        self.conn.execute("UPDATE suggestions SET crop_id = ?, x = ?, y = ?, w = ?, h = ?, score = ?,"
                                          " updated_at = ? WHERE id = ?", (*other, t, sid))
                self.conn.execute("DELETE FROM face_clusters WHERE concept_id IS NULL AND id NOT IN"
                                  " (SELECT cluster_id FROM photo_crops WHERE cluster_id IS NOT NULL)")
        return changed

    def ignored_face_crops(self, matcher_id: str) -> list[dict[str, Any]]:
        """The faces the user dismissed, newest first (what "Show ignored faces" lists)."""
        return [self._crop(r) for r in self.conn.execute(
            self._CROP_SQL + " WHERE matcher_id = ? AND kind = 'face' AND ignored_at IS NOT NULL"
            " AND photo_id IN (SELECT id FROM photos WHERE status = 'ok') ORDER BY ignored_at DESC, id",
            (matcher_id,))]

    def retrieval_counts(self, matcher_id: str) -> dict[str, int]:
        q = lambda sql: self.conn.execute(sql, (matcher_id,)).fetchone()[0]  # noqa: E731
        return {"indexed": q("SELECT count(*) FROM photo_index_state WHERE matcher_id = ? AND error IS NULL"),
                "failed": q("SELECT count(*) FROM photo_index_state WHERE matcher_id = ? AND error IS NOT NULL"),
                "crops": q("SELECT count(*) FROM photo_crops WHERE matcher_id = ?"),
                "references": q("SELECT count(*) FROM ref_embeddings WHERE matcher_id = ? AND vec IS NOT NULL"),
                "pending": q("SELECT count(*) FROM suggestions WHERE matcher_id = ? AND status = 'pending'")}

    # ---------------------------------------------------------------- adapters
    _ADAPTER_SQL = "SELECT id, name, path, base_model, base_revision, manifest, created_at FROM adapters"

    def register_adapter(self, name: str, path: str | os.PathLike, *, base_model: str,
                         base_revision: str | None = None, manifest: dict[str, Any] | None = None,
                         replace: bool = False) -> "Adapter":
        """Record a trained LoRA adapter (folder with adapter_model.safetensors) under a unique name."""
        name = name.strip()
        if not name:
            raise LibraryError("an adapter needs a name")
        with self.transaction():
            if self.conn.execute("SELECT 1 FROM adapters WHERE name = ?", (name,)).fetchone():
                if not replace:
                    raise LibraryError(f"there is already an adapter called {name!r}")
                self.conn.execute("DELETE FROM adapters WHERE name = ?", (name,))
            self.conn.execute(
                "INSERT INTO adapters (name, path, base_model, base_revision, manifest, created_at)"
                " VALUES (?,?,?,?,?,?)",
                (name, os.fspath(path), base_model, base_revision,
                 json.dumps(manifest or {}, ensure_ascii=False), now()))
        return self.adapter(name)

    @staticmethod
    def _adapter(r) -> "Adapter":
        return Adapter(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6])

    def adapters(self) -> list["Adapter"]:
        return [self._adapter(r) for r in self.conn.execute(self._ADAPTER_SQL + " ORDER BY created_at, id")]

    def adapter(self, name_or_id: str | int) -> "Adapter":
        if isinstance(name_or_id, int) or (isinstance(name_or_id, str) and name_or_id.isdecimal()
                                           and int(name_or_id) < 2 ** 63):  # else a name, not an SQLite id
            row = self.conn.execute(self._ADAPTER_SQL + " WHERE id = ? OR name = ?",
                                    (int(name_or_id), str(name_or_id))).fetchone()
        else:
            row = self.conn.execute(self._ADAPTER_SQL + " WHERE name = ?", (name_or_id,)).fetchone()
        if row is None:
            raise NotFound(f"no adapter called {name_or_id!r} (see `repic-train adapters list`)")
        return self._adapter(row)

    def update_adapter_manifest(self, name: str, manifest: dict[str, Any]) -> None:
        a = self.adapter(name)
        with self.transaction():
            self.conn.execute("UPDATE adapters SET manifest = ? WHERE id = ?",
                              (json.dumps(manifest, ensure_ascii=False), a.id))

    def remove_adapter(self, name: str) -> "Adapter":
        """Forget an adapter (its folder is left on disk: the caller decides whether to delete it)."""
        a = self.adapter(name)
        with self.transaction():
            self.conn.execute("DELETE FROM adapters WHERE id = ?", (a.id,))
        return a


SQL_CHUNK = 900  # SQLite's default limit on host parameters is 999


def _chunks(ids: Sequence[int], n: int = SQL_CHUNK) -> Iterable[Sequence[int]]:
    ids = list(ids)
    for i in range(0, len(ids), n):
        yield ids[i:i + n]


def _under_folder(under: str | os.PathLike | bytes | None) -> tuple[str, tuple]:
    """WHERE clause for "path_bytes is below this folder": a BLOB range scan means "starts with prefix"
    without LIKE's escaping problems ('0' is the byte after '/')."""
    if under is None:
        return "", ()
    prefix = fs_bytes(under).rstrip(b"/") + b"/"
    return " WHERE path_bytes >= ? AND path_bytes < ?", (prefix, prefix[:-1] + b"0")


def fts_query(text: str) -> str:
    """User text -> FTS5 query: each word quoted (so `AND`, `-`, `*`, quotes in user input are literal),
    words ANDed; a trailing `*` on a word keeps prefix search available."""
    terms = []
    for word in text.split():
        prefix = word.endswith("*") and len(word) > 1
        word = word.rstrip("*").replace('"', '""')
        if word:
            terms.append(f'"{word}"' + ("*" if prefix else ""))
    if not terms:
        raise LibraryError("empty search")
    return " ".join(terms)


def check_box(box: Box, width: int | None, height: int | None) -> None:
    if box.w <= 0 or box.h <= 0 or box.x < 0 or box.y < 0:
        raise LibraryError(f"box {box.as_list()} must have x,y >= 0 and a positive width and height")
    if width and height and (box.x + box.w > width or box.y + box.h > height):
        raise LibraryError(f"box {box.as_list()} lies outside the {width}x{height} photo")


MAX_BOX_COORD = 1_000_000  # far beyond any photo's pixels (the import limit is ~180 MP)


def parse_box(text: str) -> Box:
    try:
        parts = [int(round(float(v))) for v in text.split(",")]
    except (ValueError, OverflowError):  # "x", nan; inf and 1e309 overflow int()
        parts = []
    if len(parts) != 4 or any(abs(v) > MAX_BOX_COORD for v in parts):
        raise LibraryError(f"a box is X,Y,W,H in pixels (e.g. 120,80,300,300), not {text!r}")
    return Box(*parts)

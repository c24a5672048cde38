"""The photo library: one SQLite file holding photos, concepts (people/pets), captions, jobs, adapters.

`Library` owns the connection and its rules; what is stored is reached through one store per domain,
the way Anki's collection has col.tags and col.decks:

    lib.photos     photo rows, listing/filtering, skipped files          (stores/photos.py)
    lib.concepts   concepts, reference photos, photo tags and regions     (stores/concepts.py)
    lib.captions   caption rows and full-text search                      (stores/captions.py)
    lib.retrieval  the "who is in this photo?" cache and suggestions      (stores/retrieval.py)
    lib.adapters   trained LoRA adapters                                  (stores/adapters.py)

Row types and validation live in core/types.py, the schema and its migrations in core/schema.py; the
names most callers need are re-exported here.

Design notes (why, not what):
- WAL + a busy timeout so the GUI and a CLI process can share one library: readers never block the
  writer, and a writer waits for the other's short transaction instead of failing with "locked".
- Every write is one short transaction (`with lib.transaction():`), so a crash loses at most the
  operation in flight and never leaves half an import or half a merge behind. Stores write through the
  library's connection and transaction, so one spanning several stores is still one transaction.
- Schema changes are forward migrations keyed by PRAGMA user_version; a library from an older
  version is upgraded in place, inside one IMMEDIATE transaction, so two processes opening an old
  library at the same moment migrate it once.
- Box coordinates (regions, reference crops) are pixels of the photo as displayed, i.e. after EXIF
  orientation, at full resolution.
"""
from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .schema import MIGRATIONS, SCHEMA_VERSION
from .stores import AdapterStore, CaptionStore, ConceptStore, PhotoStore, RetrievalStore
# Re-exported: most callers import these from here together with Library.
from .types import (CAPTION_STATUSES, CONCEPT_KINDS, CONFIRMED_SOURCES, REGION_SOURCES, Adapter,
                    Box, Caption, Concept, ConceptRef, LibraryError, NotFound, Photo, Region, check_box,
                    display_path, fs_bytes, fts_query, now, parse_box)

BUSY_TIMEOUT_MS = 15_000

__all__ = ["Library", "BUSY_TIMEOUT_MS", "MIGRATIONS", "SCHEMA_VERSION", "CAPTION_STATUSES", "CONCEPT_KINDS",
           "CONFIRMED_SOURCES", "REGION_SOURCES", "Adapter", "Box", "Caption", "Concept", "ConceptRef", "LibraryError",
           "NotFound", "Photo", "Region", "check_box", "display_path", "fs_bytes", "fts_query", "now", "parse_box"]


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
        self.photos = PhotoStore(self)
        self.concepts = ConceptStore(self)
        self.captions = CaptionStore(self)
        self.retrieval = RetrievalStore(self)
        self.adapters = AdapterStore(self)
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

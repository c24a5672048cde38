"""The library's SQLite schema as forward migrations keyed by PRAGMA user_version.

MIGRATIONS[i] brings a library from version i to i+1; core/library.py runs the missing steps inside one
IMMEDIATE transaction, so two processes opening an old library at the same moment migrate it once.
Never edit a released step; add one. One cohesive history of CREATE/ALTER statements, kept together so the
whole schema reads top to bottom.
"""
from __future__ import annotations

import sqlite3
import textwrap


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

"""lib.captions: caption rows and full-text search over them.

Captions are never overwritten: each generation or edit is a new row, `photos.current_caption_id`
points at the one in force. History and undo come for free.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from ..types import CAPTION_STATUSES, Caption, NotFound, fts_query, now
from .common import Store, chunks


class CaptionStore(Store):
    def add(self, photo_id: int, text: str, *, tags: list[str] | None = None,
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

    def status(self, caption_id: int) -> str | None:
        row = self.conn.execute("SELECT status FROM captions WHERE id = ?", (caption_id,)).fetchone()
        return row[0] if row else None

    def set_status(self, caption_id: int, status: str) -> None:
        if status not in CAPTION_STATUSES:
            raise ValueError(f"status must be one of {CAPTION_STATUSES}")
        with self.transaction():
            self.conn.execute("UPDATE captions SET status = ? WHERE id = ?", (status, caption_id))

    def set_current(self, photo_id: int, caption_id: int | None) -> None:
        """Point a photo at one of its own captions (None: no caption); every row is kept (undo)."""
        with self.transaction():
            if caption_id is not None:
                row = self.conn.execute("SELECT photo_id FROM captions WHERE id = ?", (caption_id,)).fetchone()
                if row is None or row[0] != photo_id:
                    raise NotFound(f"caption {caption_id} does not belong to photo {photo_id}")
            self.conn.execute("UPDATE photos SET current_caption_id = ? WHERE id = ?", (caption_id, photo_id))

    def update_provenance(self, caption_id: int, provenance: dict[str, Any]) -> None:
        """Replace a caption's provenance JSON (e.g. to record where it was exported)."""
        with self.transaction():
            self.conn.execute("UPDATE captions SET provenance = ? WHERE id = ?",
                              (json.dumps(provenance, ensure_ascii=False), caption_id))

    _SQL = ("SELECT id, photo_id, text, tags, concept_set, model_id, model_revision, adapter_id,"
            " prompt_hash, source, status, parent_id, created_at, provenance, job_id FROM captions")

    @staticmethod
    def _row(r) -> Caption:
        return Caption(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), *r[5:13], json.loads(r[13]), r[14])

    def current(self, photo_id: int) -> Caption | None:
        row = self.conn.execute(self._SQL + " WHERE id = (SELECT current_caption_id FROM photos"
                                " WHERE id = ?)", (photo_id,)).fetchone()
        return self._row(row) if row else None

    def history(self, photo_id: int) -> list[Caption]:
        """Every caption the photo ever had, oldest first."""
        return [self._row(r) for r in
                self.conn.execute(self._SQL + " WHERE photo_id = ? ORDER BY id", (photo_id,))]

    def search(self, text: str, limit: int = 100) -> list[int]:
        """Photo ids whose current caption matches `text` (FTS5, words ANDed), most recently captioned
        first. Not ranked by bm25: ranking must score every match before LIMIT applies (17 ms on 100k
        captions with common words, see bench/library_bench.py), newest-first walks the index backwards
        and stops at LIMIT (0.2 ms), and for a photo album recency is the more useful order anyway."""
        return [r[0] for r in self.conn.execute(
            "SELECT p.id FROM captions_fts f JOIN photos p ON p.current_caption_id = f.rowid"
            " WHERE captions_fts MATCH ? ORDER BY f.rowid DESC LIMIT ?", (fts_query(text), limit))]

    def accepted_tags(self) -> dict[int, list]:
        """photo id -> the tags of its accepted or exported current caption, for photos not missing (one
        query: the People page counts training photos from this on every reload)."""
        return {pid: json.loads(tags) for pid, tags in self.conn.execute(
            "SELECT p.id, c.tags FROM photos p JOIN captions c ON c.id = p.current_caption_id"
            " WHERE p.status = 'ok' AND c.status IN ('accepted', 'exported') AND c.tags != '[]'")}

    def captioned_photo_ids(self, photo_ids: Sequence[int]) -> set[int]:
        """Which of these photos have a current caption."""
        out: set[int] = set()
        for chunk in chunks(photo_ids):
            q = ",".join("?" * len(chunk))
            out.update(r[0] for r in self.conn.execute(
                f"SELECT id FROM photos WHERE id IN ({q}) AND current_caption_id IS NOT NULL", tuple(chunk)))
        return out

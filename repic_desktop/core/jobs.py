"""Durable jobs in the library: a run (captioning, face indexing, ...) is a row in `jobs`, each photo an item.

Why it is shaped like this:
- `complete_item` writes the caption row and marks the item done in ONE transaction, right when the
  engine finishes that photo. A kill -9 at any moment therefore loses at most the photo in flight, and
  a resumed job never captions a done photo twice (the item is done exactly when its caption exists).
  Other kinds (the retrieval index job) mark items done the same way with their own results.
- Items left 'running' by a killed process count as pending on resume: nothing is marked done until
  its result is stored.
- The job stores its parameters (model, request, concepts mode, matcher, ...) so `--resume` (or the GUI
  on the next start) finishes it the same way it started.

Plain SQL over the library: no torch, no Qt (captioning/jobs.py runs caption jobs on top of it).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from .library import Library, LibraryError, now

UNFINISHED = ("queued", "running", "paused")


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    status: str
    params: dict[str, Any]
    error: str | None
    created_at: float
    updated_at: float
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def remaining(self) -> int:
        return self.counts.get("pending", 0) + self.counts.get("running", 0)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "status": self.status, "params": self.params,
                "error": self.error, "counts": self.counts, "total": self.total}


class JobStore:
    def __init__(self, library: Library):
        self.lib = library
        self.conn = library.conn

    def create(self, photo_ids: Sequence[int], params: dict[str, Any], kind: str = "caption") -> Job:
        ids = list(dict.fromkeys(photo_ids))  # keep order, drop repeats
        t = now()
        with self.lib.transaction():
            job_id = self.conn.execute(
                "INSERT INTO jobs (kind, status, params, created_at, updated_at) VALUES (?, 'queued', ?, ?, ?)",
                (kind, json.dumps(params, ensure_ascii=False), t, t)).lastrowid
            self.conn.executemany(
                "INSERT INTO job_items (job_id, photo_id, position, status, updated_at) VALUES (?,?,?,'pending',?)",
                [(job_id, pid, i, t) for i, pid in enumerate(ids)])
        return self.get(job_id)

    def get(self, job_id: int) -> Job:
        row = self.conn.execute("SELECT id, kind, status, params, error, created_at, updated_at FROM jobs"
                                " WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise LibraryError(f"no job with id {job_id}")
        counts = dict(self.conn.execute("SELECT status, count(*) FROM job_items WHERE job_id = ? GROUP BY status",
                                        (job_id,)).fetchall())
        return Job(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6], counts)

    def unfinished(self, kind: str = "caption") -> list[Job]:
        """Jobs a previous run did not finish, newest first (what `--resume` and the GUI offer)."""
        rows = self.conn.execute(f"SELECT id FROM jobs WHERE kind = ? AND status IN ({','.join('?' * len(UNFINISHED))})"
                                 " ORDER BY id DESC", (kind, *UNFINISHED)).fetchall()
        return [self.get(r[0]) for r in rows]

    def list(self, kind: str | None = None) -> list[Job]:
        """Every job (or every job of one kind), newest first."""
        sql, args = "SELECT id FROM jobs", ()
        if kind is not None:
            sql, args = sql + " WHERE kind = ?", (kind,)
        return [self.get(r[0]) for r in self.conn.execute(sql + " ORDER BY id DESC", args).fetchall()]

    def cancel(self, job_id: int) -> Job:
        """Stop offering an unfinished job for resume (its finished photos keep their results)."""
        job = self.get(job_id)
        if job.status not in UNFINISHED:
            raise LibraryError(f"job {job_id} is already {job.status}")
        self.set_status(job_id, "cancelled", "cancelled by the user")
        return self.get(job_id)

    def remove(self, job_id: int, *, force: bool = False) -> Job:
        """Delete a job and its items; captions and other results it made stay. A job marked running may
        be running in another window or process, so it needs `force` (after a crash it is only stale)."""
        job = self.get(job_id)
        if job.status == "running" and not force:
            raise LibraryError(f"job {job_id} is marked running (maybe in another window): "
                               "cancel it first, or remove it with --force if that process is gone")
        with self.lib.transaction():
            self.conn.execute("DELETE FROM job_items WHERE job_id = ?", (job_id,))
            self.conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return job

    def pending_photo_ids(self, job_id: int) -> list[int]:
        return [r[0] for r in self.conn.execute(
            "SELECT photo_id FROM job_items WHERE job_id = ? AND status IN ('pending', 'running') ORDER BY position",
            (job_id,))]

    def items(self, job_id: int) -> list[dict[str, Any]]:
        return [{"photo_id": r[0], "status": r[1], "error": r[2], "caption_id": r[3]} for r in self.conn.execute(
            "SELECT photo_id, status, error, caption_id FROM job_items WHERE job_id = ? ORDER BY position", (job_id,))]

    def failed_items(self, job_id: int, limit: int = 100) -> list[tuple[str, str]]:
        """(file name, reason) of a job's failed photos, in job order."""
        return [(r[0], r[1] or "") for r in self.conn.execute(
            "SELECT p.filename, ji.error FROM job_items ji JOIN photos p ON p.id = ji.photo_id"
            " WHERE ji.job_id = ? AND ji.status = 'failed' ORDER BY ji.position LIMIT ?", (job_id, limit))]

    def set_status(self, job_id: int, status: str, error: str | None = None) -> None:
        with self.lib.transaction():
            self.conn.execute("UPDATE jobs SET status = ?, error = ?, updated_at = ? WHERE id = ?",
                              (status, error, now(), job_id))

    def complete_item(self, job_id: int, photo_id: int, text: str, *, tags: list[str], concept_set: list[str],
                      provenance: dict[str, Any], model_id: str | None = None, model_revision: str | None = None,
                      adapter_id: str | None = None, prompt_hash: str | None = None) -> int:
        """Store the caption and mark the item done, atomically. Idempotent: an item already done keeps
        its caption and no second row is written."""
        with self.lib.transaction():
            row = self.conn.execute("SELECT status, caption_id FROM job_items WHERE job_id = ? AND photo_id = ?",
                                    (job_id, photo_id)).fetchone()
            if row is None:
                raise LibraryError(f"photo {photo_id} is not part of job {job_id}")
            if row[0] == "done":
                return row[1]
            cid = self.lib.captions.add(photo_id, text, tags=tags, concept_set=concept_set, model_id=model_id,
                                       model_revision=model_revision, adapter_id=adapter_id, prompt_hash=prompt_hash,
                                       source="model", provenance=provenance, job_id=job_id)
            self.conn.execute("UPDATE job_items SET status = 'done', caption_id = ?, error = NULL, updated_at = ?"
                              " WHERE job_id = ? AND photo_id = ?", (cid, now(), job_id, photo_id))
        return cid

    def fail_item(self, job_id: int, photo_id: int, error: str) -> None:
        with self.lib.transaction():
            self.conn.execute("UPDATE job_items SET status = 'failed', error = ?, updated_at = ?"
                              " WHERE job_id = ? AND photo_id = ? AND status != 'done'",
                              (error, now(), job_id, photo_id))

    def retry_failed(self, job_id: int) -> int:
        with self.lib.transaction():
            return self.conn.execute("UPDATE job_items SET status = 'pending', error = NULL, updated_at = ?"
                                     " WHERE job_id = ? AND status = 'failed'", (now(), job_id)).rowcount

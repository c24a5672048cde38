"""lib.retrieval: storage for retrieval/ ("who is in this photo?"): cached reference embeddings, the crops
found in library photos, the suggestions made from them, and clusters of unknown faces.

Vectors arrive and leave as float32 bytes so core needs no numpy; the vector math lives in retrieval/.
Suggestions are never decisions: only confirm_suggestion (and naming a face cluster through it) writes
the photo's tags and regions. One cohesive cache with its invariants (ignored faces survive re-detection,
undo removes exactly what a confirmation added), hence one module.
"""
from __future__ import annotations

from typing import Any, Iterable

from ..types import Box, NotFound, box_iou, box_or_none, now
from .common import Store


class RetrievalStore(Store):
    def merge_concepts(self, source_id: int, target_id: int) -> None:
        """lib.concepts.merge's retrieval part (inside its transaction). On a (photo, matcher) clash the user's
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
        return [{"ref_id": r[0], "concept_id": r[1], "signature": r[2], "box": box_or_none(*r[3:7]), "kind": r[7],
                 "det_score": r[8], "dim": r[9], "vec": r[10], "error": r[11]}
                for r in self.conn.execute(sql, (matcher_id,))]

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

    def ignored_boxes(self, photo_id: int) -> list[Box]:
        """Boxes the user dismissed on this photo (any matcher): a re-detected face there stays ignored."""
        return [Box(*r) for r in self.conn.execute(
            "SELECT x, y, w, h FROM photo_crops WHERE photo_id = ? AND ignored_at IS NOT NULL", (photo_id,))]

    def photo_crops(self, photo_id: int, matcher_id: str) -> list[dict[str, Any]]:
        return [self._crop(r) for r in self.conn.execute(
            self._CROP_SQL + " WHERE photo_id = ? AND matcher_id = ? ORDER BY id", (photo_id, matcher_id))]

    def store_photo(self, photo_id: int, matcher_id: str, *, content_hash: str, model_sig: str,
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
                crop_ids, ignored_pos = self._replace_crops(photo_id, matcher_id, content_hash, crops, t)
            else:
                crop_rows = self.conn.execute("SELECT id, ignored_at FROM photo_crops WHERE photo_id = ? AND"
                                              " matcher_id = ? ORDER BY id", (photo_id, matcher_id)).fetchall()
                crop_ids = [r[0] for r in crop_rows]
                ignored_pos = {i for i, r in enumerate(crop_rows) if r[1] is not None}
            suggestions = [s for s in suggestions if s.get("crop") is None or s["crop"] not in ignored_pos]
            for cid, m in zip(crop_ids, matches):
                self.conn.execute("UPDATE photo_crops SET match_concept_id = ?, match_score = ? WHERE id = ?",
                                  (m["concept_id"] if m else None, m["score"] if m else None, cid))
            self._put_suggestions(photo_id, matcher_id, suggestions, crop_ids, t)
            self.conn.execute(
                "INSERT OR REPLACE INTO photo_index_state (photo_id, matcher_id, content_hash, model_sig, refs_sig,"
                " n_crops, error, indexed_at) VALUES (?,?,?,?,?,?,?,?)",
                (photo_id, matcher_id, content_hash, model_sig, refs_sig, len(crop_ids), error, t))
            if job_id is not None:
                self.conn.execute("UPDATE job_items SET status = 'done', error = ?, updated_at = ?"
                                  " WHERE job_id = ? AND photo_id = ?", (error, t, job_id, photo_id))
        return crop_ids

    def _replace_crops(self, photo_id: int, matcher_id: str, content_hash: str, crops: list[dict[str, Any]],
                       t: float) -> tuple[list[int], set[int]]:
        """store_photo's new crops (inside its transaction): this matcher's old crops go, except ignored
        ones, whose ignore a new crop at the same place inherits. Returns (crop ids, positions ignored)."""
        # Read under the write lock: an ignore made while this photo was being detected still holds.
        old_ignored = self.conn.execute(
            "SELECT id, matcher_id, x, y, w, h FROM photo_crops WHERE photo_id = ? AND ignored_at IS NOT NULL",
            (photo_id,)).fetchall()
        ignored = [Box(*r[2:6]) for r in old_ignored]
        self.conn.execute("DELETE FROM photo_crops WHERE photo_id = ? AND matcher_id = ? AND ignored_at IS NULL",
                          (photo_id, matcher_id))
        crop_ids, ignored_pos = [], set()
        for i, c in enumerate(crops):
            gone = c.get("ignored") or any(box_iou(c["box"], b) >= self.IGNORE_OVERLAP for b in ignored)
            crop_ids.append(self.conn.execute(
                "INSERT INTO photo_crops (photo_id, matcher_id, content_hash, x, y, w, h, kind, det_score,"
                " dim, vec, ignored_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (photo_id, matcher_id, content_hash, *c["box"].as_list(), c["kind"], float(c["det_score"]),
                 int(c.get("dim") or 0), c.get("vec"), t if gone else None)).lastrowid)
            if gone:
                ignored_pos.add(i)
        # This matcher's old ignored rows that a new crop now carries are dropped (no duplicates).
        for oid, mid, *b in old_ignored:
            if mid == matcher_id and any(box_iou(Box(*b), crops[i]["box"]) >= self.IGNORE_OVERLAP
                                         for i in ignored_pos):
                self.conn.execute("DELETE FROM photo_crops WHERE id = ?", (oid,))
        return crop_ids, ignored_pos

    def _put_suggestions(self, photo_id: int, matcher_id: str, suggestions: list[dict[str, Any]],
                         crop_ids: list[int], t: float) -> None:
        """store_photo's suggestions (inside its transaction)."""
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

    def fail_photo(self, photo_id: int, matcher_id: str, *, content_hash: str, model_sig: str,
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
                "matcher_id": r[5], "score": r[6], "box": box_or_none(*r[7:11]), "status": r[11], "weak": bool(r[12]),
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
            self.lib.concepts.tag(pid, s["concept_name"], box=None if already else box, source="suggestion")
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
                    if oid == cid or box_iou(box, Box(*b)) >= self.IGNORE_OVERLAP:
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

    def counts(self, matcher_id: str) -> dict[str, int]:
        q = lambda sql: self.conn.execute(sql, (matcher_id,)).fetchone()[0]  # noqa: E731
        return {"indexed": q("SELECT count(*) FROM photo_index_state WHERE matcher_id = ? AND error IS NULL"),
                "failed": q("SELECT count(*) FROM photo_index_state WHERE matcher_id = ? AND error IS NOT NULL"),
                "crops": q("SELECT count(*) FROM photo_crops WHERE matcher_id = ?"),
                "references": q("SELECT count(*) FROM ref_embeddings WHERE matcher_id = ? AND vec IS NOT NULL"),
                "pending": q("SELECT count(*) FROM suggestions WHERE matcher_id = ? AND status = 'pending'")}

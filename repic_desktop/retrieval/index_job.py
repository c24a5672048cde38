"""Indexing: library photos are detected and embedded once per (content hash, matcher fingerprint);
matching the stored crops against the references is cheap vector math, so when only references change
the crops are re-matched without touching a model. run_index_job is a durable job in the library's
`jobs`/`job_items` tables (kind "index"): each photo's crops, suggestions and done mark are one
transaction, so a killed run resumes where it stopped.
"""
from __future__ import annotations

import sqlite3
from typing import Any, Callable, Iterable

from ..core.images import UnusableImage, is_transient_reason, open_oriented
from ..core.library import Box, Library, LibraryError, NotFound
from ..core.stores.retrieval import RetrievalStore
from ..core.types import box_iou
from .base import clamp_box, from_blob, to_blob
from .config import match_params
from .references import LoadedIndex, load_index, refresh_references
from .suggestions import Suggestion, suggestions_for
from .unknown_faces import update_face_clusters

DEFAULT_TOP_K = 5
WEAK_SCORE = 0.05  # a cat-cascade hint: "some cat is here", never an identity


def _detect_photo(library: Library, photo, matcher) -> list[dict[str, Any]]:
    """Crops of one photo, boxes in its displayed full-resolution frame. Raises UnusableImage."""
    import numpy as np

    if photo.status != "ok":
        raise UnusableImage("the photo's file is missing (moved or deleted outside the library?)")
    img = open_oriented(photo.fs_path, max_side=matcher.max_side)
    W, H = (photo.width or img.width), (photo.height or img.height)
    sx, sy = W / img.width, H / img.height
    out = []
    for c in matcher.crops(img):
        x, y, w, h = c.box
        box = clamp_box(x * sx, y * sy, w * sx, h * sy, W, H)
        if box is None:
            continue
        v = None if c.vector is None else np.asarray(c.vector, dtype=np.float32).ravel()
        out.append({"box": Box(*box), "kind": c.kind, "det_score": float(c.score),
                    "dim": 0 if v is None else int(v.size), "vec": None if v is None else to_blob(v)})
    return out


def _match(crops: list[dict[str, Any]], loaded: LoadedIndex, *, top_k: int | None, threshold: float
           ) -> tuple[list[dict | None], list[dict[str, Any]]]:
    """Per-crop best concept and the photo's suggestions (identity matches, then weak cat hints)."""
    import numpy as np

    idx = loaded.index
    with_vec = [i for i, c in enumerate(crops)
                if c.get("vec") is not None and c.get("dim") == idx.dim and not c.get("ignored")]
    matches: list[dict | None] = [None] * len(crops)
    suggestions: list[dict[str, Any]] = []
    if with_vec and len(idx):
        q = np.stack([from_blob(crops[i]["vec"], crops[i]["dim"]) for i in with_vec])
        ranked, per_crop = idx.match(q, top_k=top_k, threshold=threshold)
        for i, m in zip(with_vec, per_crop):
            matches[i] = None if m is None else {"concept_id": m.concept_id, "score": m.score}
        for m in ranked:
            c = crops[with_vec[m.crop]]
            suggestions.append({"concept_id": m.concept_id, "score": m.score, "box": c["box"],
                                "crop": with_vec[m.crop], "kind": c["kind"], "weak": False})
    cats = [i for i, c in enumerate(crops) if c["kind"] == "cat" and c.get("vec") is None and not c.get("ignored")]
    if cats:
        best = max(cats, key=lambda i: crops[i]["box"].w * crops[i]["box"].h)
        named = {s["concept_id"] for s in suggestions}
        for cid in loaded.cat_concepts:
            if cid not in named:
                suggestions.append({"concept_id": cid, "score": WEAK_SCORE, "box": crops[best]["box"],
                                    "crop": best, "kind": "cat", "weak": True})
    return matches, suggestions


def _match_signature(loaded: LoadedIndex, k: int, thr: float) -> str:
    """What a photo's stored matches were computed from: the references and the effective K and
    threshold, so a run with another K or threshold re-matches (never re-detects) the stored crops."""
    return f"{loaded.refs_sig}|k={int(k)}|t={float(thr)!r}"


def _process_photo(library: Library, photo, matcher, loaded: LoadedIndex, *, top_k: int | None,
                   threshold: float | None, job_id: int | None = None) -> tuple[str, str | None]:
    """Index one photo; returns ("indexed" | "rematched" | "skipped" | "failed", reason of a failure).
    A database conflict (e.g. an integrity error nothing here foresaw) is this photo's failure: no
    state is written, so the next run tries it again."""
    try:
        return _process_photo_inner(library, photo, matcher, loaded, top_k=top_k, threshold=threshold,
                                    job_id=job_id)
    except sqlite3.IntegrityError as exc:
        reason = f"could not store the result (the library changed meanwhile?): {exc}"
        if job_id:
            try:
                library.retrieval.finish_index_item(job_id, photo.id, error=reason)
            except sqlite3.Error:
                pass
        return "failed", reason


def _process_photo_inner(library: Library, photo, matcher, loaded: LoadedIndex, *, top_k: int | None,
                         threshold: float | None, job_id: int | None = None) -> tuple[str, str | None]:
    st = library.retrieval.index_state(photo.id, matcher.id)
    same_pixels = bool(st) and st["content_hash"] == photo.content_hash and st["model_sig"] == matcher.fingerprint
    thr = matcher.threshold if threshold is None else threshold
    k = DEFAULT_TOP_K if top_k is None else top_k
    sig = _match_signature(loaded, k, thr)
    if same_pixels and st["error"] and not is_transient_reason(st["error"]):
        # The same bytes failed before (corrupt, truncated...): do not decode them again.
        if job_id:
            library.retrieval.finish_index_item(job_id, photo.id, error=st["error"])
        return "failed", st["error"]
    if same_pixels and not st["error"]:
        if st["refs_sig"] == sig:
            if job_id:
                library.retrieval.finish_index_item(job_id, photo.id)
            return "skipped", None
        crops = library.retrieval.photo_crops(photo.id, matcher.id)
        matches, sugg = _match(crops, loaded, top_k=k, threshold=thr)
        library.retrieval.store_photo(photo.id, matcher.id, content_hash=photo.content_hash,
                                      model_sig=matcher.fingerprint, refs_sig=sig, crops=None,
                                      matches=matches, suggestions=sugg, job_id=job_id)
        return "rematched", None
    try:
        crops = _detect_photo(library, photo, matcher)
    except UnusableImage as exc:
        if photo.status != "ok":  # no index state: it is tried again when the file is back
            if job_id:
                library.retrieval.finish_index_item(job_id, photo.id, error=str(exc))
        else:
            library.retrieval.fail_photo(photo.id, matcher.id, content_hash=photo.content_hash,
                                         model_sig=matcher.fingerprint, error=str(exc), job_id=job_id)
        return "failed", str(exc)
    except Exception as exc:  # a matcher error on one photo must not end the whole run
        reason = f"could not analyse it: {exc.__class__.__name__}: {exc}"
        if job_id:  # no index state is written: the next run tries again
            library.retrieval.finish_index_item(job_id, photo.id, error=reason)
        return "failed", reason
    # The user's "ignore" outlives the crop rows: new pixels (a metadata write changes the hash) or a new
    # model re-detect the photo, and the same box must stay dismissed.
    ignored = library.retrieval.ignored_boxes(photo.id)
    for c in crops:
        c["ignored"] = any(box_iou(c["box"], b) >= RetrievalStore.IGNORE_OVERLAP for b in ignored)
    matches, sugg = _match(crops, loaded, top_k=k, threshold=thr)
    library.retrieval.store_photo(photo.id, matcher.id, content_hash=photo.content_hash,
                                  model_sig=matcher.fingerprint, refs_sig=sig, crops=crops,
                                  matches=matches, suggestions=sugg, job_id=job_id)
    return "indexed", None


def suggest_photo(library: Library, photo_id: int, matcher, *, top_k: int | None = None,
                  threshold: float | None = None, settings=None) -> list[Suggestion]:
    """Detect, embed, match and store suggestions for one photo now (slow: runs the model). A photo
    already indexed with the same pixels and model reuses its stored crops. top_k/threshold default
    to Settings' (match_params), then to the matcher's own."""
    top_k, threshold = match_params(matcher, top_k=top_k, threshold=threshold, settings=settings)
    photo = library.photos.get(photo_id)
    if photo.status != "ok":
        raise UnusableImage("the photo's file is missing (moved or deleted outside the library?)")
    refresh_references(library, matcher)
    loaded = load_index(library, matcher)
    status, reason = _process_photo(library, photo, matcher, loaded, top_k=top_k, threshold=threshold)
    if status == "failed":
        raise UnusableImage(reason or "the photo could not be analysed")
    # "skipped" means stored with these very references, K and threshold (part of the signature).
    return suggestions_for(library, photo_id)


def run_index_job(library: Library, matcher, *, job_id: int | None = None, photo_ids: Iterable[int] | None = None,
                  progress: Callable[[int, int, int | None], None] | None = None,
                  should_stop: Callable[[], bool] | None = None, top_k: int | None = None,
                  threshold: float | None = None, settings=None) -> dict[str, Any]:
    """Detect, embed and match the library (or `photo_ids`) as a durable job of kind "index".

    job_id resumes that job. Otherwise a new job covers `photo_ids` or, by default, every photo; a
    default run marks this matcher's interrupted index jobs cancelled, since it redoes nothing they
    finished. Photos whose pixels and model are unchanged are not re-detected; they are only
    re-matched when the references, K or threshold changed. A new job fixes its K and threshold in
    its params (the caller's, else Settings', else the matcher's own). Each photo is committed on its own, so stopping
    (should_stop) or a crash loses at most the photo in flight."""
    from ..core.jobs import JobStore

    store = JobStore(library)
    job = None
    superseded: list[int] = []
    if job_id is not None:
        job = store.get(job_id)
        if job.kind != "index":
            raise LibraryError(f"job {job_id} is a {job.kind} job, not an index job")
        if job.params.get("matcher") not in (None, matcher.id):
            raise LibraryError(f"job {job_id} was made with the matcher {job.params.get('matcher')!r}, "
                               f"not {matcher.id!r}: resume it with that matcher")
    elif photo_ids is None:
        # A new whole-library run supersedes an interrupted one instead of resuming it: it covers photos
        # added since, and the photos the old run finished are skipped by their stored state anyway.
        for old in store.unfinished("index"):
            if old.params.get("matcher") == matcher.id:
                store.set_status(old.id, "cancelled", "superseded by a new index run")
                superseded.append(old.id)
    if job is None:
        top_k, threshold = match_params(matcher, top_k=top_k, threshold=threshold, settings=settings)
        ids = list(photo_ids) if photo_ids is not None else [p.id for p in library.photos.list()]
        job = store.create(ids, {"matcher": matcher.id, "top_k": top_k, "threshold": threshold}, kind="index")
    params = job.params
    top_k = params.get("top_k") if top_k is None else top_k
    threshold = params.get("threshold") if threshold is None else threshold
    summary = {"job_id": job.id, "indexed": 0, "skipped": 0, "failed": 0, "cancelled": False, "errors": {},
               "superseded": superseded}
    store.set_status(job.id, "running")
    finished = False
    try:
        summary["references"] = refresh_references(library, matcher)
        loaded = load_index(library, matcher)
        pending = store.pending_photo_ids(job.id)
        total = store.get(job.id).total
        done = total - len(pending)
        if progress:
            progress(done, total, None)
        for pid in pending:
            if should_stop and should_stop():
                summary["cancelled"] = True
                break
            try:
                photo = library.photos.get(pid)
            except NotFound:
                continue  # deleted meanwhile; its job item went with it
            outcome, reason = _process_photo(library, photo, matcher, loaded, top_k=top_k, threshold=threshold,
                                             job_id=job.id)
            if outcome == "failed":
                summary["failed"] += 1
                summary["errors"][pid] = reason
            elif outcome == "skipped":
                summary["skipped"] += 1
            else:
                summary["indexed"] += 1
            done += 1
            if progress:
                progress(done, total, pid)
        finished = not summary["cancelled"]
    finally:
        remaining = len(store.pending_photo_ids(job.id))
        store.set_status(job.id, "done" if finished and remaining == 0 else "paused")
    if matcher.cluster_threshold is not None:
        update_face_clusters(library, matcher_id=matcher.id, threshold=matcher.cluster_threshold)
    summary["remaining"] = remaining
    return summary


__all__ = ["DEFAULT_TOP_K", "WEAK_SCORE", "run_index_job", "suggest_photo"]

"""Suggestions, not decisions: the one entry point the GUI and the CLI use for "who is in this photo?".

How it fits together:
- A matcher (base.Matcher) turns pixels into crops with vectors. Reference photos are embedded once and
  cached in the library keyed by (reference, matcher) with a signature of the reference's pixels (the
  photo's content hash or the copied file's size+mtime) and box, so an edited reference is re-embedded
  and an unchanged one never is.
- Library photos are detected and embedded once per (content hash, matcher fingerprint). Matching the
  stored crops against the references is cheap vector math, so when only references change the crops
  are re-matched without touching a model.
- Matches are stored as pending suggestions. Confirming one tags the photo (with its box as a region,
  source "suggestion"); rejecting one is remembered for that photo and concept, across matchers and
  re-indexing.
- Unknown faces (face crops that match no concept) are clustered with dlib's identity rule so a whole
  cluster can be named at once. A face the user dismisses ("not a face", a stranger) is ignored: it
  never clusters or suggests, and a re-detection of the same box (an edited file, another model, another
  matcher) stays ignored until the user un-ignores it.
- reset_suggestion undoes a confirm or reject (the GUI's undo, `repic suggest --reset`).
- run_index_job is a durable job in the library's `jobs`/`job_items` tables (kind "index"): each photo's
  crops, suggestions and done mark are one transaction, so a killed run resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from ..core.images import UnusableImage, is_transient_reason, open_oriented
from ..core.library import Box, Concept, Library, LibraryError, NotFound
from ..core.stores.retrieval import RetrievalStore
from ..core.types import box_iou
from .base import Crop, MatcherUnavailable, clamp_box, cosine_to_l2, from_blob, to_blob
from .index import ExactIndex, cluster_faces
from .registry import DEFAULT_MATCHER, DETECTOR_MODEL, FACE_MATCHER, MATCHERS, MatcherModel

DEFAULT_TOP_K = 5
WEAK_SCORE = 0.05  # a cat-cascade hint: "some cat is here", never an identity
# A named face group gives its best faces (a crop: photo + face box) as references, the rest are tagged.
# References are never training photos (core/training_photos.py), so each photo made a reference is one
# photo fewer to learn from: one reference per 4 faces, 1 to 3 in all.
MAX_CLUSTER_REFS = 3
FACES_PER_CLUSTER_REF = 4


def cluster_reference_count(faces: int, existing: int = 0) -> int:
    """How many of a named group's `faces` become references when the concept already has `existing`."""
    want = min(MAX_CLUSTER_REFS, max(1, faces // FACES_PER_CLUSTER_REF))
    return max(0, want - existing)
REF_MAX_SIDE = 2048  # references are decoded at most this large before cropping
_DOG_WORDS = ("dog", "puppy", "hund", "chien", "perro")

# ------------------------------------------------------------------------------------------- row types

@dataclass(frozen=True)
class Suggestion:
    """One suggested concept for one photo."""
    id: int
    photo_id: int
    concept_id: int
    concept_name: str
    kind: str  # crop kind: face|cat|dog|person|object|image
    matcher_id: str
    score: float  # cosine similarity of the evidence crop to the concept's closest reference
    box: Box | None  # displayed-pixel frame, like regions
    status: str  # "pending" | "confirmed" | "rejected"
    weak: bool  # True for the cat-cascade hint (no identity)

    @property
    def distance(self) -> float:
        """RePIC's ranking key: L2 distance of unit vectors (smaller is closer)."""
        return cosine_to_l2(self.score)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "photo_id": self.photo_id, "concept_id": self.concept_id,
                "concept": self.concept_name, "kind": self.kind, "matcher": self.matcher_id,
                "score": round(self.score, 4), "box": self.box.as_list() if self.box else None,
                "status": self.status, "weak": self.weak,
                "note": "weak hint: a cat was seen, not recognised" if self.weak else None}


@dataclass(frozen=True)
class FaceCrop:
    crop_id: int
    photo_id: int
    box: Box
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"crop_id": self.crop_id, "photo_id": self.photo_id, "box": self.box.as_list(),
                "score": round(self.score, 3)}


@dataclass(frozen=True)
class FaceCluster:
    id: int
    size: int
    members: list[FaceCrop]  # sorted by detector score, best first

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "size": self.size, "members": [m.as_dict() for m in self.members]}


# ------------------------------------------------------------------------------------------- settings

def retrieval_settings(settings=None) -> dict[str, Any]:
    """Settings.extra["retrieval"]: clip_dir, dino_dir, detector_dir, default_matcher,
    auto_include_suggestions, threshold, top_k."""
    if settings is None:
        from ..core.settings import Settings

        settings = Settings.load()
    value = (getattr(settings, "extra", None) or {}).get("retrieval") or {}
    return dict(value) if isinstance(value, dict) else {}


def match_params(matcher, *, top_k: int | None = None, threshold: float | None = None,
                 settings=None) -> tuple[int | None, float | None]:
    """The top-K and threshold a suggestion run uses when the caller gives none: Settings' "top_k" and
    "threshold" (0 or unset = the matcher's own). The one threshold in Settings is a cosine for the
    default matcher (Settings' default_matcher, else dlib-faces): other matchers keep their own."""
    if top_k is None or threshold is None:
        cfg = retrieval_settings(settings)
        if top_k is None:
            k = cfg.get("top_k")
            top_k = k if isinstance(k, int) and not isinstance(k, bool) and k > 0 else None
        if threshold is None:
            t = cfg.get("threshold")
            default = cfg.get("default_matcher") or DEFAULT_MATCHER
            if (isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t <= 1
                    and getattr(matcher, "id", None) == default):
                threshold = float(t)
    return top_k, threshold


def _model_folder_problem(path: str | None, role: MatcherModel) -> str:
    if not path:
        return (f"{role.label} is not downloaded yet (Settings → Suggestions, or "
                f"`repic model download --use-for {role.use}`)")
    if not os.path.isdir(path):
        return f"the {role.label} folder {path} does not exist"
    names = os.listdir(path)
    if "config.json" not in names:
        return f"{path} is not a model folder (no config.json)"
    if not any(n.endswith(".safetensors") for n in names):
        return f"{path} has no .safetensors weights (other formats are not loaded)"
    return ""


def _dlib_problem() -> str:
    try:
        from .dlib_faces import models_dir  # finds the folder without importing dlib

        why = "" if importlib.util.find_spec("dlib") else "dlib is not installed (pip install dlib-bin)"
        if not why and not os.path.isdir(models_dir()):
            why = "the face models are not installed (pip install face_recognition_models)"
    except MatcherUnavailable as exc:
        why = str(exc)
    return why


def available_matchers(settings=None) -> list[dict[str, Any]]:
    """Every matcher with whether it can run now and, if not, what the user should do. Imports no model."""
    cfg = retrieval_settings(settings)
    det = cfg.get(DETECTOR_MODEL.settings_key)
    det_problem = _model_folder_problem(det, DETECTOR_MODEL) if det else ""
    out = []
    for info in MATCHERS.values():
        if info.model is None:
            why = _dlib_problem()
            out.append({"id": info.id, "name": info.label, "ready": not why, "why": why, "faithful": False})
            continue
        why = _model_folder_problem(cfg.get(info.model.settings_key), info.model) or det_problem
        note = ("" if det and not det_problem else
                "no detector set: whole image + dlib face boxes as crops (not RePIC-faithful)")
        out.append({"id": info.id, "name": info.label, "ready": not why, "why": why,
                    "faithful": bool(det) and not det_problem and info.faithful_with_detector, "note": note})
    return out


_matchers: dict[tuple, Any] = {}
_matchers_lock = threading.Lock()


def get_matcher(matcher_id: str | None = None, settings=None):
    """The matcher by id (default: settings' default_matcher, else dlib-faces), loaded once per process.
    Raises MatcherUnavailable with a user-facing reason."""
    cfg = retrieval_settings(settings)
    matcher_id = matcher_id or cfg.get("default_matcher") or DEFAULT_MATCHER
    info = MATCHERS.get(matcher_id)
    if info is None:
        raise MatcherUnavailable(f"unknown matcher {matcher_id!r} (choose from {', '.join(MATCHERS)})")
    if info.model is None:
        key: tuple = (matcher_id,)
    else:
        state = next(m for m in available_matchers(settings) if m["id"] == matcher_id)
        if not state["ready"]:
            raise MatcherUnavailable(f"{state['name']}: {state['why']}")
        key = (matcher_id, cfg.get(info.model.settings_key), cfg.get(DETECTOR_MODEL.settings_key))
    with _matchers_lock:
        m = _matchers.get(key)
        if m is None:
            m = _matchers[key] = info.factory(cfg)
    return m


# ------------------------------------------------------------------------------------------- references

def _ref_signature(ref, content_hash: str | None, matcher) -> str:
    if ref.photo_id is not None and content_hash:
        src = f"photo:{content_hash}"
    else:
        try:
            st = os.stat(ref.file_path)
            src = f"file:{st.st_size}:{st.st_mtime_ns}"
        except (OSError, TypeError):
            src = "file:missing"
    box = ",".join(map(str, ref.box.as_list())) if ref.box else "-"
    return f"{matcher.fingerprint}|{src}|{box}"


def _ref_path(library: Library, ref) -> str:
    if ref.file_path:
        return ref.file_path
    return library.photos.get(ref.photo_id).fs_path


def _embed_reference(library: Library, ref, matcher) -> Crop | None:
    """The reference's crop in the displayed full-resolution frame (box scaled back). A library photo
    is decoded at most REF_MAX_SIDE large (its displayed size is known, so boxes scale exactly); a
    copied file's displayed size is only known by decoding it, so it is decoded whole."""
    if ref.photo_id is None:
        return _embed_in(open_oriented(_ref_path(library, ref)), ref.box, matcher)
    p = library.photos.get(ref.photo_id)
    decoded = open_oriented(p.fs_path, max_side=REF_MAX_SIDE)
    W, H = (p.width or decoded.width), (p.height or decoded.height)
    f = max(W / decoded.width, H / decoded.height)  # displayed frame -> decoded pixels: divide by f
    if f > 1.0:
        return _scale_crop(_embed_in(decoded, _scale_box(ref.box, 1 / f), matcher), f, W, H)
    return _embed_in(decoded, ref.box, matcher)


def _scale_box(box: Box | None, s: float) -> Box | None:
    if box is None:
        return None
    return Box(int(box.x * s), int(box.y * s), max(1, round(box.w * s)), max(1, round(box.h * s)))


def _scale_crop(crop: Crop | None, f: float, W: int, H: int) -> Crop | None:
    if crop is None:
        return None
    x, y, w, h = crop.box
    return Crop(clamp_box(x * f, y * f, w * f, h * f, W, H) or (0, 0, W, H), crop.kind, crop.score, crop.vector)


def _embed_in(full, box: Box | None, matcher) -> Crop | None:
    """The reference crop within an already decoded image, box and result in its pixels."""
    W, H = full.size
    if box is not None:
        b = box
        # Context around a drawn box: detectors need some of it to find the face again.
        region = clamp_box(b.x - b.w / 2, b.y - b.h / 2, b.w * 2, b.h * 2, W, H) or (0, 0, W, H)
    else:
        region = (0, 0, W, H)
    rx, ry, rw, rh = region
    sub = full.crop((rx, ry, rx + rw, ry + rh))
    s = min(1.0, matcher.max_side / max(rw, rh))
    if s < 1.0:
        sub = sub.resize((max(1, round(rw * s)), max(1, round(rh * s))))
    inner = None
    if box is not None:
        inner = clamp_box((box.x - rx) * s, (box.y - ry) * s, box.w * s, box.h * s,
                          sub.width, sub.height)
    crop = matcher.reference_crop(sub, inner)
    if crop is None:
        return None
    x, y, w, h = crop.box
    found = clamp_box(x / s + rx, y / s + ry, w / s, h / s, W, H)
    return Crop(found or (rx, ry, rw, rh), crop.kind, crop.score, crop.vector)


def refresh_references(library: Library, matcher) -> dict[str, int]:
    """Embed every reference whose cached embedding is missing or stale (changed pixels or box, other
    model). A reference with no usable face/crop is cached with its reason so it is not retried."""
    import numpy as np

    cached = library.retrieval.ref_embedding_signatures(matcher.id)
    counts = Counter()
    for ref, content_hash in library.concepts.all_refs():
        sig = _ref_signature(ref, content_hash, matcher)
        if cached.get(ref.id) == sig:
            counts["cached"] += 1
            continue
        try:
            crop = _embed_reference(library, ref, matcher)
        except (UnusableImage, NotFound, OSError) as exc:
            counts["failed"] += 1
            # A missing or unreadable file may come back unchanged (same signature): only a reason that
            # belongs to the bytes themselves is cached, the others are retried on the next run.
            if not isinstance(exc, UnusableImage) or is_transient_reason(str(exc)):
                continue
            library.retrieval.put_ref_embedding(ref.id, matcher.id, sig, error=f"unusable reference: {exc}")
            continue
        if crop is None or crop.vector is None:
            library.retrieval.put_ref_embedding(ref.id, matcher.id, sig,
                                                error="nothing to match found in the reference")
            counts["failed"] += 1
            continue
        v = np.asarray(crop.vector, dtype=np.float32).ravel()
        library.retrieval.put_ref_embedding(ref.id, matcher.id, sig, box=Box(*crop.box), kind=crop.kind,
                                            det_score=float(crop.score), dim=int(v.size), vec=to_blob(v))
        counts["computed"] += 1
    return dict(counts)


def _pet_hint_concepts(library: Library) -> list[Concept]:
    """The library's cats, as far as it knows: pets not described as dogs."""
    out = []
    for c in library.concepts.all():
        if c.kind != "pet":
            continue
        text = f"{c.category or ''} {c.info} {c.name}".lower()
        if not any(w in text for w in _DOG_WORDS):
            out.append(c)
    return out


@dataclass
class _LoadedIndex:
    index: ExactIndex
    refs_sig: str
    cat_concepts: list[int]


def load_index(library: Library, matcher) -> _LoadedIndex:
    """All of a matcher's cached reference vectors in one normalised matrix."""
    import numpy as np

    rows = library.retrieval.ref_embeddings(matcher.id)
    dims = Counter(r["dim"] for r in rows)
    dim = dims.most_common(1)[0][0] if dims else 0
    rows = [r for r in rows if r["dim"] == dim]  # a stale other-model row must not break the matrix
    # One join + frombuffer instead of an array per row: 5x faster at 10k references.
    vecs = (np.frombuffer(b"".join(r["vec"] for r in rows), dtype="<f4").reshape(len(rows), dim) if rows
            else np.zeros((0, max(dim, 1)), np.float32))
    index = ExactIndex(vecs, [r["concept_id"] for r in rows], [r["ref_id"] for r in rows])
    cats = [c.id for c in _pet_hint_concepts(library)]
    h = hashlib.sha1(matcher.fingerprint.encode())
    for r in rows:
        h.update(f"{r['ref_id']}:{r['concept_id']}:{r['signature']};".encode())
    h.update(("cats:" + ",".join(map(str, cats))).encode())
    return _LoadedIndex(index, h.hexdigest()[:16], cats)


# ------------------------------------------------------------------------------------------- photos

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


def _match(crops: list[dict[str, Any]], loaded: _LoadedIndex, *, top_k: int | None, threshold: float
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


def _match_signature(loaded: _LoadedIndex, k: int, thr: float) -> str:
    """What a photo's stored matches were computed from: the references and the effective K and
    threshold, so a run with another K or threshold re-matches (never re-detects) the stored crops."""
    return f"{loaded.refs_sig}|k={int(k)}|t={float(thr)!r}"


def _process_photo(library: Library, photo, matcher, loaded: _LoadedIndex, *, top_k: int | None,
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


def _process_photo_inner(library: Library, photo, matcher, loaded: _LoadedIndex, *, top_k: int | None,
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


# ------------------------------------------------------------------------------------------- public API

def _suggestion(row: dict[str, Any]) -> Suggestion:
    return Suggestion(row["id"], row["photo_id"], row["concept_id"], row["concept_name"], row["kind"],
                      row["matcher_id"], float(row["score"]), row["box"], row["status"], row["weak"])


def suggestions_for(library: Library, photo_id: int, *, include_rejected: bool = False) -> list[Suggestion]:
    """The stored suggestions of a photo, one per concept (the best evidence across matchers),
    identity matches by score first, weak hints last. No model is touched."""
    seen: set[int] = set()
    out = []
    for row in library.retrieval.suggestion_rows(photo_id, include_rejected=include_rejected):
        if row["concept_id"] in seen:
            continue
        seen.add(row["concept_id"])
        out.append(_suggestion(row))
    return out


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


def index_error(library: Library, photo_id: int, matcher_id: str) -> str | None:
    st = library.retrieval.index_state(photo_id, matcher_id)
    return st["error"] if st else None


def confirm_suggestion(library: Library, suggestion_id: int) -> None:
    row = library.retrieval.suggestion_row(suggestion_id)
    library.retrieval.confirm_suggestion(suggestion_id, box=row["box"] if not row["weak"] else None)


def reject_suggestion(library: Library, suggestion_id: int) -> None:
    library.retrieval.reject_suggestion(suggestion_id)


def reset_suggestion(library: Library, suggestion_id: int) -> dict[str, Any]:
    """Put a confirmed or rejected suggestion back to pending (undo). Undoing a confirmation removes the
    tag and region it created; a tag or region that was there before (added by hand) stays.
    Returns {"was": old status, "untagged": bool, "regions_removed": int}."""
    return library.retrieval.reset_suggestion(suggestion_id)


def find_suggestion(library: Library, photo_id: int, name: str, *, include_rejected: bool = True) -> Suggestion:
    """The suggestion of a named concept on a photo (what `repic suggest --confirm PHOTO NAME` acts on)."""
    c = library.concepts.get(name)
    for s in suggestions_for(library, photo_id, include_rejected=include_rejected):
        if s.concept_id == c.id:
            return s
    raise NotFound(f"<{c.name}> is not suggested for photo {photo_id} (run `repic suggest` on it first)")


def update_face_clusters(library: Library, *, matcher_id: str = FACE_MATCHER,
                         threshold: float | None = None) -> None:
    """Re-cluster the unknown faces, keeping cluster ids stable: a component keeps the id most of its
    members already had (ties: the older id), so the user's view does not reshuffle after indexing."""
    import numpy as np

    if threshold is None:
        threshold = MATCHERS[FACE_MATCHER].cluster_threshold
    crops = library.retrieval.unknown_face_crops(matcher_id)
    if not crops:
        library.retrieval.assign_face_clusters(matcher_id, {})
        return
    dims = Counter(c["dim"] for c in crops)
    dim = dims.most_common(1)[0][0]
    crops = [c for c in crops if c["dim"] == dim]
    vecs = np.stack([from_blob(c["vec"], dim) for c in crops])
    labels = cluster_faces(vecs, threshold)
    groups: dict[int, list[int]] = {}
    for i, root in enumerate(labels):
        groups.setdefault(root, []).append(i)
    used: set[int] = set()
    assignment: dict[int, int | None] = {}
    for n, (root, members) in enumerate(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))):
        old = Counter(crops[i]["cluster_id"] for i in members if crops[i]["cluster_id"] is not None)
        choice = next((cid for cid, _ in sorted(old.items(), key=lambda kv: (-kv[1], kv[0])) if cid not in used),
                      None)
        if choice is not None:
            used.add(choice)
        for i in members:
            assignment[crops[i]["id"]] = choice if choice is not None else -(n + 1)
    if any(assignment[c["id"]] != c["cluster_id"] for c in crops):
        library.retrieval.assign_face_clusters(matcher_id, assignment)


def face_clusters(library: Library, *, min_size: int = 1, matcher_id: str = FACE_MATCHER,
                  refresh: bool = True) -> list[FaceCluster]:
    """Clusters of unknown faces, largest first (ties: lower id)."""
    if refresh:
        update_face_clusters(library, matcher_id=matcher_id)
    groups: dict[int, list[FaceCrop]] = {}
    for c in library.retrieval.unknown_face_crops(matcher_id):
        if c["cluster_id"] is not None:
            groups.setdefault(c["cluster_id"], []).append(
                FaceCrop(c["id"], c["photo_id"], c["box"], float(c["det_score"])))
    out = [FaceCluster(cid, len(m), sorted(m, key=lambda f: (-f.score, f.crop_id)))
           for cid, m in groups.items() if len(m) >= min_size]
    return sorted(out, key=lambda c: (-c.size, c.id))


def ignore_faces(library: Library, crop_ids: Iterable[int]) -> int:
    """Dismiss single faces (a false detection, a stranger in the background): they leave the unknown
    faces for good, until unignore_faces. Returns how many face crops were dismissed."""
    return len(library.retrieval.set_faces_ignored(crop_ids, True))


def ignore_cluster(library: Library, cluster_id: int) -> int:
    """Dismiss every face of an unnamed cluster. Returns how many face crops were dismissed."""
    if library.retrieval.face_cluster_concept(cluster_id) is not None:
        raise LibraryError(f"face cluster {cluster_id} has a name: remove the person instead of ignoring faces")
    members = library.retrieval.face_cluster_members(cluster_id)
    if not members:
        raise LibraryError(f"face cluster {cluster_id} is empty (run `repic faces clusters` again)")
    return ignore_faces(library, [m["id"] for m in members])


def unignore_faces(library: Library, crop_ids: Iterable[int] | None = None, *,
                   matcher_id: str = FACE_MATCHER) -> int:
    """Bring dismissed faces back (all of the matcher's when crop_ids is None); they are clustered again
    on the next face_clusters(). Returns how many face crops came back."""
    if crop_ids is None:
        crop_ids = [c["id"] for c in library.retrieval.ignored_face_crops(matcher_id)]
    return len(library.retrieval.set_faces_ignored(crop_ids, False))


def ignored_faces(library: Library, *, matcher_id: str = FACE_MATCHER) -> list[FaceCrop]:
    """The dismissed faces, most recently dismissed first."""
    return [FaceCrop(c["id"], c["photo_id"], c["box"], float(c["det_score"]))
            for c in library.retrieval.ignored_face_crops(matcher_id)]


def name_cluster(library: Library, cluster_id: int, name: str, *, kind: str = "person") -> Concept:
    """Give a face cluster a name: the concept (new, or existing with that name) gets a few of the best
    faces as reference photos (cluster_reference_count: the face box of the photo), and every photo of
    the cluster is tagged with its face box, so the others are photos to learn from. One transaction."""
    if library.retrieval.face_cluster_concept(cluster_id) is not None:
        raise LibraryError(f"face cluster {cluster_id} already has a name")
    members = library.retrieval.face_cluster_members(cluster_id)
    if not members:
        raise LibraryError(f"face cluster {cluster_id} is empty (run `repic faces clusters` again)")
    with library.transaction():
        try:
            concept = library.concepts.get(name)
        except NotFound:
            concept = library.concepts.add(name, kind)
        existing = library.concepts.refs(concept.id)
        have = {r.photo_id for r in existing}
        budget = cluster_reference_count(len({m["photo_id"] for m in members}), len(existing))
        for m in members:  # best detections first; one reference per photo
            if budget > 0 and m["photo_id"] not in have:
                library.concepts.add_ref(concept.name, photo_id=m["photo_id"], box=m["box"])
                have.add(m["photo_id"])
                budget -= 1
            has_region = any(r.concept_id == concept.id for r in library.concepts.regions(m["photo_id"]))
            library.concepts.tag(m["photo_id"], concept.name, box=None if has_region else m["box"], source="suggestion")
        library.retrieval.set_face_cluster_concept(cluster_id, concept.id)
    return library.concepts.get(concept.id)


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


def auto_concepts(library: Library, photo_id: int, *, include_suggestions: bool = False,
                  threshold: float | None = None, top_k: int | None = None) -> list[str]:
    """Concept names for `repic caption --auto`, in RePIC's order (closest match first).

    Confirmed concepts (the photo's tags) always come: those the user tagged by hand first (they are
    certain), then those confirmed from a suggestion by its score. With include_suggestions, pending
    non-weak suggestions at or above `threshold` follow by score, up to `top_k` names in all (never
    dropping a confirmed one). Weak cat hints are never included: they name no one."""
    ranked: list[tuple[float, int, int, str]] = []
    for c in library.concepts.of_photo(photo_id):
        s = library.retrieval.suggestion_for(photo_id, c.id)
        score = math.inf if s is None or s["weak"] or s["status"] != "confirmed" else float(s["score"])
        ranked.append((-score, c.position, c.id, c.name))
    n_confirmed = len(ranked)
    if include_suggestions:
        have = {r[2] for r in ranked}
        extra = []
        for s in suggestions_for(library, photo_id):
            if s.status != "pending" or s.weak or s.concept_id in have:
                continue
            if threshold is not None and s.score < threshold:
                continue
            c = library.concepts.get(s.concept_id)
            extra.append((-s.score, c.position, c.id, c.name))
        extra.sort()
        if top_k is not None:
            extra = extra[:max(0, top_k - n_confirmed)]
        ranked += extra
    ranked.sort()
    return [r[3] for r in ranked]


def auto_params(library: Library, photo_ids: Sequence[int], *, include_suggestions: bool,
                threshold: float | None, top_k: int | None) -> dict[str, Any]:
    """The job params that fix each photo's concept names when the job is made (`repic caption --auto`
    and the GUI's "each photo's own"): confirmed concepts and, when allowed, strong pending suggestions,
    in RePIC's order. `captioning.jobs.run_caption_job` reads "photo_concepts"; fixing them now means a
    resumed job captions with the same names even if suggestions change meanwhile."""
    names = {str(pid): auto_concepts(library, pid, include_suggestions=include_suggestions, threshold=threshold,
                                     top_k=top_k) for pid in photo_ids}
    return {"auto": {"include_suggestions": include_suggestions, "threshold": threshold, "top_k": top_k},
            "photo_concepts": names}

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

This module is the API the fronts call (`service.X`), and the choice of matcher (available_matchers,
get_matcher). The pieces: config.py (settings, K and threshold), references.py, index_job.py,
suggestions.py, unknown_faces.py, auto.py (`repic caption --auto`).
"""
from __future__ import annotations

import importlib.util
import os
import threading
from typing import Any

from .auto import auto_concepts, auto_params
from .base import MatcherUnavailable
from .config import match_params, retrieval_settings
from .index_job import WEAK_SCORE, run_index_job, suggest_photo
from .references import load_index, refresh_references
from .registry import DEFAULT_MATCHER, DETECTOR_MODEL, MATCHERS, MatcherModel
from .suggestions import (
    Suggestion, confirm_suggestion, find_suggestion, index_error, reject_suggestion, reset_suggestion,
    suggestions_for,
)
from .unknown_faces import (
    FaceCluster, FaceCrop, cluster_reference_count, face_clusters, ignore_cluster, ignore_faces, ignored_faces,
    name_cluster, unignore_faces, update_face_clusters,
)

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


# Re-exported so callers keep `service.X`; a test that patches one of these must patch the module that
# defines it (only get_matcher and available_matchers live here).
__all__ = [
    "WEAK_SCORE", "FaceCluster", "FaceCrop", "Suggestion", "auto_concepts", "auto_params", "available_matchers",
    "cluster_reference_count", "confirm_suggestion", "face_clusters", "find_suggestion", "get_matcher",
    "ignore_cluster", "ignore_faces", "ignored_faces", "index_error", "load_index", "match_params", "name_cluster",
    "refresh_references", "reject_suggestion", "reset_suggestion", "retrieval_settings", "run_index_job",
    "suggest_photo", "suggestions_for", "unignore_faces", "update_face_clusters",
]

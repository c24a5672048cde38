"""The concept names `repic caption --auto` (and the GUI's "each photo's own") caption a photo with,
and the job params that fix them when the job is made."""
from __future__ import annotations

import math
from typing import Any, Sequence

from ..core.library import Library
from .suggestions import suggestions_for

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


__all__ = ["auto_concepts", "auto_params"]

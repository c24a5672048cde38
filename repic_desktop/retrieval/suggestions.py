"""The stored suggestions of a photo, and the user's answer to one: confirm (tags the photo, with its box
as a region, source "suggestion"), reject (remembered for that photo and concept, across matchers and
re-indexing), or reset (undo either). No model is touched here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.library import Box, Library, NotFound
from .base import cosine_to_l2


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


__all__ = ["Suggestion", "confirm_suggestion", "find_suggestion", "index_error", "reject_suggestion",
           "reset_suggestion", "suggestions_for"]

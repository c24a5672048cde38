"""Caption review: edit, accept, revert/restore a version, tag/untag a person, answer a suggestion. The rules
live here, once; `repic captions accept/edit/revert` and the photo panel's undo commands call them.

Why it is shaped like this:
- Caption rows are never overwritten: an edit is a new row whose parent is the old one, reverting points
  the photo at an earlier row, accepting changes only the row's status. So every operation is described
  by what it changed (`CaptionChange`: the photo's current caption and one row's status, before and
  after) and undo is `apply_change(lib, change.inverse())`; redo is `apply_change(lib, change)`. The
  GUI's QUndoCommands are thin wrappers over that (gui/widgets/photo_panel.py).
- Tags are not versioned, so `TagChange` keeps what was there before (the tag and its regions) and
  `undo_tag` puts exactly that back.
- Every refusal is a UserError/LibraryError (RepicError) with a one-line message for either front.
Plain Python: no Qt, no torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Sequence

from ..core.errors import UserError

if TYPE_CHECKING:
    from ..core.library import Box, Library, Region

ACCEPTED = "accepted"
DRAFT = "draft"


# ---------------------------------------------------------------------------------------------- captions

@dataclass(frozen=True)
class CaptionChange:
    """What a caption operation changed on one photo."""
    photo_id: int
    current_before: int | None          # the photo's current caption id before ...
    current_after: int | None           # ... and after
    status_caption: int | None = None   # the caption row whose status changed (None: no status change)
    status_before: str | None = None
    status_after: str | None = None
    created: int | None = None          # a new row this operation added (an edit); it stays on undo

    @property
    def changed(self) -> bool:
        return self.current_before != self.current_after or self.status_before != self.status_after

    def inverse(self) -> "CaptionChange":
        return replace(self, current_before=self.current_after, current_after=self.current_before,
                       status_before=self.status_after, status_after=self.status_before)

    def as_dict(self) -> dict[str, Any]:
        return {"photo": self.photo_id, "from": self.current_before, "to": self.current_after,
                "status_caption": self.status_caption, "status_before": self.status_before,
                "status": self.status_after, "created": self.created, "changed": self.changed}


def apply_change(lib: "Library", change: CaptionChange) -> None:
    """Make the library look as `change` says it did after (redo; with change.inverse(): undo)."""
    with lib.transaction():
        if change.status_caption is not None and change.status_after is not None:
            lib.captions.set_status(change.status_caption, change.status_after)
        if change.current_before != change.current_after:
            lib.captions.set_current(change.photo_id, change.current_after)


def _current(lib: "Library", photo_id: int):
    lib.photos.get(photo_id)  # NotFound for an unknown photo
    return lib.captions.current(photo_id)


def edit_caption(lib: "Library", photo_id: int, text: str, *, known: Sequence[str] | None = None,
                 expected: Sequence[str] | None = None) -> CaptionChange:
    """A new caption row with `text` (written by the user, a draft, its parent the current caption) that
    becomes the current one. `expected`: the names the caption should mention when the photo has no caption
    yet (default: its tags); `known`: every concept name (default: the library's)."""
    from ..captioning.prompt import parse_tags

    text = text.strip()
    if not text:
        raise UserError("the caption text is empty: nothing was changed")
    old = _current(lib, photo_id)
    if old is not None and old.text == text:
        return CaptionChange(photo_id, old.id, old.id)  # nothing to store: no new version
    if expected is None:
        expected = old.concept_set if old else [c.name for c in lib.concepts.of_photo(photo_id)]
    concept_set = old.concept_set if old else list(expected)
    if known is None:
        known = [c.name for c in lib.concepts.all()]
    tags = parse_tags(text, expected, known).found
    old_id = old.id if old else None
    new_id = lib.captions.add(photo_id, text, tags=tags, concept_set=concept_set, source="user", status=DRAFT,
                              parent_id=old_id, provenance={"edited_from": old_id})
    return CaptionChange(photo_id, old_id, new_id, created=new_id)


def set_status(lib: "Library", photo_id: int, status: str) -> CaptionChange:
    """Set the current caption's status (accepted, draft, ...)."""
    cap = _current(lib, photo_id)
    if cap is None:
        raise UserError(f"photo {photo_id} has no caption yet")
    lib.captions.set_status(cap.id, status)
    return CaptionChange(photo_id, cap.id, cap.id, cap.id, cap.status, status)


def accept_caption(lib: "Library", photo_id: int) -> CaptionChange:
    """Accept the photo's current caption (unchanged when it is accepted already)."""
    return set_status(lib, photo_id, ACCEPTED)


def restore_caption(lib: "Library", photo_id: int, caption_id: int) -> CaptionChange:
    """Make one of the photo's earlier captions its current one again (the others stay in the history)."""
    cur = _current(lib, photo_id)
    if caption_id not in {c.id for c in lib.captions.history(photo_id)}:
        raise UserError(f"caption {caption_id} is not a version of photo {photo_id} "
                        f"(see `repic captions list {photo_id}`)")
    change = CaptionChange(photo_id, cur.id if cur else None, caption_id)
    apply_change(lib, change)
    return change


def revert_caption(lib: "Library", photo_id: int, to: int | None = None) -> CaptionChange:
    """Go back to version `to`, or by default to the caption the current one replaced (its parent, else
    the version made just before it)."""
    if to is not None:
        return restore_caption(lib, photo_id, to)
    cur = _current(lib, photo_id)
    if cur is None:
        raise UserError(f"photo {photo_id} has no caption to revert")
    history = [c.id for c in lib.captions.history(photo_id)]
    earlier = [i for i in history if i < cur.id]
    target = cur.parent_id if cur.parent_id in history else (earlier[-1] if earlier else None)
    if target is None:
        raise UserError(f"photo {photo_id} has no earlier caption to go back to")
    return restore_caption(lib, photo_id, target)


def draft_photo_ids(lib: "Library") -> list[int]:
    """Photos whose current caption is a draft (the browser's "Drafts" filter: present photos only)."""
    from ..core.photo_queries import PhotoFilter, query_photo_ids

    return list(query_photo_ids(lib, PhotoFilter(status="draft")))


# ---------------------------------------------------------------------------------------------- tags

@dataclass(frozen=True)
class TagChange:
    """Tagging or untagging one person/pet on a photo, with what was there before."""
    photo_id: int
    concept_id: int
    add: bool
    box: "Box | None" = None
    was_tagged: bool = False
    regions_before: tuple["Region", ...] = field(default_factory=tuple)


def _tag_state(lib: "Library", photo_id: int, concept_id: int) -> tuple[bool, tuple]:
    tagged = any(c.id == concept_id for c in lib.concepts.of_photo(photo_id))
    return tagged, tuple(r for r in lib.concepts.regions(photo_id) if r.concept_id == concept_id)


def tag(lib: "Library", photo_id: int, concept_id: int, box: "Box | None" = None) -> TagChange:
    """Tag the photo with a person/pet; with `box`, mark where (replacing their earlier boxes)."""
    was, regions = _tag_state(lib, photo_id, concept_id)
    change = TagChange(photo_id, concept_id, True, box, was, regions)
    redo_tag(lib, change)
    return change


def untag(lib: "Library", photo_id: int, concept_id: int) -> TagChange:
    """Remove a person/pet from the photo (their regions too)."""
    was, regions = _tag_state(lib, photo_id, concept_id)
    change = TagChange(photo_id, concept_id, False, None, was, regions)
    redo_tag(lib, change)
    return change


def redo_tag(lib: "Library", change: TagChange) -> None:
    name = lib.concepts.get(change.concept_id).name
    if change.add:
        if not change.was_tagged or change.box is not None:
            lib.concepts.tag(change.photo_id, name, box=change.box)
    else:
        lib.concepts.untag(change.photo_id, name)


def undo_tag(lib: "Library", change: TagChange) -> None:
    """Put back the tag and regions the photo had before `change` (nothing when the concept is gone)."""
    from ..core.library import NotFound

    try:
        name = lib.concepts.get(change.concept_id).name
        if change.add and not change.was_tagged:
            lib.concepts.untag(change.photo_id, name)
        elif change.add and change.box is None:
            return  # it was tagged already: the add changed nothing
        else:
            if change.add:  # only the box was moved: drop the new one, put the earlier boxes back
                lib.concepts.untag(change.photo_id, name)
            if not change.was_tagged:
                return
            if change.regions_before:
                for r in change.regions_before:
                    lib.concepts.tag(change.photo_id, name, box=r.box, source=r.source, replace=False)
            else:
                lib.concepts.tag(change.photo_id, name)
    except NotFound:  # the concept was deleted since: nothing to restore
        pass


# ---------------------------------------------------------------------------------------------- suggestions

@dataclass(frozen=True)
class SuggestionAnswer:
    photo_id: int
    suggestion_id: int
    concept_id: int
    confirm: bool


def suggestion_still_same(lib: "Library", answer: SuggestionAnswer) -> bool:
    """An index run may have dropped the row since, and SQLite may have given its id to another one."""
    from ..core.library import LibraryError

    try:
        return lib.retrieval.suggestion_row(answer.suggestion_id)["concept_id"] == answer.concept_id
    except LibraryError:
        return False


def answer_suggestion(lib: "Library", service, photo_id: int, suggestion_id: int, concept_id: int,
                      confirm: bool) -> SuggestionAnswer:
    """Confirm (tag + region from the suggestion) or reject a pending suggestion. `service` is
    retrieval.service (or a stand-in with confirm_/reject_/reset_suggestion)."""
    answer = SuggestionAnswer(photo_id, suggestion_id, concept_id, confirm)
    redo_answer(lib, service, answer)
    return answer


def redo_answer(lib: "Library", service, answer: SuggestionAnswer) -> None:
    if not suggestion_still_same(lib, answer):
        raise UserError("that suggestion is gone (the photo was indexed again)")
    (service.confirm_suggestion if answer.confirm else service.reject_suggestion)(lib, answer.suggestion_id)


def undo_answer(lib: "Library", service, answer: SuggestionAnswer) -> None:
    """Make the suggestion pending again; a confirmation's tag and region go with it (never a tag the
    user added by hand: retrieval.service.reset_suggestion)."""
    if not suggestion_still_same(lib, answer):
        raise UserError("that suggestion is gone (the photo was indexed again)")
    service.reset_suggestion(lib, answer.suggestion_id)

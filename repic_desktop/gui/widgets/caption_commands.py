"""Undo commands for the photo panel: thin Qt wrappers over the application layer's caption review
(app/caption_review.py), so an edit, a status change, a tag or an answered suggestion can be undone from
the window's QUndoStack.
"""
from __future__ import annotations

from typing import Callable

from PySide6.QtGui import QUndoCommand

from ...app import caption_review as review
from ...core.errors import UserError
from ...core.library import Box, Library, LibraryError


class _PhotoCommand(QUndoCommand):
    """Base: knows the library and whom to tell that a photo changed. The rules are app/caption_review.py's;
    these commands only remember what an operation changed and apply it again (redo) or its inverse (undo)."""

    def __init__(self, lib: Library, photo_id: int, notify: Callable[[int], None], text: str):
        super().__init__(text)
        self.lib, self.photo_id, self.notify = lib, photo_id, notify


class _CaptionCommand(_PhotoCommand):
    """A caption operation: the first redo runs it (`operation()` -> CaptionChange), later redos apply that
    change again, undo applies its inverse."""

    change: review.CaptionChange | None = None

    def operation(self) -> review.CaptionChange | None:
        raise NotImplementedError

    def redo(self) -> None:
        if self.change is None:
            self.change = self.operation()
        else:
            review.apply_change(self.lib, self.change)
        self.notify(self.photo_id)

    def undo(self) -> None:
        if self.change is not None:
            review.apply_change(self.lib, self.change.inverse())
            self.notify(self.photo_id)


class EditCaptionCommand(_CaptionCommand):
    def __init__(self, lib, photo_id, notify, new_text: str, known: list[str], expected: list[str]):
        super().__init__(lib, photo_id, notify, "Edit caption")
        self.text_, self.known, self.expected = new_text, known, expected

    def operation(self) -> review.CaptionChange:
        return review.edit_caption(self.lib, self.photo_id, self.text_, known=self.known, expected=self.expected)


class SetStatusCommand(_CaptionCommand):
    """Sets the status of the photo's current caption when it first runs (inside a macro after an edit,
    that is the edited caption)."""

    def __init__(self, lib, photo_id, notify, status: str):
        super().__init__(lib, photo_id, notify, "Accept caption" if status == "accepted" else f"Mark caption {status}")
        self.status = status

    def operation(self) -> review.CaptionChange | None:
        if self.lib.captions.current(self.photo_id) is None:
            return None
        return review.set_status(self.lib, self.photo_id, self.status)


class RestoreCaptionCommand(_CaptionCommand):
    def __init__(self, lib, photo_id, notify, caption_id: int):
        super().__init__(lib, photo_id, notify, "Use earlier caption")
        self.caption_id = caption_id

    def operation(self) -> review.CaptionChange:
        return review.restore_caption(self.lib, self.photo_id, self.caption_id)


class TagCommand(_PhotoCommand):
    """Add (add=True) or remove a person/pet from a photo. Removing also removes its regions; undo puts
    them back. Adding may mark where they are (`box`, displayed pixels); undo removes tag and region."""

    def __init__(self, lib, photo_id, notify, concept_id: int, add: bool, box: Box | None = None):
        name = lib.concepts.get(concept_id).name
        super().__init__(lib, photo_id, notify, f"{'Add' if add else 'Remove'} <{name}>")
        self.concept_id, self.add, self.box = concept_id, add, box
        self.change: review.TagChange | None = None

    def redo(self) -> None:
        if self.change is None:
            op = review.tag if self.add else review.untag
            self.change = (op(self.lib, self.photo_id, self.concept_id, self.box) if self.add
                           else op(self.lib, self.photo_id, self.concept_id))
        else:
            review.redo_tag(self.lib, self.change)
        self.notify(self.photo_id)

    def undo(self) -> None:
        if self.change is not None:
            review.undo_tag(self.lib, self.change)
        self.notify(self.photo_id)


class AnswerSuggestionCommand(_PhotoCommand):
    """✓ or ✗ on a suggestion chip. The first answer is given before the push (so a failure is shown and
    nothing lands on the stack); redo gives it again, undo makes the suggestion pending again."""

    def __init__(self, lib, photo_id, notify, service, answer: review.SuggestionAnswer, concept_name: str,
                 report: Callable[[str], None]):
        verb = "Confirm" if answer.confirm else "Reject"
        super().__init__(lib, photo_id, notify, f"{verb} suggested <{concept_name}>")
        self.service, self.answer, self.report = service, answer, report
        self._given = True

    def redo(self) -> None:
        if self._given:
            self._given = False
            return
        try:
            review.redo_answer(self.lib, self.service, self.answer)
        except LibraryError as exc:
            self.report(f"Could not redo: {exc}")
        except UserError as exc:
            self.report(f"{str(exc)[:1].upper()}{str(exc)[1:]}; nothing to redo.")
        self.notify(self.photo_id)

    def undo(self) -> None:
        try:
            review.undo_answer(self.lib, self.service, self.answer)
        except LibraryError as exc:
            self.report(f"Could not undo: {exc}")
        except UserError as exc:
            self.report(f"{str(exc)[:1].upper()}{str(exc)[1:]}; nothing to undo.")
        self.notify(self.photo_id)

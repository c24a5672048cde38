"""The photo panel's "Who is in this photo?" suggestions: the pending ones as chips and boxes, "Find people"
on the task pool with the shared matcher, and confirm/reject as undo commands. A mixin of PhotoPanel
(photo_panel.py, whose docstring says why it is shaped like this).
"""
from __future__ import annotations

import logging

from ...app import caption_review as review
from ...core.errors import RepicError
from ...core.library import Library, LibraryError
from ..captioning.index_controller import service_or_none, shared_matcher, unavailable_type
from .caption_commands import AnswerSuggestionCommand
from .chips import SuggestionChip

log = logging.getLogger(__name__)


class PanelSuggestions:
    """The photo panel's suggestions: show the pending ones, find people on the task pool, confirm or reject."""

    # ------------------------------------------------------------------ suggestions
    @property
    def service(self):
        """The retrieval service, imported on first use (None when this build has none)."""
        return service_or_none(self._service)

    def pending_suggestions(self) -> list:
        svc = self.service
        if svc is None or self.photo_id is None:
            return []
        try:
            return [s for s in svc.suggestions_for(self.lib, self.photo_id) if s.status == "pending"]
        except LibraryError as exc:
            log.warning("cannot read suggestions: %s", exc)
            return []

    def refresh_suggestions(self) -> None:
        """Rebuild the suggestion chips and boxes from the library (stored suggestions only: fast)."""
        svc, pid = self.service, self.photo_id
        for w in (self.sugg_head, self.sugg_box):
            w.setVisible(svc is not None)
        while self.sugg_chips.count():
            w = self.sugg_chips.takeAt(0).widget()
            if w is not None and w is not self.find_btn:
                w.deleteLater()
        if svc is None or pid is None:
            self.sugg_status.hide()
            self.preview.set_suggestions([])
            return
        pending = self.pending_suggestions()
        for sug in pending:
            chip = SuggestionChip(sug)
            chip.confirmed.connect(self.confirm_suggestion)
            chip.rejected.connect(self.reject_suggestion)
            self.sugg_chips.addWidget(chip)
        self.sugg_chips.addWidget(self.find_btn)
        self.sugg_box.updateGeometry()
        self.preview.set_suggestions([(f"{s.concept_name}?" if s.weak else f"{s.concept_name} {s.score:.2f}",
                                       s.box, s.weak) for s in pending if s.box is not None])
        self._update_find_button()
        if self._matcher_why is None:
            self._check_matchers()

    def _update_find_button(self) -> None:
        busy = self.photo_id in self._finding
        self.find_btn.setText("Finding people…" if busy else "Find people")
        self.find_btn.setEnabled(not busy and not self._matcher_why)
        if self._matcher_why:
            self._show_sugg_status(f"No face matcher is ready: {self._matcher_why}")
        elif busy:
            self._show_sugg_status("Looking for faces in this photo…")

    def _show_sugg_status(self, text: str) -> None:
        self.sugg_status.setText(text)
        self.sugg_status.setVisible(bool(text))

    def _check_matchers(self) -> None:
        """Ask once, in the background, whether any matcher is ready (it may look for model files)."""
        svc = self.service
        self._matcher_why = ""

        def work():
            return svc.available_matchers()

        def done(matchers):
            if svc is not self.service:
                return
            ready = [m for m in matchers if m.get("ready")]
            if ready:
                self._matcher_why = ""
                self.find_btn.setToolTip(f"Look for faces in this photo and match them against your people and "
                                         f"pets ({ready[0].get('name') or ready[0].get('id')})")
            else:
                whys = "; ".join(f"{m.get('name') or m.get('id')}: {m.get('why')}" for m in matchers if m.get("why"))
                self._matcher_why = whys or "none is installed"
            self._update_find_button()

        self.tasks.run(work, done, lambda m, d: log.warning("cannot list face matchers: %s", m))

    def find_people(self) -> None:
        """Detect and match faces in the current photo on the task pool, then show the new suggestions."""
        svc, pid = self.service, self.photo_id
        if svc is None or pid is None or pid in self._finding:
            return
        path, unavailable = self.lib.path, unavailable_type(svc)
        self._finding.add(pid)
        self._update_find_button()

        def work():
            try:
                with Library(path) as lib:
                    return svc.suggest_photo(lib, pid, shared_matcher(svc))
            except unavailable as exc:
                return exc

        def done(result):
            self._finding.discard(pid)
            if isinstance(result, BaseException):
                self._matcher_why = str(result) or "none is installed"
            elif pid == self.photo_id:
                pending = [s for s in result if s.status == "pending"]
                self._show_sugg_status(
                    f"Found {len(pending)} suggestion{'s' if len(pending) != 1 else ''}." if pending else
                    "No one you have named was recognised in this photo." if not result else
                    "Nothing new: everyone found is already confirmed or rejected.")
            if pid == self.photo_id:
                self.refresh_suggestions()
            if not isinstance(result, BaseException):
                self.suggestions_found.emit(pid)

        def failed(message, details):
            self._finding.discard(pid)
            log.error("finding people failed: %s\n%s", message, details)
            if pid == self.photo_id:
                self.refresh_suggestions()
                self._show_sugg_status(f"Could not look for people: {message}")

        self.tasks.run(work, done, failed)

    def confirm_suggestion(self, suggestion) -> None:
        self._answer(suggestion, confirm=True)

    def reject_suggestion(self, suggestion) -> None:
        self._answer(suggestion, confirm=False)

    def _answer(self, suggestion, confirm: bool) -> None:
        svc, pid = self.service, self.photo_id
        if svc is None or pid is None:
            return
        suggestion_id = suggestion.id
        now = next((s for s in self.pending_suggestions() if s.id == suggestion_id), None)
        if now is None or now.concept_id != suggestion.concept_id:
            # An index run re-made this photo's pending suggestions since the chips were built. SQLite
            # may even have given the id to another person's suggestion: never act on a changed row.
            self.refresh_suggestions()
            self._show_sugg_status("The suggestions for this photo were just updated; please choose again.")
            return
        try:
            answer = review.answer_suggestion(self.lib, svc, pid, suggestion_id, now.concept_id, confirm)
        except RepicError as exc:
            self._show_sugg_status(f"Could not {'confirm' if confirm else 'reject'} the suggestion: {exc}")
            return
        self._show_sugg_status("")
        self.undo.push(AnswerSuggestionCommand(self.lib, pid, self._notify, svc, answer, now.concept_name,
                                               lambda text, pid=pid: self._report_for(pid, text)))
        self._notify(pid)

    def _report_for(self, photo_id: int, text: str) -> None:
        if photo_id == self.photo_id:
            self._show_sugg_status(text)

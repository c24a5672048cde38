"""The photo panel: large preview, people & pets chips, caption review (edit, accept, regenerate), history.

Why it is shaped like this:
- The preview is decoded (EXIF-oriented, scaled) on the task pool; a newer photo supersedes an older
  request, so holding the arrow key never queues decodes.
- Every change the user makes here is a QUndoCommand on the window's QUndoStack: caption edits,
  accepts, restoring an earlier version, adding and removing people/pets. The commands are thin: the
  review rules are app/caption_review.py's (shared with `repic captions accept/edit/revert`); a command
  keeps the change an operation reports and applies it again (redo) or its inverse (undo). Captions are never
  overwritten in the library (an edit is a new row whose parent is the old one), so undoing an edit
  just points the photo back at the previous caption; the edited row stays in the history. The caption
  box's own undo history holds only typing not saved yet; Ctrl+Z there with none left goes to the window's
  stack, so it takes back the user's last step (e.g. an edit-and-accept, one macro) and the box then shows
  exactly what is stored.
- These writes are single-row SQLite transactions on the GUI thread's own connection (well under a
  millisecond); no photo file is touched here.
- Suggestions ("Who is in this photo?") are read from the library (stored rows, fast) with the rest of
  the photo. Finding them means face detection and embedding, so "Find people" runs on the task pool
  with its own Library and the process's shared matcher (`index_controller.shared_matcher`); the chips
  are rebuilt from the library when it is done. Confirm (✓) and reject (✗) are commands on the same undo
  stack: undo puts the suggestion back to pending with `reset_suggestion`, which also removes the tag
  and region the confirmation made (never a tag the user had added by hand).

Beside this module: the undo commands (caption_commands.py), the chips, the caption highlighter, the flow
layout, the preview, and the suggestions part of the panel (photo_suggestions.py, a mixin of PhotoPanel).
"""
from __future__ import annotations

import datetime as _dt
import html
import logging
import os

from PySide6.QtCore import QEvent, QSize, Qt, Signal
from PySide6.QtGui import QFont, QKeySequence, QPalette, QPixmap, QUndoStack
from PySide6.QtWidgets import (
    QDialog, QFrame, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPlainTextEdit, QPushButton,
    QScrollArea, QSplitter, QToolButton, QVBoxLayout, QWidget,
)

from ...captioning.prompt import parse_tags
from ...core.library import Box, Caption, Library, LibraryError
from ..pages.layout import heading
from ..dialogs.box import BoxDialog
from ..tasks import TaskRunner
from .images import load_image_scaled
from .caption_commands import (
    EditCaptionCommand, RestoreCaptionCommand, SetStatusCommand, TagCommand,
)
from .caption_highlighter import CaptionHighlighter, tag_colors
from .flow_layout import FlowLayout
from .chips import Chip, ConceptPicker
from .preview import PreviewWidget
from .photo_suggestions import PanelSuggestions

log = logging.getLogger(__name__)

PREVIEW_MAX_SIDE = 1800


# --------------------------------------------------------------------------------------------------
# Library operations used by the undo commands
# --------------------------------------------------------------------------------------------------

def describe_provenance(c: Caption) -> str:
    """'edited by you', 'RePIC_Qwen2.5VL_7B (4-bit) in 1.9 s', 'demo model' ..."""
    prov = c.provenance or {}
    if c.source == "user":
        return "edited by you"
    if c.source != "model":
        return c.source
    model = c.model_id or prov.get("source") or "model"
    short = os.path.basename(model.rstrip("/")) if ("/" in model and os.path.isabs(model)) else model
    if prov.get("demo"):
        short = "demo model"
    extras = []
    q = prov.get("quantization")
    if q and q != "none":
        extras.append(q)
    if c.adapter_id:
        extras.append(f"adapter {os.path.basename(str(c.adapter_id).rstrip('/'))}")
    text = short + (f" ({', '.join(extras)})" if extras else "")
    if prov.get("seconds") is not None:
        text += f" in {prov['seconds']:.1f} s"
    return text


def when(ts: float) -> str:
    d = _dt.datetime.fromtimestamp(ts)
    today = _dt.date.today()
    if d.date() == today:
        return d.strftime("today %H:%M")
    if d.year == today.year:
        return d.strftime("%d %b %H:%M")
    return d.strftime("%d %b %Y")


# --------------------------------------------------------------------------------------------------
# Widgets
# --------------------------------------------------------------------------------------------------


class PhotoPanel(PanelSuggestions, QWidget):
    """Everything about the current photo. Emits `photo_changed(id)` after each change it made (the grid
    refreshes that row) and `regenerate_requested(id)` for the captioning controller."""

    photo_changed = Signal(int)
    regenerate_requested = Signal(int)
    new_concept_requested = Signal(int, str)      # photo id, name typed so far
    suggestions_found = Signal(int)               # photo id: "Find people" stored new suggestions

    def __init__(self, library: Library, tasks: TaskRunner, undo_stack: QUndoStack, parent=None, *,
                 service=None):
        super().__init__(parent)
        self.lib = library
        self.tasks = tasks
        self.undo = undo_stack
        self._service = service
        self._finding: set[int] = set()           # photos whose "Find people" is running
        self._matcher_why: str | None = None      # why no matcher is ready ("" once one is)
        self.photo_id: int | None = None
        self._preview_gen = 0
        self._loaded_caption_text = ""
        self.regenerate_available = True

        self.preview = PreviewWidget()
        self.title = heading("", 1.1)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.subtitle = QLabel()
        self.subtitle.setForegroundRole(QPalette.ColorRole.PlaceholderText)

        self.chips_box = QWidget()
        self.chips = FlowLayout(self.chips_box)
        self.add_btn = QToolButton(text="+ Add person or pet")
        self.add_btn.setToolTip("Say who is in this photo (Ctrl+T)")
        self.add_btn.clicked.connect(self.open_picker)

        self.sugg_head = _section("Suggested")
        self.sugg_box = QWidget()
        self.sugg_chips = FlowLayout(self.sugg_box)
        self.find_btn = QToolButton(text="Find people")
        self.find_btn.setToolTip("Look for faces in this photo and match them against your people and pets")
        self.find_btn.clicked.connect(self.find_people)
        self.sugg_status = QLabel(wordWrap=True)
        self.sugg_status.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.sugg_status.hide()

        self.status_pill = QLabel()
        self.status_pill.setObjectName("statusPill")
        self.editor = QPlainTextEdit()
        self.editor.setPlaceholderText("No caption yet. Caption this photo, or type one.")
        self.editor.setTabChangesFocus(True)
        self.editor.setMinimumHeight(70)
        self.editor.setMaximumHeight(120)
        self.editor.installEventFilter(self)
        self.highlighter = CaptionHighlighter(self.editor.document(), self.palette())
        self.editor.textChanged.connect(self._text_changed)
        self.warnings = QLabel(wordWrap=True)
        self.warnings.setTextFormat(Qt.TextFormat.RichText)

        self.accept_btn = QPushButton("✓  Accept")
        self.accept_btn.setToolTip("Accept this caption (Ctrl+Return)")
        self.accept_btn.clicked.connect(self.accept_caption)
        self.regen_btn = QPushButton("↻  Regenerate")
        self.regen_btn.setToolTip("Caption this photo again with the model (Ctrl+R)")
        self.regen_btn.clicked.connect(self.regenerate)
        self.save_btn = QPushButton("Save edit")
        self.save_btn.setToolTip("Keep your edit as a new version (Ctrl+S)")
        self.save_btn.clicked.connect(self.save_edit)
        self.revert_btn = QPushButton("Revert")
        self.revert_btn.setToolTip("Throw away the unsaved edit")
        self.revert_btn.clicked.connect(self.revert_edit)

        self.history = QListWidget()
        self.history.setWordWrap(True)
        self.history.setAlternatingRowColors(True)
        self.history.setMinimumHeight(90)
        self.history.itemDoubleClicked.connect(lambda it: self.restore_version(it.data(Qt.ItemDataRole.UserRole)))
        self.history.setToolTip("Double-click a version to use it again")

        details = QWidget()
        dl = QVBoxLayout(details)
        dl.setContentsMargins(12, 8, 12, 10)
        dl.setSpacing(6)
        dl.addWidget(self.title)
        dl.addWidget(self.subtitle)
        dl.addSpacing(4)
        dl.addWidget(_section("People & pets in this photo"))
        dl.addWidget(self.chips_box)
        dl.addWidget(self.sugg_head)
        dl.addWidget(self.sugg_box)
        dl.addWidget(self.sugg_status)
        dl.addSpacing(4)
        cap_row = QHBoxLayout()
        cap_row.addWidget(_section("Caption"))
        cap_row.addStretch(1)
        cap_row.addWidget(self.status_pill)
        dl.addLayout(cap_row)
        dl.addWidget(self.editor)
        dl.addWidget(self.warnings)
        btns = QHBoxLayout()
        btns.addWidget(self.accept_btn)
        btns.addWidget(self.regen_btn)
        btns.addStretch(1)
        btns.addWidget(self.revert_btn)
        btns.addWidget(self.save_btn)
        dl.addLayout(btns)
        dl.addSpacing(4)
        dl.addWidget(_section("History"))
        dl.addWidget(self.history, 1)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(details)

        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.preview)
        self.splitter.addWidget(scroll)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setSizes([520, 380])
        self.splitter.setChildrenCollapsible(False)

        self.placeholder = QLabel("Select a photo to see it here, say who is in it, and review its caption.",
                                  alignment=Qt.AlignmentFlag.AlignCenter, wordWrap=True)
        self.placeholder.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.placeholder.setMargin(30)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.placeholder)
        lay.addWidget(self.splitter)
        self.set_photo(None)

    # ------------------------------------------------------------------ showing a photo
    def set_photo(self, photo_id: int | None) -> None:
        if self.photo_id is not None and photo_id != self.photo_id and self.is_modified():
            self.save_edit()  # moving on keeps what the user typed (undoable), never loses it
        self.photo_id = photo_id
        self.placeholder.setVisible(photo_id is None)
        self.splitter.setVisible(photo_id is not None)
        if photo_id is None:
            self.preview.set_image(None)
            return
        try:
            photo = self.lib.photos.get(photo_id)
        except LibraryError as exc:
            self.photo_id = None
            self.placeholder.setText(str(exc))
            self.placeholder.show()
            self.splitter.hide()
            return
        self.title.setText(html.escape(photo.filename))
        self.title.setToolTip(photo.path)
        bits = []
        if photo.width and photo.height:
            bits.append(f"{photo.width} × {photo.height}")
        if photo.date_taken:
            bits.append(photo.date_taken.replace("T", " ")[:16])
        bits.append(_size(photo.size))
        if photo.status == "missing":
            bits.append("file missing")
        self.subtitle.setText("  ·  ".join(bits))
        self._load_preview(photo)
        self._show_sugg_status("")            # "Found 2 suggestions" was about the previous photo
        if self._matcher_why:
            self._matcher_why = None          # not ready before: ask again (the user may have installed one)
        self.refresh()

    def _load_preview(self, photo) -> None:
        self._preview_gen += 1
        gen = self._preview_gen
        self.preview.set_image(None, message="Loading…")
        path, size = photo.fs_path, (photo.width, photo.height)

        def work():
            return load_image_scaled(path, PREVIEW_MAX_SIDE, full_size=size)

        def done(result):
            if gen != self._preview_gen:
                return
            img, w, h = result
            self.preview.set_image(QPixmap.fromImage(img), QSize(w, h))

        def failed(message, details):
            if gen == self._preview_gen:
                self.preview.set_image(None, message=f"Cannot show this photo:\n{message}")

        self.tasks.run(work, done, failed)

    def refresh(self) -> None:
        """Re-read the current photo's concepts, caption and history from the library."""
        pid = self.photo_id
        if pid is None:
            return
        concepts = self.lib.concepts.of_photo(pid)
        all_concepts = self.lib.concepts.all()
        names = {c.id: c.name for c in all_concepts}
        # chips
        while self.chips.count():
            it = self.chips.takeAt(0)
            w = it.widget()
            if w is not None and w is not self.add_btn:
                w.deleteLater()
        for c in concepts:
            chip = Chip(c.id, c.name, c.kind)
            chip.removed.connect(self.remove_concept)
            self.chips.addWidget(chip)
        self.chips.addWidget(self.add_btn)
        self.chips_box.updateGeometry()
        self.preview.set_regions([(names.get(r.concept_id, "?"), r.box) for r in self.lib.concepts.regions(pid)])
        self.refresh_suggestions()
        # caption
        cap = self.lib.captions.current(pid)
        self.highlighter.set_known(names.values())
        text = cap.text if cap else ""
        self._loaded_caption_text = text
        self.editor.blockSignals(True)
        if self.editor.toPlainText() != text:
            self.editor.setPlainText(text)
        else:
            # The typing that produced the stored text (an edit just saved or accepted) is now a step on
            # the window's undo stack; left in the editor's own history, Ctrl+Z would take back the
            # typing instead of that step and show text that is not stored.
            self.editor.document().clearUndoRedoStacks()
        self.editor.blockSignals(False)
        self._set_status_pill(cap)
        self._expected = [c.name for c in concepts]
        self._known = list(names.values())
        self._update_warnings()
        self._update_buttons()
        # history (newest first)
        self.history.clear()
        for c in reversed(self.lib.captions.history(pid)):
            current = cap is not None and c.id == cap.id
            status = {"draft": "draft", "accepted": "accepted", "exported": "exported"}.get(c.status, c.status)
            head = f"{'● current  ·  ' if current else ''}{status}  ·  {describe_provenance(c)}  ·  {when(c.created_at)}"
            it = QListWidgetItem(f"{head}\n{c.text}")
            it.setData(Qt.ItemDataRole.UserRole, c.id)
            prov = "\n".join(f"{k}: {v}" for k, v in (c.provenance or {}).items() if v not in (None, "", [], {}))
            it.setToolTip(f"Caption {c.id}" + (f" (from {c.parent_id})" if c.parent_id else "")
                          + (f"\n{prov}" if prov else "") + ("\n\nDouble-click to use this version" if not current else ""))
            self.history.addItem(it)
        if self.history.count() == 0:
            it = QListWidgetItem("No captions yet.")
            it.setFlags(Qt.ItemFlag.NoItemFlags)
            self.history.addItem(it)

    def _set_status_pill(self, cap: Caption | None) -> None:
        if cap is None:
            text, color = "no caption", "#8a8a8a"
        elif cap.status == "draft":
            text, color = "needs review", "#e0a100"
        elif cap.status == "accepted":
            text, color = "accepted", "#2e9d57"
        else:
            text, color = cap.status, "#2e7bd1"
        self.status_pill.setText(text)
        self.status_pill.setStyleSheet(f"QLabel#statusPill {{ color: white; background: {color}; border-radius: 8px;"
                                       " padding: 1px 8px; font-weight: 600; }")

    def _update_warnings(self) -> None:
        text = self.editor.toPlainText()
        msgs = []
        if text.strip():
            rep = parse_tags(text, getattr(self, "_expected", []), getattr(self, "_known", []))
            _, _, warn = tag_colors(self.palette())
            if rep.missing:
                names = ", ".join(f"&lt;{html.escape(n)}&gt;" for n in rep.missing)
                msgs.append(f'<span style="color:{warn.name()}">⚠ Not named in the caption: <b>{names}</b></span>')
            if rep.unknown:
                names = ", ".join(f"&lt;{html.escape(n)}&gt;" for n in rep.unknown)
                msgs.append(f'<span style="color:{warn.name()}">⚠ Unknown name: {names} (no such person or pet)</span>')
        self.warnings.setText("<br>".join(msgs))
        self.warnings.setVisible(bool(msgs))

    def _text_changed(self) -> None:
        self._update_warnings()
        self._update_buttons()

    def is_modified(self) -> bool:
        return self.photo_id is not None and self.editor.toPlainText() != self._loaded_caption_text

    def _update_buttons(self) -> None:
        modified = self.is_modified()
        has_text = bool(self.editor.toPlainText().strip())
        cap = self.lib.captions.current(self.photo_id) if self.photo_id is not None else None
        self.save_btn.setEnabled(modified and has_text)
        self.revert_btn.setEnabled(modified)
        self.accept_btn.setEnabled(has_text and (modified or (cap is not None and cap.status == "draft")))
        self.regen_btn.setEnabled(self.photo_id is not None and self.regenerate_available)

    def set_regenerate_available(self, ok: bool, why: str = "") -> None:
        self.regenerate_available = ok
        if why:
            self.regen_btn.setToolTip(why)
        self._update_buttons()

    # ------------------------------------------------------------------ actions (all undoable)
    def _notify(self, photo_id: int) -> None:
        if photo_id == self.photo_id:
            self.refresh()
        self.photo_changed.emit(photo_id)

    def save_edit(self) -> bool:
        if not self.is_modified():
            return False
        text = self.editor.toPlainText().strip()
        if not text:
            self.revert_edit()
            return False
        self.undo.push(EditCaptionCommand(self.lib, self.photo_id, self._notify, text,
                                          getattr(self, "_known", []), getattr(self, "_expected", [])))
        return True

    def revert_edit(self) -> None:
        self.editor.setPlainText(self._loaded_caption_text)

    def accept_caption(self) -> None:
        pid = self.photo_id
        if pid is None or not self.editor.toPlainText().strip():
            return
        modified = self.is_modified()
        cap = self.lib.captions.current(pid)
        if not modified and (cap is None or cap.status != "draft"):
            return
        self.undo.beginMacro("Edit and accept caption" if modified else "Accept caption")
        try:
            if modified:
                self.save_edit()
            self.undo.push(SetStatusCommand(self.lib, pid, self._notify, "accepted"))
        finally:
            self.undo.endMacro()

    def regenerate(self) -> None:
        if self.photo_id is not None and self.regenerate_available:
            if self.is_modified():
                self.save_edit()
            self.regenerate_requested.emit(self.photo_id)

    def restore_version(self, caption_id: int | None) -> None:
        if caption_id is None or self.photo_id is None:
            return
        cur = self.lib.captions.current(self.photo_id)
        if cur is not None and cur.id == caption_id:
            return
        self.undo.push(RestoreCaptionCommand(self.lib, self.photo_id, self._notify, caption_id))

    def add_concept(self, concept_id: int, box: Box | None = None) -> None:
        if self.photo_id is None:
            return
        if box is None and any(c.id == concept_id for c in self.lib.concepts.of_photo(self.photo_id)):
            return
        self.undo.push(TagCommand(self.lib, self.photo_id, self._notify, concept_id, add=True, box=box))

    def mark_concept(self, concept_id: int):
        """Ask where the person/pet is (the reference-crop box dialog, on this photo as displayed), then
        tag the photo with that region; "Use whole photo" tags without a region, Cancel does nothing."""
        if self.photo_id is None:
            return None
        pid = self.photo_id
        photo, name = self.lib.photos.get(pid), self.lib.concepts.get(concept_id).name
        dlg = BoxDialog(self.tasks, photo.fs_path, f"Where is {name}?", (photo.width, photo.height), None,
                        self.window(), hint=f"Drag a box around {name} in this photo, or use the whole photo.")
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def finished(result: int) -> None:
            if result == QDialog.DialogCode.Accepted and self.photo_id == pid:
                self.add_concept(concept_id, box=dlg.box)

        dlg.finished.connect(finished)
        dlg.open()
        self._box_dialog = dlg
        return dlg

    def _picked(self, picker: ConceptPicker, concept_id: int) -> None:
        if picker.mark_box.isChecked():
            self.mark_concept(concept_id)
        else:
            self.add_concept(concept_id)

    def remove_concept(self, concept_id: int) -> None:
        if self.photo_id is None:
            return
        self.undo.push(TagCommand(self.lib, self.photo_id, self._notify, concept_id, add=False))

    def open_picker(self) -> ConceptPicker | None:
        if self.photo_id is None:
            return None
        have = {c.id for c in self.lib.concepts.of_photo(self.photo_id)}
        picker = ConceptPicker(self.lib.concepts.all(), have, self)
        picker.chosen.connect(lambda cid: self._picked(picker, cid))
        pid = self.photo_id
        picker.create_requested.connect(lambda name: self.new_concept_requested.emit(pid, name))
        picker.move(self.add_btn.mapToGlobal(self.add_btn.rect().bottomLeft()))
        picker.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        picker.show()
        self._picker = picker
        return picker

    # ------------------------------------------------------------------ Qt
    def eventFilter(self, obj, ev) -> bool:
        if obj is self.editor and ev.type() == QEvent.Type.KeyPress:
            mods = ev.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
            if ev.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and mods == Qt.KeyboardModifier.ControlModifier:
                self.accept_caption()
                return True
            if ev.key() == Qt.Key.Key_Escape and self.is_modified():
                self.revert_edit()
                return True
            # The editor takes Ctrl+Z / Ctrl+Shift+Z for itself. It holds only typing not yet saved (refresh
            # clears the rest), so with none to take back, the keys go to the window's undo stack: the
            # user's last action was a saved step (an accept, an edit, a tag), not the typing before it.
            doc = self.editor.document()
            if ev.matches(QKeySequence.StandardKey.Undo) and not doc.isUndoAvailable():
                self.undo.undo()
                return True
            if (ev.matches(QKeySequence.StandardKey.Redo)
                    or (ev.key() == Qt.Key.Key_Z and mods == Qt.KeyboardModifier.ControlModifier
                        | Qt.KeyboardModifier.ShiftModifier)) and not doc.isRedoAvailable():
                self.undo.redo()
                return True
        return super().eventFilter(obj, ev)

    def changeEvent(self, ev) -> None:
        if ev.type() == QEvent.Type.PaletteChange:
            self.highlighter.set_palette(self.palette())
            if self.photo_id is not None:
                self.refresh()
        super().changeEvent(ev)


def _section(text: str) -> QLabel:
    lab = QLabel(text.upper())
    f = lab.font()
    f.setPointSizeF(f.pointSizeF() * 0.82)
    f.setBold(True)
    f.setLetterSpacing(QFont.SpacingType.PercentageSpacing, 106)
    lab.setFont(f)
    lab.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    return lab


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"

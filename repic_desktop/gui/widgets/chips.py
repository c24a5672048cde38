"""Chips under the caption: a tagged person or pet, a suggestion to confirm or dismiss, and the picker that
adds one.
"""
from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox, QDialog, QFrame, QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem, QPushButton,
    QToolButton, QVBoxLayout,
)

from .caption_highlighter import tag_colors


SUGGESTION_COLOR = QColor("#f2994a")      # suggested boxes: amber, dashed (confirmed regions are blue)
WEAK_COLOR = QColor("#9b7bd4")            # cat-face hints: no identity behind them
WEAK_TIP = ("A weak hint from a cat-face detector: it found a cat's face here but cannot tell which cat. "
            "Confirm only if this is {name}.")


class Chip(QFrame):
    """A removable name chip: 'Anna  ✕'."""

    removed = Signal(int)

    def __init__(self, concept_id: int, name: str, kind: str, parent=None):
        super().__init__(parent)
        self.concept_id = concept_id
        self.setObjectName("chip")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(9, 2, 3, 2)
        lay.setSpacing(2)
        self.label = QLabel(html.escape(name))
        self.label.setToolTip(kind)
        self.button = QToolButton(text="✕", autoRaise=True)
        self.button.setToolTip(f"Remove {name} from this photo")
        self.button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.button.clicked.connect(lambda: self.removed.emit(self.concept_id))
        lay.addWidget(self.label)
        lay.addWidget(self.button)
        pal = self.palette()
        fg, bg, _ = tag_colors(pal)
        self.setStyleSheet(
            f"QFrame#chip {{ border: 1px solid {fg.name()}; border-radius: 11px;"
            f" background: rgba({bg.red()},{bg.green()},{bg.blue()},{bg.alpha()}); }}"
            f" QFrame#chip QLabel {{ color: {fg.name()}; }}"
            " QFrame#chip QToolButton { border: none; padding: 0 3px; }")


class SuggestionChip(QFrame):
    """A suggestion: 'Anya 0.82  ✓ ✗'. Dashed and amber (a guess, not yet a fact); cat-face hints are
    violet and say that they carry no identity."""

    confirmed = Signal(object)     # the Suggestion as shown
    rejected = Signal(object)

    def __init__(self, suggestion, parent=None):
        super().__init__(parent)
        s = self.suggestion = suggestion
        self.setObjectName("suggestionChip")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(9, 1, 3, 1)
        lay.setSpacing(1)
        color = WEAK_COLOR if s.weak else SUGGESTION_COLOR
        name = html.escape(s.concept_name)
        text = f"{name}? <span style='color:gray'>cat face</span>" if s.weak else \
            f"{name} <span style='color:gray'>{s.score:.2f}</span>"
        self.label = QLabel(text, textFormat=Qt.TextFormat.RichText)
        tip = WEAK_TIP.format(name=s.concept_name) if s.weak else \
            f"Suggested by {s.matcher_id}: looks like {s.concept_name} (similarity {s.score:.2f})"
        self.setToolTip(tip)
        self.label.setToolTip(tip)
        self.confirm_btn = QToolButton(text="✓", autoRaise=True)
        self.confirm_btn.setToolTip(f"Yes, this is {s.concept_name}: add them to the photo")
        self.reject_btn = QToolButton(text="✗", autoRaise=True)
        self.reject_btn.setToolTip(f"No, this is not {s.concept_name}")
        for b in (self.confirm_btn, self.reject_btn):
            b.setCursor(Qt.CursorShape.PointingHandCursor)
        self.confirm_btn.clicked.connect(lambda: self.confirmed.emit(s))
        self.reject_btn.clicked.connect(lambda: self.rejected.emit(s))
        lay.addWidget(self.label)
        lay.addWidget(self.confirm_btn)
        lay.addWidget(self.reject_btn)
        self.setStyleSheet(
            f"QFrame#suggestionChip {{ border: 1px dashed {color.name()}; border-radius: 11px;"
            f" background: rgba({color.red()},{color.green()},{color.blue()},28); }}"
            " QFrame#suggestionChip QToolButton { border: none; padding: 0 3px; font-weight: 600; }")


class ConceptPicker(QDialog):
    """A small popup: type to filter people & pets, Enter or click to choose; or create a new one."""

    chosen = Signal(int)
    create_requested = Signal(str)

    def __init__(self, concepts, exclude: set[int], parent=None):
        super().__init__(parent, Qt.WindowType.Popup)
        self.setMinimumWidth(260)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        self.search = QLineEdit(placeholderText="Find a person or pet…", clearButtonEnabled=True)
        self.list = QListWidget()
        self.list.setMaximumHeight(240)
        self.new_btn = QPushButton("+ New person or pet…")
        self.new_btn.setFlat(True)
        self.mark_box = QCheckBox("Mark where they are…")
        self.mark_box.setToolTip("After choosing, draw a box around them on the photo")
        lay.addWidget(self.search)
        lay.addWidget(self.list)
        lay.addWidget(self.mark_box)
        lay.addWidget(self.new_btn)
        for c in concepts:
            if c.id in exclude:
                continue
            it = QListWidgetItem(c.name + ("" if c.kind == "person" else f"  ({c.kind})"))
            it.setData(Qt.ItemDataRole.UserRole, c.id)
            it.setData(Qt.ItemDataRole.UserRole + 1, c.name)
            if c.info:
                it.setToolTip(c.info)
            self.list.addItem(it)
        if self.list.count() == 0:
            empty = QListWidgetItem("No one else to add yet" if concepts else "No people or pets yet")
            empty.setFlags(Qt.ItemFlag.NoItemFlags)
            self.list.addItem(empty)
        self.search.textChanged.connect(self._filter)
        self.search.returnPressed.connect(self._enter)
        self.list.itemActivated.connect(self._pick)
        self.list.itemClicked.connect(self._pick)
        self.new_btn.clicked.connect(lambda: (self.create_requested.emit(self.search.text().strip()), self.accept()))
        self._filter("")
        self.search.setFocus()

    def _filter(self, text: str) -> None:
        t = text.strip().casefold()
        first = None
        for i in range(self.list.count()):
            it = self.list.item(i)
            name = it.data(Qt.ItemDataRole.UserRole + 1)
            hide = bool(t) and (name is None or t not in name.casefold())
            it.setHidden(hide)
            if not hide and first is None and name is not None:
                first = it
        if first is not None:
            self.list.setCurrentItem(first)

    def _enter(self) -> None:
        it = self.list.currentItem()
        if it is not None and not it.isHidden() and it.data(Qt.ItemDataRole.UserRole) is not None:
            self._pick(it)
        elif self.search.text().strip():
            self.create_requested.emit(self.search.text().strip())
            self.accept()

    def _pick(self, it: QListWidgetItem) -> None:
        cid = it.data(Qt.ItemDataRole.UserRole)
        if cid is not None:
            self.chosen.emit(cid)
            self.accept()

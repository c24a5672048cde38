"""A page's empty state (what to do first) and the banner above a list (a message with an action)."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QIcon, QPalette
from PySide6.QtWidgets import (
    QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QToolButton, QVBoxLayout, QWidget,
)

from ..pages.layout import heading


class EmptyState(QWidget):
    """A friendly centred message with optional buttons (for "no photos yet", "nothing matches")."""

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.addStretch(2)
        self.icon = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.title = heading(QLabel(alignment=Qt.AlignmentFlag.AlignCenter), 1.5)
        self.text = QLabel(alignment=Qt.AlignmentFlag.AlignCenter, wordWrap=True)
        self.text.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.text.setFixedWidth(440)
        self.buttons = QHBoxLayout()
        self.buttons.addStretch(1)
        self.buttons.addStretch(1)
        lay.addWidget(self.icon)
        lay.addWidget(self.title)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.text)
        row.addStretch(1)
        lay.addLayout(row)
        lay.addSpacing(10)
        lay.addLayout(self.buttons)
        lay.addStretch(3)
        self._buttons: list[QPushButton] = []

    def set(self, title: str, text: str, buttons: list[tuple[str, Any]] = (), icon: QIcon | None = None) -> None:
        self.title.setText(title)
        self.text.setText(text)
        if icon is not None:
            self.icon.setPixmap(icon.pixmap(72, 72))
        for b in self._buttons:
            b.hide()            # at once: deleteLater waits for the event loop, and both rows showed meanwhile
            b.deleteLater()
        self._buttons = []
        for i, (label, slot) in enumerate(buttons):
            b = QPushButton(label)
            b.clicked.connect(slot)
            if i == 0:
                b.setDefault(True)
            self.buttons.insertWidget(1 + i, b)
            self._buttons.append(b)


class Banner(QFrame):
    """A slim bar above the grid: import progress with Cancel, then a summary with Details."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("banner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 4, 6, 4)
        self.label = QLabel()
        self.bar = QProgressBar(maximumWidth=260, textVisible=True)
        self.action = QPushButton()
        self.close_btn = QToolButton(text="✕", autoRaise=True, toolTip="Dismiss")
        self.close_btn.clicked.connect(self.hide)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.bar)
        lay.addWidget(self.action)
        lay.addWidget(self.close_btn)
        self._slot = None
        self.hide()

    def show_message(self, text: str, progress: tuple[int, int] | None = None, action: str | None = None,
                     slot=None, closable: bool = True) -> None:
        self.label.setText(text)
        self.bar.setVisible(progress is not None)
        if progress is not None:
            done, total = progress
            self.bar.setRange(0, max(total, 0))
            self.bar.setValue(done)
            self.bar.setFormat("%v / %m" if total else "finding photos…")
        if self._slot is not None:
            self.action.clicked.disconnect(self._slot)
            self._slot = None
        self.action.setVisible(action is not None)
        if action is not None:
            self.action.setText(action)
            self.action.clicked.connect(slot)
            self._slot = slot
        self.close_btn.setVisible(closable)
        self.show()

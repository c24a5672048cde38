"""The layout every full-window page shares: a list/setup pane on the left, details on the right."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QSplitter, QVBoxLayout, QWidget


def heading(label: QLabel | str = "", scale: float = 1.0, parent: QWidget | None = None) -> QLabel:
    """A bold label (card titles ×1, page titles ×1.3, detail headers ×1.4–1.6), scaled from the
    platform's font; given a QLabel, that label is made bold and returned."""
    if not isinstance(label, QLabel):
        label = QLabel(label, parent)
    f = QFont(label.font())
    f.setBold(True)
    if scale != 1.0:
        f.setPointSizeF(f.pointSizeF() * scale)
    label.setFont(f)
    return label


def split_page(page: QWidget, left: QWidget, right: QWidget, sizes: tuple[int, int]) -> QSplitter:
    """Fill `page` with a horizontal splitter (left, right); the right pane takes any extra width and
    neither pane can be collapsed to nothing by a careless drag."""
    splitter = QSplitter(Qt.Orientation.Horizontal)
    splitter.addWidget(left)
    splitter.addWidget(right)
    splitter.setStretchFactor(1, 1)
    splitter.setSizes(list(sizes))
    splitter.setChildrenCollapsible(False)
    lay = QVBoxLayout(page)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(splitter)
    return splitter

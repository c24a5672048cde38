"""An inline error line under a field: the library's validation message, word for word, in red."""
from __future__ import annotations

from PySide6.QtWidgets import QLabel


def error_label() -> QLabel:
    lab = QLabel(wordWrap=True)
    lab.setObjectName("inlineError")
    lab.setStyleSheet("QLabel#inlineError { color: #d64541; }")
    lab.hide()
    return lab


def show_error(label: QLabel, text: str | None) -> None:
    label.setText(text or "")
    label.setVisible(bool(text))

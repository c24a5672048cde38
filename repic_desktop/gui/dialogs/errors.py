"""Readable error dialogs and the last-resort exception hook.

The message a user reads is one or two plain sentences; the traceback, when there is one, sits behind
"Show details" (and goes to the log), never as the only thing shown.
"""
from __future__ import annotations

import logging
import sys
import traceback

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from ...core.errors import user_message

log = logging.getLogger("repic_desktop.gui")


def show_error(parent: QWidget | None, title: str, message: str, details: str | None = None,
               modal: bool = True) -> QMessageBox:
    """A readable error: title, a plain message, optional technical details behind a button."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    if details:
        box.setDetailedText(details)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    if modal and QGuiApplication.platformName() not in ("offscreen", "minimal"):
        box.exec()
    else:
        box.show()
    return box


def install_excepthook(parent_fn=lambda: None) -> None:
    """Uncaught exceptions in slots become a readable dialog (and a log entry) instead of a dead app."""
    showing = [False]

    def hook(etype, value, tb):
        details = "".join(traceback.format_exception(etype, value, tb))
        log.error("unexpected error: %s", details)
        if issubclass(etype, KeyboardInterrupt):
            QApplication.quit()
            return
        if showing[0]:
            return
        showing[0] = True
        try:
            show_error(parent_fn(), "Something went wrong",
                       f"{user_message(value)}\n\nYour library is safe: every change is saved as it is made. "
                       "If this keeps happening, the details below help to report it.", details)
        finally:
            showing[0] = False

    sys.excepthook = hook

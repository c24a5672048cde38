"""About, readable error dialogs, and the log view.

- Errors: the message a user reads is one or two plain sentences; the traceback, when there is one,
  sits behind "Show details" (and goes to the log), never as the only thing shown.
- The log view shows the `repic_desktop` loggers (and Qt's own warnings) as they come, from any thread:
  records travel to the GUI thread by a queued signal.
"""
from __future__ import annotations

import logging
import platform
import sys
import traceback

from PySide6.QtCore import QObject, Qt, Signal, Slot, qInstallMessageHandler, QtMsgType
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QApplication, QComboBox, QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QMessageBox, QPlainTextEdit,
    QPushButton, QVBoxLayout, QWidget,
)

from ... import APP_NAME, __version__

log = logging.getLogger("repic_desktop.gui")


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------

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


def describe_exception(exc: BaseException) -> str:
    from ..widgets.thumbnails import user_message
    return user_message(exc)


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
                       f"{describe_exception(value)}\n\nYour library is safe: every change is saved as it is made. "
                       "If this keeps happening, the details below help to report it.", details)
        finally:
            showing[0] = False

    sys.excepthook = hook


# --------------------------------------------------------------------------------------------------
# Log
# --------------------------------------------------------------------------------------------------

class _LogRelay(QObject):
    record = Signal(int, str)


class QtLogHandler(logging.Handler):
    """logging -> Qt signal (thread-safe: queued to whoever listens in the GUI thread)."""

    def __init__(self, capacity: int = 5000):
        super().__init__(logging.INFO)
        self.relay = _LogRelay()
        self.lines: list[tuple[int, str]] = []
        self.capacity = capacity
        self.setFormatter(logging.Formatter("%(asctime)s  %(levelname)-7s  %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            text = record.getMessage()
        self.lines.append((record.levelno, text))
        if len(self.lines) > self.capacity:
            del self.lines[: len(self.lines) - self.capacity]
        try:
            self.relay.record.emit(record.levelno, text)
        except RuntimeError:  # relay gone at shutdown
            pass


_handler: QtLogHandler | None = None


def log_handler() -> QtLogHandler:
    """The app-wide handler (installed once on the `repic_desktop` logger, plus Qt's messages)."""
    global _handler
    if _handler is None:
        _handler = QtLogHandler()
        root = logging.getLogger("repic_desktop")
        root.addHandler(_handler)
        if root.level == logging.NOTSET or root.level > logging.INFO:
            root.setLevel(logging.INFO)
    return _handler


def install_qt_message_handler() -> None:
    """Qt's own warnings go to the log (and so to the log view) instead of stderr only."""
    qt_log = logging.getLogger("repic_desktop.qt")
    levels = {QtMsgType.QtDebugMsg: logging.DEBUG, QtMsgType.QtInfoMsg: logging.INFO,
              QtMsgType.QtWarningMsg: logging.WARNING, QtMsgType.QtCriticalMsg: logging.ERROR,
              QtMsgType.QtFatalMsg: logging.CRITICAL}

    def qt_handler(mode, context, message):
        qt_log.log(levels.get(mode, logging.INFO), message)

    qInstallMessageHandler(qt_handler)


class LogView(QWidget):
    """The log, newest at the bottom, filterable by level; Copy and Clear."""

    LEVELS = (("Everything", logging.DEBUG), ("Info", logging.INFO), ("Warnings", logging.WARNING),
              ("Errors", logging.ERROR))

    def __init__(self, handler: QtLogHandler | None = None, parent=None):
        super().__init__(parent)
        self.handler = handler or log_handler()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        self.level = QComboBox()
        for label, lvl in self.LEVELS:
            self.level.addItem(label, lvl)
        self.level.setCurrentIndex(1)
        self.level.currentIndexChanged.connect(self._refill)
        copy = QPushButton("Copy")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.text.toPlainText()))
        clear = QPushButton("Clear")
        clear.clicked.connect(self.clear)
        row.addWidget(QLabel("Show:"))
        row.addWidget(self.level)
        row.addStretch(1)
        row.addWidget(copy)
        row.addWidget(clear)
        self.text = QPlainTextEdit(readOnly=True)
        self.text.setMaximumBlockCount(5000)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setPlaceholderText("Nothing logged yet.")
        lay.addLayout(row)
        lay.addWidget(self.text, 1)
        self.handler.relay.record.connect(self._append, Qt.ConnectionType.QueuedConnection)
        self._refill()

    def _refill(self) -> None:
        lvl = self.level.currentData()
        self.text.setPlainText("\n".join(t for l, t in self.handler.lines if l >= lvl))

    @Slot(int, str)
    def _append(self, level: int, text: str) -> None:
        if level >= self.level.currentData():
            self.text.appendPlainText(text)

    def clear(self) -> None:
        self.handler.lines.clear()
        self.text.clear()


# --------------------------------------------------------------------------------------------------
# About
# --------------------------------------------------------------------------------------------------

def versions() -> list[tuple[str, str]]:
    """Versions that matter for a bug report. torch/transformers are read from package metadata, not
    imported (importing torch takes seconds)."""
    from importlib import metadata

    import PySide6
    from PySide6 import QtCore

    out = [(APP_NAME, __version__), ("Python", platform.python_version()),
           ("Qt / PySide6", f"{QtCore.qVersion()} / {PySide6.__version__}")]
    for dist in ("torch", "transformers", "bitsandbytes", "pillow"):
        try:
            out.append((dist, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            out.append((dist, "not installed"))
    import sqlite3
    out.append(("SQLite", sqlite3.sqlite_version))
    out.append(("System", f"{platform.system()} {platform.release()} ({platform.machine()})"))
    return out


def gpu_summary_slow() -> str:
    """What GPU torch finds (imports torch: call from a worker)."""
    from ...captioning.device import device_summary
    return device_summary()["summary"]


class AboutDialog(QDialog):
    def __init__(self, parent=None, gpu: str | None = None, tasks=None, library_path=None):
        super().__init__(parent)
        self.setWindowTitle(f"About {APP_NAME}")
        self.setMinimumWidth(520)
        lay = QVBoxLayout(self)
        head = QHBoxLayout()
        icon = QLabel()
        app_icon = QApplication.windowIcon()
        if not app_icon.isNull():
            icon.setPixmap(app_icon.pixmap(72, 72))
        title = QLabel(f"<h2>{APP_NAME} {__version__}</h2>"
                       "<p>Captions for your family photos that name your people and pets, made on your own "
                       "computer with RePIC (a personalized Qwen2.5-VL).</p>", wordWrap=True)
        head.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        head.addWidget(title, 1)
        lay.addLayout(head)
        rows = "".join(f"<tr><td style='padding-right:14px'><b>{k}</b></td><td>{v}</td></tr>" for k, v in versions())
        if library_path is not None:
            rows += f"<tr><td style='padding-right:14px'><b>Library</b></td><td>{library_path}</td></tr>"
        self.table = QLabel(f"<table>{rows}</table>")
        self.table.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.table)
        self.gpu = QLabel(f"<b>GPU:</b> {gpu}" if gpu else "<b>GPU:</b> checking…", wordWrap=True)
        self.gpu.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.gpu)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        bb.rejected.connect(self.reject)
        bb.accepted.connect(self.accept)
        lay.addWidget(bb)
        if gpu is None and tasks is not None:
            tasks.run(gpu_summary_slow, self._gpu, lambda m, d: self._gpu(f"unknown ({m})"))

    def _gpu(self, text: str) -> None:
        try:
            self.gpu.setText(f"<b>GPU:</b> {text}")
        except RuntimeError:  # dialog closed meanwhile
            pass

"""The log view: the `repic_desktop` loggers (and Qt's own warnings) as they come, from any thread.

Records travel to the GUI thread by a queued signal; the handler keeps the last lines so a view opened
later shows what happened before it.
"""
from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Qt, QtMsgType, Signal, Slot, qInstallMessageHandler
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget


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

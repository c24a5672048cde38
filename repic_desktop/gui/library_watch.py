"""Notice changes other programs make to the open library (a `repic` command in a terminal, a second
window), so the window shows them without a restart.

SQLite's `PRAGMA data_version` on a connection changes exactly when *another* connection committed.
Polling it on the window's own connection once a second costs microseconds (no table is read), and
the window's own edits on that connection never trigger it. The app's background workers use
connections of their own, so their commits do trigger it: the window already refreshes after those,
and `busy()` lets it wait until they are done, so one refresh follows a burst of work, not one per
caption.
"""
from __future__ import annotations

import logging
import sqlite3
from typing import Callable

from PySide6.QtCore import QObject, QTimer, Signal

log = logging.getLogger(__name__)


class LibraryWatcher(QObject):
    """Emits `changed` (at most once per `interval_ms`) after another connection committed."""

    changed = Signal()

    def __init__(self, conn: sqlite3.Connection, *, interval_ms: int = 1000,
                 busy: Callable[[], bool] | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.conn = conn
        self.busy = busy or (lambda: False)
        self._version = self._read()
        self._pending = False
        self.timer = QTimer(self, interval=interval_ms)
        self.timer.timeout.connect(self.poll)
        self.timer.start()

    def _read(self) -> int | None:
        try:
            return self.conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:       # closed while the window closes: stop quietly
            log.debug("data_version not readable: %s", exc)
            self.stop()
            return None

    def poll(self) -> bool:
        """Check once; returns True when `changed` was emitted."""
        v = self._read()
        if v is not None and v != self._version:
            self._version = v
            self._pending = True
        if self._pending and not self.busy():
            self._pending = False
            self.changed.emit()
            return True
        return False

    def stop(self) -> None:
        if hasattr(self, "timer"):
            self.timer.stop()

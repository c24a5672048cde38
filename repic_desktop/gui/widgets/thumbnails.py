"""Thumbnails for the visible rows, decoded off the GUI thread.

Why it is shaped like this:
- A QImage may be made in any thread, a QPixmap only in the GUI thread: workers decode into QImage
  (already scaled to the size it is drawn at), the GUI thread turns it into a pixmap once.
- Thumbnails are requested by the views' `data(DecorationRole)`, which Qt only calls for rows being
  painted, i.e. visible ones. Requests are served newest first (LIFO) and `retain()` drops queued ones
  that scrolled out of view, so a fast scroll through 100,000 photos never leaves a backlog of
  thumbnails nobody will see; what is on screen comes first.
- Results travel as queued signals to a relay QObject that lives in the GUI thread; callbacks run
  there, never in the worker.
- The pool is specialised (a LIFO queue with `retain()`), built on gui/tasks.py's `PoolJob`; plain
  background work goes through `tasks.TaskRunner`.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable

from PySide6.QtCore import QObject, QThreadPool, Qt, Signal, Slot
from PySide6.QtGui import QImage

from ...core.errors import user_message
from ..tasks import PoolJob, default_threads


class _ThumbRelay(QObject):
    ready = Signal(object, QImage)
    failed = Signal(object, str)


class ThumbnailLoader(QObject):
    """Loads thumbnails on a thread pool, newest request first.

    Each request is (key, make) where make() -> QImage runs in a worker. `request_photo` is the usual
    case: the on-disk ThumbnailCache (keyed by content hash) makes or finds the file, and the worker
    scales it to `display_size`. Signals `ready(key, QImage)` / `failed(key, reason)` arrive on the GUI
    thread."""

    ready = Signal(object, QImage)
    failed = Signal(object, str)

    def __init__(self, cache=None, display_size: int = 160, threads: int | None = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        from ...core.thumbnails import ThumbnailCache

        self.cache = cache if cache is not None else ThumbnailCache()
        self.display_size = display_size
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads or default_threads())
        self._lock = threading.Lock()
        self._pending: OrderedDict[Hashable, Callable[[], QImage]] = OrderedDict()
        self._in_flight: set[Hashable] = set()
        self._relay = _ThumbRelay()
        self._relay.ready.connect(self._on_ready, Qt.ConnectionType.QueuedConnection)
        self._relay.failed.connect(self._on_failed, Qt.ConnectionType.QueuedConnection)

    # ------------------------------------------------------------------ requests (GUI thread)
    def request(self, key: Hashable, make: Callable[[], QImage]) -> None:
        with self._lock:
            if key in self._in_flight:
                return
            if key in self._pending:
                self._pending.move_to_end(key)  # asked again: it is on screen now, serve it sooner
                return
            self._pending[key] = make
        self.pool.start(PoolJob(self._work_one))

    def request_photo(self, key: Hashable, path: str, content_hash: str, size: int | None = None) -> None:
        side = size or self.display_size
        cache = self.cache

        def make() -> QImage:
            from ...core.thumbnails import DEFAULT_SIZE
            thumb = cache.get_or_create(path, content_hash, DEFAULT_SIZE if side <= DEFAULT_SIZE else 512)
            img = QImage(str(thumb))
            if img.isNull():
                raise OSError(f"cannot read thumbnail {thumb}")
            if max(img.width(), img.height()) > side:
                img = img.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                 Qt.TransformationMode.SmoothTransformation)
            return img

        self.request(key, make)

    def retain(self, keys) -> None:
        """Forget queued requests whose key is not in `keys` (they scrolled out of view)."""
        keep = set(keys)
        with self._lock:
            for k in [k for k in self._pending if k not in keep]:
                del self._pending[k]

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    @property
    def idle(self) -> bool:
        with self._lock:
            return not self._pending and not self._in_flight

    def wait(self, msecs: int = 30_000) -> bool:
        return self.pool.waitForDone(msecs)

    # ------------------------------------------------------------------ worker side
    def _work_one(self) -> None:
        with self._lock:
            if not self._pending:
                return
            key, make = self._pending.popitem(last=True)  # LIFO: the most recently painted row first
            self._in_flight.add(key)
        try:
            image = make()
        except Exception as exc:
            self._relay.failed.emit(key, user_message(exc))
        else:
            self._relay.ready.emit(key, image)

    # ------------------------------------------------------------------ back on the GUI thread
    @Slot(object, QImage)
    def _on_ready(self, key, image: QImage) -> None:
        with self._lock:
            self._in_flight.discard(key)
        self.ready.emit(key, image)

    @Slot(object, str)
    def _on_failed(self, key, reason: str) -> None:
        with self._lock:
            self._in_flight.discard(key)
        self.failed.emit(key, reason)

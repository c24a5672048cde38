"""Off-GUI-thread work: thumbnails for the visible rows, previews, and plain background tasks.

Why it is shaped like this:
- A QImage may be made in any thread, a QPixmap only in the GUI thread: workers decode into QImage
  (already scaled to the size it is drawn at), the GUI thread turns it into a pixmap once.
- Thumbnails are requested by the views' `data(DecorationRole)`, which Qt only calls for rows being
  painted, i.e. visible ones. Requests are served newest first (LIFO) and `retain()` drops queued ones
  that scrolled out of view, so a fast scroll through 100,000 photos never leaves a backlog of
  thumbnails nobody will see; what is on screen comes first.
- Results travel as queued signals to a relay QObject that lives in the GUI thread; callbacks run
  there, never in the worker.
- Every task opens what it needs itself (a `Library(path)` per task: one SQLite connection per thread).
"""
from __future__ import annotations

import logging
import os
import threading
import traceback
from collections import OrderedDict
from typing import Any, Callable, Hashable

import shiboken6
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Qt, Signal, Slot
from PySide6.QtGui import QImage

from ...core.errors import user_message

log = logging.getLogger(__name__)


def pil_to_qimage(image) -> QImage:
    """PIL image -> QImage that owns its pixels (safe to hand to another thread)."""
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    fmt = QImage.Format.Format_RGBA8888 if image.mode == "RGBA" else QImage.Format.Format_RGB888
    data = image.tobytes("raw", image.mode)
    bpl = image.width * (4 if image.mode == "RGBA" else 3)
    return QImage(data, image.width, image.height, bpl, fmt).copy()


# --------------------------------------------------------------------------------------------------
# Plain background tasks
# --------------------------------------------------------------------------------------------------

class _Relay(QObject):
    """Lives in the GUI thread; the worker emits, the (queued) slots run the callbacks here."""
    done = Signal(object)
    failed = Signal(str, str)
    progress = Signal(object)

    def __init__(self, runner: "TaskRunner", on_done, on_error, on_progress):
        super().__init__()
        self._runner = runner
        self._on_done, self._on_error, self._on_progress = on_done, on_error, on_progress
        self.done.connect(self._done, Qt.ConnectionType.QueuedConnection)
        self.failed.connect(self._failed, Qt.ConnectionType.QueuedConnection)
        self.progress.connect(self._progressed, Qt.ConnectionType.QueuedConnection)

    def _callable(self, cb) -> bool:
        """False once the runner's owner or the callback's widget is gone: a task that finishes after
        its window closed must not touch deleted Qt objects."""
        if cb is None or not shiboken6.isValid(self._runner):
            return False
        owner = getattr(cb, "__self__", None)
        return not isinstance(owner, QObject) or shiboken6.isValid(owner)

    @Slot(object)
    def _done(self, result) -> None:
        self._runner._finish(self)
        if self._callable(self._on_done):
            self._on_done(result)

    @Slot(str, str)
    def _failed(self, message: str, details: str) -> None:
        self._runner._finish(self)
        if self._callable(self._on_error):
            self._on_error(message, details)
        elif self._on_error is None:
            log.error("background task failed: %s\n%s", message, details)

    @Slot(object)
    def _progressed(self, value) -> None:
        if self._callable(self._on_progress):
            self._on_progress(value)


class _Task(QRunnable):
    def __init__(self, fn: Callable[..., Any], relay: _Relay, with_progress: bool):
        super().__init__()
        self.setAutoDelete(True)
        self._fn, self._relay, self._with_progress = fn, relay, with_progress

    def run(self) -> None:
        try:
            result = self._fn(self._relay.progress.emit) if self._with_progress else self._fn()
        except Exception as exc:  # reported to the GUI; a worker must never die silently
            self._relay.failed.emit(user_message(exc), traceback.format_exc())
        else:
            self._relay.done.emit(result)


class TaskRunner(QObject):
    """Runs plain Python functions on a thread pool; callbacks come back on the GUI thread.

    `run(fn, on_done, on_error)`: fn() runs in a worker. `run(fn, ..., on_progress=cb)`: fn(progress)
    gets a thread-safe `progress(value)` whose values arrive at cb in the GUI thread."""

    def __init__(self, parent: QObject | None = None, threads: int = 2):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max(1, threads))
        self._live: set[_Relay] = set()

    def run(self, fn: Callable[..., Any], on_done: Callable[[Any], None] | None = None,
            on_error: Callable[[str, str], None] | None = None,
            on_progress: Callable[[Any], None] | None = None) -> None:
        relay = _Relay(self, on_done, on_error, on_progress)
        self._live.add(relay)
        self.pool.start(_Task(fn, relay, on_progress is not None))

    def _finish(self, relay: _Relay) -> None:
        self._live.discard(relay)
        relay.deleteLater()

    @property
    def busy(self) -> bool:
        return bool(self._live)

    def wait(self, msecs: int = 30_000) -> bool:
        return self.pool.waitForDone(msecs)


# --------------------------------------------------------------------------------------------------
# Thumbnails
# --------------------------------------------------------------------------------------------------

class _ThumbRelay(QObject):
    ready = Signal(object, QImage)
    failed = Signal(object, str)


class _ThumbWorker(QRunnable):
    def __init__(self, loader: "ThumbnailLoader"):
        super().__init__()
        self.setAutoDelete(True)
        self._loader = loader

    def run(self) -> None:
        self._loader._work_one()


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
        self.pool.setMaxThreadCount(threads or max(1, min(4, (os.cpu_count() or 2) - 1)))
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
        self.pool.start(_ThumbWorker(self))

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


def load_image_scaled(path: str, max_side: int | None, box=None,
                      full_size: tuple[int, int] | None = None) -> tuple[QImage, int, int]:
    """Worker helper: decode a photo as displayed (EXIF-oriented), optionally crop to `box` (pixels of the
    full-size displayed photo), scale to `max_side`. Returns (image, full_width, full_height)."""
    from ...core.images import open_oriented

    if box is None:
        im = open_oriented(path, max_side=max_side)
        full_w, full_h = im.size
        if full_size and all(full_size):
            full_w, full_h = full_size
        elif max_side:
            from ...core.images import inspect_image
            info = inspect_image(path)
            full_w, full_h = info.width, info.height
        return pil_to_qimage(im), full_w, full_h
    im = open_oriented(path)
    full_w, full_h = im.size
    im = im.crop((box.x, box.y, box.x + box.w, box.y + box.h))
    if max_side and max(im.size) > max_side:
        im.thumbnail((max_side, max_side))
    return pil_to_qimage(im), full_w, full_h

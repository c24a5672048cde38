"""Background work for the GUI: one way to run a function off the GUI thread and get its outcome back.

Modelled on Anki's QueryOp/CollectionOp: the caller hands over a plain function and callbacks,

    runner.run(fn, on_done, on_error, on_progress, library=path, cancel=event)

`fn` runs on a worker thread; exactly one of `on_done(result)` / `on_error(message, details)` is then
called on the GUI thread (never both, never from the worker), and `on_progress(value)` for each value the
function reports meanwhile. Why it is shaped like this:
- The worker never touches Qt models or widgets: with `library=path` it gets its own `Library(path)`
  (a SQLite connection belongs to one thread), opened in the worker and closed when `fn` returns.
  Arguments `fn` receives, in this order: the library (with `library=`), then `progress` (a thread-safe
  callable, with `on_progress=`).
- Results travel as queued signals to a relay QObject that lives in the GUI thread. A callback whose
  widget was deleted meanwhile (its window closed) is dropped, not called: a task that finishes late must
  not touch deleted Qt objects.
- Cancel is cooperative: `run` returns a `Task` whose `cancel()` sets a `threading.Event` the function
  polls (`cancel=` passes an event the function already closes over). A cancelled function still ends
  with one callback, so the caller's state is settled in one place.
- Two ways to run: a `QThreadPool` (the default: short library queries, imports, exports; the pool is
  bounded so a burst of queries never starts dozens of threads) or, with `daemon=True`, one daemon thread
  per task for work that may wait minutes on the network or a model (a download, face indexing): those
  must never keep the app from quitting.
- `TaskError(message)` from `fn` is an expected failure: `on_error` gets the message as written and no
  traceback. Any other exception gets a one-line description (`describe`) and the traceback as details.

Long-lived workers that keep state between calls (the model worker, the thumbnail pool) are specialised,
but use the same pieces: `PoolJob` to run a callable on a `QThreadPool`, `CommandThread` for a QThread
that serves a queue of commands with a stop flag polled by the running work.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import traceback
from collections import deque
from pathlib import Path
from typing import Any, Callable

import shiboken6
from PySide6.QtCore import QObject, QRunnable, QThread, QThreadPool, Qt, Signal, Slot

from ..core.errors import RepicError, user_message

log = logging.getLogger(__name__)


class TaskError(RepicError):
    """An expected failure whose message is already written for the user (shown without a traceback)."""


_default_describe = user_message


def failure_report(exc: BaseException, describe: Callable[[BaseException], str] | None = None) -> tuple[str, str]:
    """(message, details) for an exception raised by background work: what every worker reports."""
    if isinstance(exc, TaskError):
        return str(exc), ""
    return (describe or _default_describe)(exc), traceback.format_exc()


def default_threads() -> int:
    """A pool size that leaves one core to the GUI thread."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


class PoolJob(QRunnable):
    """Runs `fn()` once on a QThreadPool (auto-deleted afterwards)."""

    def __init__(self, fn: Callable[[], None]):
        super().__init__()
        self.setAutoDelete(True)
        self._fn = fn

    def run(self) -> None:
        self._fn()


class Task:
    """The handle of one background call."""

    def __init__(self, task_id: int, cancel: threading.Event | None):
        self.id = task_id
        self.cancel_event = cancel if cancel is not None else threading.Event()
        self.finished = False

    def cancel(self) -> None:
        """Ask the function to stop (it polls `cancel_event`); its one callback still follows."""
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


class _Relay(QObject):
    """Lives in the GUI thread; the worker emits, the (queued) slots run the callbacks here. Owned by
    Python (no Qt parent) so it outlives the runner while a worker still holds it."""
    done = Signal(object)
    failed = Signal(str, str)
    progress = Signal(object)

    def __init__(self, runner: "TaskRunner", task: Task, on_done, on_error, on_progress):
        super().__init__()
        self._runner, self._task = runner, task
        self._on_done, self._on_error, self._on_progress = on_done, on_error, on_progress
        self.done.connect(self._done, Qt.ConnectionType.QueuedConnection)
        self.failed.connect(self._failed, Qt.ConnectionType.QueuedConnection)
        self.progress.connect(self._progressed, Qt.ConnectionType.QueuedConnection)

    def _callable(self, cb) -> bool:
        """False once the runner is closed or gone, or the callback's own widget is gone."""
        if cb is None or self._runner._closed or not shiboken6.isValid(self._runner):
            return False
        owner = getattr(cb, "__self__", None)
        return not isinstance(owner, QObject) or shiboken6.isValid(owner)

    @staticmethod
    def _call(cb: Callable, *args: Any) -> None:
        try:
            cb(*args)
        except RuntimeError as exc:  # a lambda reached a widget whose C++ object is gone (dialog closed)
            if "already deleted" not in str(exc):
                raise
            log.debug("background task callback dropped: %s", exc)

    def _settle(self) -> None:
        self._task.finished = True
        if shiboken6.isValid(self._runner):
            self._runner._finish(self)
        self.deleteLater()

    @Slot(object)
    def _done(self, result) -> None:
        self._settle()
        if self._callable(self._on_done):
            self._call(self._on_done, result)

    @Slot(str, str)
    def _failed(self, message: str, details: str) -> None:
        self._settle()
        if self._callable(self._on_error):
            self._call(self._on_error, message, details)
        elif self._on_error is None:
            log.error("background task failed: %s\n%s", message, details)

    @Slot(object)
    def _progressed(self, value) -> None:
        if not self._task.finished and self._callable(self._on_progress):
            self._call(self._on_progress, value)


class TaskRunner(QObject):
    """Runs plain Python functions off the GUI thread; callbacks come back on the GUI thread.

    `threads`: pool size (default: leave a core to the GUI). `daemon=True`: a daemon thread per task
    instead of the pool (work that must never block quitting). `describe`: exception -> one line."""

    def __init__(self, parent: QObject | None = None, threads: int | None = 2, *, daemon: bool = False,
                 describe: Callable[[BaseException], str] | None = None):
        super().__init__(parent)
        self.daemon = daemon
        self._describe = describe
        self.pool: QThreadPool | None = None
        if not daemon:
            self.pool = QThreadPool(self)
            self.pool.setMaxThreadCount(max(1, threads or default_threads()))
        self._ids = itertools.count(1)
        self._live: set[_Relay] = set()
        self._closed = False
        self._running = 0                       # daemon threads not yet returned
        self._idle = threading.Condition()

    def run(self, fn: Callable[..., Any], on_done: Callable[[Any], None] | None = None,
            on_error: Callable[[str, str], None] | None = None,
            on_progress: Callable[[Any], None] | None = None, *, library: str | Path | None = None,
            cancel: threading.Event | None = None, name: str = "repic-task") -> Task:
        """Run `fn` off the GUI thread (see the module docstring); `name` names a daemon thread."""
        task = Task(next(self._ids), cancel)
        relay = _Relay(self, task, on_done, on_error, on_progress)
        self._live.add(relay)
        describe = self._describe

        def emit(signal, *args) -> None:
            try:
                signal.emit(*args)
            except RuntimeError:  # the relay is gone (app quitting): nobody is listening any more
                pass

        def body() -> None:
            try:
                args: list[Any] = []
                lib = None
                if library is not None:
                    from ..core.library import Library

                    lib = Library(library)
                    args.append(lib)
                if on_progress is not None:
                    args.append(lambda value: emit(relay.progress, value))
                try:
                    result = fn(*args)
                finally:
                    if lib is not None:
                        lib.close()
            except Exception as exc:  # reported to the GUI; a worker must never die silently
                emit(relay.failed, *failure_report(exc, describe))
            else:
                emit(relay.done, result)

        if self.pool is not None:
            self.pool.start(PoolJob(body))
        else:
            def daemon_body() -> None:
                try:
                    body()
                finally:
                    with self._idle:
                        self._running -= 1
                        self._idle.notify_all()

            with self._idle:
                self._running += 1
            threading.Thread(target=daemon_body, name=name, daemon=True).start()
        return task

    def _finish(self, relay: _Relay) -> None:
        self._live.discard(relay)

    @property
    def busy(self) -> bool:
        """A task has not delivered its outcome yet."""
        return bool(self._live)

    def wait(self, msecs: int = 30_000) -> bool:
        """Wait for the running functions to return (not for their callbacks); False on timeout."""
        if self.pool is not None:
            return self.pool.waitForDone(msecs)
        with self._idle:
            return self._idle.wait_for(lambda: self._running == 0, msecs / 1000)

    def close(self) -> None:
        """Deliver nothing more (the owner is shutting down); running functions finish unheard."""
        self._closed = True


class CommandThread(QThread):
    """A long-lived QThread serving commands one at a time from a queue, for a worker that keeps state
    between commands (a loaded model). The work a command starts may run for minutes, so stop requests
    are not queued behind it: `stop()` sets a flag under `_cond` that the work polls (`_stopping`).

    Subclasses implement `handle(command)`; `_queue` and `_cond` are theirs to use for requests that
    reorder or remove queued commands. `_took(command)` runs under the lock as a command is taken, and
    `_stop_requested()` under the lock when `stop()` is called."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._cond = threading.Condition()
        self._queue: deque[Any] = deque()
        self._stopping = False

    def put(self, command: Any, *, front: bool = False) -> None:
        with self._cond:
            self._queue.appendleft(command) if front else self._queue.append(command)
            self._cond.notify_all()

    def take(self) -> Any | None:
        """The next command, waiting for one; None once `stop()` was called."""
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            command = self._queue.popleft()
            self._took(command)
            return command

    def stop(self) -> None:
        """Ask the thread to finish: the command in progress is asked to stop at its next check."""
        with self._cond:
            self._stopping = True
            self._stop_requested()
            self._cond.notify_all()

    def _took(self, command: Any) -> None:
        pass

    def _stop_requested(self) -> None:
        pass

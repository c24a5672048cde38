"""Face indexing from the GUI ("Index Faces in Library") and the shared face-matcher for "Find people".

Why it is shaped like this:
- Indexing means detecting and embedding every photo: minutes of model work. It runs as one
  `tasks.TaskRunner` task on a daemon thread (quitting never waits for a photo in flight longer than
  `shutdown` allows) with its own `Library` (a connection belongs to one thread); progress and the
  outcome come back on the GUI thread; the worker never sees a widget or an item model.
- The core job is durable (`run_index_job` stores each photo as it finishes), so Cancel only asks the
  job to stop before its next photo, and Resume runs the same job id again: done photos are skipped.
  Starting over after a crash is also cheap, because the core skips photos it has already indexed.
- Loading a matcher takes ~0.5 s (dlib) to seconds (CLIP), so it happens in the worker as well. The
  service keeps one loaded matcher per process, so the index job and the photo panel's "Find people"
  get the same object; no matcher promises to be thread-safe, so both use it through `LockedMatcher`,
  which lets one photo at a time through (a "Find people" during indexing waits for one photo, not
  for the whole job).
- `retrieval.service` is imported lazily: the rest of the app works (with these actions explaining why
  they are off) in a build without it.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from ...core.library import LibraryError
from ..tasks import TaskError, TaskRunner
from ..wording import count

log = logging.getLogger(__name__)


def load_service():
    """The retrieval service module (raises ImportError when this build has none)."""
    from ...retrieval import service
    return service


@functools.cache
def _default_service():
    try:
        return load_service()
    except ImportError as exc:  # said once: every widget asks for the service
        log.info("people suggestions are not available: %s", exc)
        return None


def service_or_none(service=None):
    """`service` when one was given (tests inject fakes), else the retrieval service, or None."""
    return service if service is not None else _default_service()


def unavailable_type(service) -> type[BaseException]:
    return getattr(service, "MatcherUnavailable", None) or RuntimeError


_locks: dict[int, threading.Lock] = {}
_locks_guard = threading.Lock()


class LockedMatcher:
    """A matcher whose model calls (`crops`, `reference_crop`) run one at a time; everything else
    (id, fingerprint, thresholds, ...) is the matcher's own."""

    def __init__(self, matcher):
        self._m = matcher
        with _locks_guard:
            self._lock = _locks.setdefault(id(matcher), threading.Lock())

    def __getattr__(self, name: str):
        return getattr(self._m, name)

    def crops(self, image):
        with self._lock:
            return self._m.crops(image)

    def reference_crop(self, image, box):
        with self._lock:
            return self._m.reference_crop(image, box)


def shared_matcher(service, matcher_id: str | None = None, settings=None) -> LockedMatcher:
    """Worker side: the service's (process-wide, loaded once) matcher, safe to share between threads."""
    return LockedMatcher(service.get_matcher(matcher_id, settings))


def _index_work(service, matcher_id: str | None, settings, job_id: int | None, photo_ids: list[int] | None,
                stop: threading.Event):
    """The worker side of one indexing run: returns a (lib, progress) function for `TaskRunner.run`.
    Progress values: ("loaded", matcher name) once, then ("photo", done, total, photo id, file name)."""

    def work(lib, progress) -> dict:
        try:
            matcher = shared_matcher(service, matcher_id, settings)
        except unavailable_type(service) as exc:
            raise TaskError(str(exc) or "no face matcher is ready") from None
        if stop.is_set():
            return {"job_id": job_id, "indexed": 0, "skipped": 0, "failed": 0, "cancelled": True}
        progress(("loaded", str(getattr(matcher, "name", "") or getattr(matcher, "id", "") or "")))

        def photo_progress(done: int, total: int, photo_id: int | None) -> None:
            name = ""
            if photo_id is not None:
                try:
                    name = lib.photos.get(photo_id).filename
                except LibraryError:
                    name = f"photo {photo_id}"
            progress(("photo", int(done), int(total), int(photo_id or 0), name))

        try:
            # K and threshold: Settings' (service.match_params), fixed in the job's params.
            summary = service.run_index_job(lib, matcher, job_id=job_id, photo_ids=photo_ids,
                                            progress=photo_progress, should_stop=stop.is_set, settings=settings)
        except unavailable_type(service) as exc:
            raise TaskError(str(exc) or "no face matcher is ready") from None
        result = dict(summary or {})
        # what now waits for the user (the dock says it; "Show Photos" filters the grid to them)
        result.setdefault("pending", tuple(lib.retrieval.pending_suggestion_count()))
        return result

    return work


class IndexController(QObject):
    """The one face-index job of this window: start, cancel, resume, and its progress for the dock.

    `state`: idle | starting (loading the matcher) | running | stopping | done | cancelled | failed."""

    changed = Signal()            # state or progress changed
    finished = Signal(dict)       # the job ended (done or cancelled): its summary
    photo_indexed = Signal(int)   # a photo's suggestions were stored (refresh it if shown)
    show_suggested = Signal()     # the user asked to see the photos whose suggestions wait for review

    def __init__(self, library_path: str | Path, service=None, parent: QObject | None = None, *,
                 matcher_id: str | None = None, settings=None):
        super().__init__(parent)
        self.library_path = Path(library_path)
        self._service = service
        self.matcher_id, self.settings = matcher_id, settings
        self.state = "idle"
        self.done = self.total = 0
        self.current = ""
        self.message = ""
        self.details = ""
        self.matcher_name = ""
        self.job_id: int | None = None
        self.summary: dict | None = None
        self.started_at = 0.0
        # One daemon thread per run: a resume may start the next run while the last one's thread is
        # still returning, and quitting never blocks on it beyond `shutdown`'s wait.
        self._runner = TaskRunner(self, daemon=True)
        self._stop = threading.Event()
        self._photo_ids: list[int] | None = None
        self._first: tuple[int, float] | None = None

    # ------------------------------------------------------------------ state
    @property
    def service(self):
        return service_or_none(self._service)

    @property
    def available(self) -> bool:
        return self.service is not None

    @property
    def active(self) -> bool:
        return self.state in ("starting", "running", "stopping")

    @property
    def pending_suggestions(self) -> int:
        """Suggestions waiting for review when the last run ended (0 before the first run ends)."""
        pending = (self.summary or {}).get("pending") or (0, 0)
        return int(pending[0]) if not self.active else 0

    @property
    def resumable(self) -> bool:
        # without a job id (it failed before the job was made) the service resumes the newest unfinished one
        return self.state in ("cancelled", "failed")

    @property
    def rate(self) -> float | None:
        """Photos per minute in this run (None until there is something to measure). Measured from the
        first progress report, so the matcher's load time and a resumed job's earlier photos do not count."""
        if self._first is None:
            return None
        done0, t0 = self._first
        secs = time.monotonic() - t0
        return 60.0 * (self.done - done0) / secs if self.done > done0 and secs > 0.5 else None

    # ------------------------------------------------------------------ commands (GUI thread)
    def start(self, photo_ids: list[int] | None = None, *, resume: bool = False) -> bool:
        """Index the library (or `photo_ids`); with resume=True continue the last stopped job."""
        if self.active:
            return False
        svc = self.service
        if svc is None:
            self._set("failed", "Face suggestions are not part of this build.")
            return False
        if not resume:
            self.job_id, self._photo_ids = None, photo_ids
        self._stop = threading.Event()
        self.done = self.total = 0
        self.current, self.summary, self.details = "", None, ""
        self._first: tuple[int, float] | None = None
        self.started_at = time.monotonic()
        self._set("starting", "Loading the face matcher…")
        self._runner.run(_index_work(svc, self.matcher_id, self.settings, self.job_id, self._photo_ids, self._stop),
                         self._on_ended, self._on_failed, self._on_progress, library=self.library_path,
                         cancel=self._stop, name="repic-face-index")
        return True

    def resume(self) -> bool:
        return self.start(resume=True)

    def cancel(self) -> None:
        if self.active:
            self._stop.set()
            self._set("stopping", "Stopping after the current photo…")

    def dismiss(self) -> None:
        """Forget a finished job's card (the index itself stays)."""
        if not self.active:
            self.job_id = None if self.state == "done" else self.job_id
            self._set("idle")

    def shutdown(self, wait_ms: int = 10_000) -> None:
        """Stop the job (resumable next time) and wait for its thread (window close)."""
        self._stop.set()
        if not self._runner.wait(wait_ms):
            # a daemon thread: it ends after the photo in flight, or with the process
            log.warning("the face-index job did not stop within %.0f s", wait_ms / 1000)

    # ------------------------------------------------------------------ from the worker (queued)
    def _set(self, state: str, message: str = "") -> None:
        self.state, self.message = state, message
        self.changed.emit()

    def _on_progress(self, report: tuple) -> None:
        if report[0] == "loaded":
            self.matcher_name = report[1]
            if self.state == "starting":
                self._set("running", "")
            return
        _, done, total, photo_id, name = report
        if self._first is None:
            self._first = (done, time.monotonic())
        self.done, self.total, self.current = done, total, name
        if self.state == "starting":
            self.state = "running"
        self.changed.emit()
        if photo_id:
            self.photo_indexed.emit(photo_id)

    def _on_ended(self, summary: dict) -> None:
        self.summary = summary
        self.job_id = summary.get("job_id", self.job_id)
        cancelled = bool(summary.get("cancelled"))
        bits = [f"{summary.get('indexed', 0)} indexed"]
        if summary.get("skipped"):
            bits.append(f"{summary['skipped']} already done")
        if summary.get("failed"):
            bits.append(f"{summary['failed']} failed")
        pending = summary.get("pending")
        if pending:
            n, photos = pending
            bits.append(f"{count(n, 'suggestion')} to review on {count(photos, 'photo')}" if n
                        else "no suggestions to review")
        if not cancelled and self.total:
            self.done = self.total
        self._set("cancelled" if cancelled else "done", ", ".join(bits))
        self.finished.emit(summary)

    def _on_failed(self, message: str, details: str) -> None:
        self.details = details
        if details:
            log.error("face indexing failed: %s\n%s", message, details)
        self._set("failed", message)

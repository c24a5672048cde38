"""The model worker: ONE QThread that owns the captioning model and runs caption jobs, one at a time.

Why it is shaped like this (docs/ARCHITECTURE.md, "Concurrency"):
- The GUI thread never runs model code. The worker thread imports torch, loads the model, builds the
  engine, captions, and unloads; everything it has to say travels by signals (queued to the GUI thread).
- The worker reads photos and concepts from the library through its own `Library(path)` connection
  (one connection per thread), never from Qt models. Each caption is committed by `run_caption_job`
  the moment it is made, so quitting or crashing loses at most the batch in flight.
- Commands (load, run job, unload) go into a plain Python queue the thread waits on; the thread is
  busy for minutes while captioning, so *stop* requests (pause/cancel a job, cancel a model load, quit)
  are NOT queued behind it: they are flags the running work polls — the engine checks between batches
  and inside generation (a stopping criterion), `load_model` between its stages.
- A cancel of a model load is matched to the loads that were asked for before it (sequence numbers),
  so "queue a job, cancel at once" is deterministic and a later request is never cancelled by accident.

The command queue and its stop flag are `tasks.CommandThread`'s; short chores (create a job, save
settings, download a model) run on the controller's `tasks.TaskRunner` (daemon threads).
"""
from __future__ import annotations

import gc
import itertools
import logging
import sys
import traceback
from collections import deque
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from ..tasks import CommandThread

from ...app.caption_jobs import demo_model_dir, spec_label
from ...core.errors import user_message

log = logging.getLogger(__name__)


LOAD_STAGES = {
    "build": "Preparing the demo model",
    "resolve": "Finding the model files",
    "processor": "Loading the processor",
    "weights": "Loading the weights (a 7B model takes a minute)",
    "adapter": "Attaching the adapter",
    "ready": "Ready",
}


def _leave_a_core_for_the_gui() -> None:
    """torch's spinning CPU threads starve the GUI thread when they take every core (measured: 60-70 ms
    stalls every few hundred ms on a 2-core machine while the demo model captions): the shared policy."""
    try:
        from ...core.cpu_threads import apply_cpu_thread_policy

        apply_cpu_thread_policy()
    except Exception:
        pass


def _freeze_the_heap() -> None:
    """Import torch/transformers, then move every object alive now into the garbage collector's permanent
    generation (gc.freeze). A collection holds the GIL while it walks the tracked objects, so with these
    libraries loaded every full collection (automatic, or the one `models.unload` runs) stalled the GUI
    thread for 0.2-0.6 s (measured by bench/gui_latency.py). Frozen objects are never walked again; the
    model's own objects, created after this, stay collectable, so unloading still frees its memory.
    Cost: cyclic garbage among the frozen objects (module-level state, mostly) is never reclaimed."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        from transformers import AutoModelForImageTextToText  # noqa: F401 - the lazy module's heavy part
    except Exception:
        pass
    gc.freeze()


def gpu_text(info: dict[str, Any] | None, used_gb: float | None = None) -> str:
    """The GUI's wording for a `captioning.device.device_summary()` (None: still probing)."""
    if info is None:
        return "Checking for a GPU…"
    if info.get("error"):
        return f"PyTorch is not usable here ({info['error']}): captioning cannot run."
    if not info.get("cuda"):
        return "No NVIDIA GPU found: captioning runs on the CPU (RePIC 7B: minutes per photo; the demo model is fine)."
    names = ", ".join(f"{d['name']} ({d['total_gb']:g} GB)" for d in info["devices"])
    text = f"GPU: {names}"
    if used_gb is not None:
        text += f" — model uses {used_gb:.1f} GB"
    return text


# ------------------------------------------------------------------------------------------------------
# the worker
# ------------------------------------------------------------------------------------------------------

class ModelWorker(CommandThread):
    """Owns the model. Public methods are called from the GUI thread and are thread-safe; signals are
    emitted from the worker thread (receivers in the GUI thread get them queued)."""

    gpu_info = Signal(object)                     # device_summary() dict (+ "used_gb" when a model is loaded)
    model_state = Signal(str, str, str)           # "unloaded" | "loading" | "loaded", name, detail (dtype/device)
    load_progress = Signal(str, float)            # stage (LOAD_STAGES key), fraction
    load_finished = Signal(str, str)              # "loaded" | "cancelled" | "failed", message
    job_started = Signal(int, int, int)           # job id, items processed before this run, items in job
    job_progress = Signal(int, int, int, float, str)  # job id, processed, total, eta s (-1 unknown), current file
    item_done = Signal(int, int, int, str, str)   # job id, photo id, caption id (0 = failed), error, file name
    job_stopped = Signal(int, str, str)           # job id, "done" | "paused" | "cancelled", message
    error = Signal(str, str)                      # readable message, details (traceback) — unexpected failures

    def __init__(self, library_path: str | Path, parent: QObject | None = None):
        super().__init__(parent)
        self.setObjectName("repic-model-worker")
        self.library_path = Path(library_path)
        self._seq = itertools.count(1)
        self._cancel_loads_upto = 0
        self._stop_requests: dict[int, str] = {}
        self._current_job: int | None = None
        # worker-thread state
        self._loaded = None
        self._lib = None
        self._gpu: dict[str, Any] | None = None
        self.last_load_error = ""

    # ---------------------------------------------------------------- GUI-thread API (thread-safe)
    def enqueue_job(self, job_id: int) -> None:
        self._put("job", int(job_id))

    def request_load(self, spec) -> None:
        self._put("load", spec)

    def request_unload(self) -> None:
        """Unload as soon as possible: the running job (if any) is paused, queued jobs stay queued."""
        with self._cond:
            if self._current_job is not None:
                self._stop_requests.setdefault(self._current_job, "pause")
            self._cancel_loads_upto = next(self._seq)
            self._queue.appendleft(("unload", None, next(self._seq)))
            self._cond.notify_all()

    def cancel_load(self) -> None:
        """Cancel the model load in progress and any load asked for so far (polled between load stages and for every tensor while the weights load)."""
        with self._cond:
            self._cancel_loads_upto = next(self._seq)

    def stop_job(self, job_id: int, how: str = "pause") -> str:
        """Pause or cancel a job. Returns "dequeued" (it was waiting: removed from the queue, nothing
        written), "stopping" (it is running: it stops at the next check, `job_stopped` follows) or
        "idle" (not known to the worker)."""
        assert how in ("pause", "cancel")
        with self._cond:
            for item in list(self._queue):
                if item[0] == "job" and item[1] == job_id:
                    self._queue.remove(item)
                    return "dequeued"
            if self._current_job == job_id:
                self._stop_requests[job_id] = how
                return "stopping"
        return "idle"

    def dequeue_all_jobs(self) -> list[int]:
        with self._cond:
            ids = [item[1] for item in self._queue if item[0] == "job"]
            self._queue = deque(item for item in self._queue if item[0] != "job")
        return ids

    @property
    def current_job(self) -> int | None:
        return self._current_job

    def _put(self, kind: str, arg: Any) -> None:
        self.put((kind, arg, next(self._seq)))  # every queued command is (kind, arg, seq)

    def _stop_requested(self) -> None:
        """stop(): the running job is paused (resumable), a load is cancelled (`_stopping` is polled)."""
        if self._current_job is not None:
            self._stop_requests.setdefault(self._current_job, "pause")

    def _took(self, item: tuple[str, Any, int]) -> None:
        if item[0] == "job":
            self._current_job = item[1]
            self._stop_requests.pop(item[1], None)  # a stale request from an earlier run of this job

    # ---------------------------------------------------------------- worker thread
    def run(self) -> None:  # noqa: C901 - the thread's whole life, kept in one place on purpose
        # A Python-heavy worker (the demo model on a CPU is mostly interpreter time) keeps the GIL for the
        # whole switch interval each time; the GUI thread needs the GIL back for every call into Python
        # (delegate paints, item data). 1 ms instead of 5 ms halves the worst stalls while scrolling.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        try:
            from ...captioning.device import device_summary

            self._gpu = device_summary()
            self.gpu_info.emit(dict(self._gpu))
            _leave_a_core_for_the_gui()
            while True:
                item = self.take()
                if item is None:
                    break
                kind, arg, seq = item
                try:
                    if kind == "job":
                        self._run_job(arg, seq)
                    elif kind == "load":
                        self._ensure_model(arg, seq)
                    elif kind == "unload":
                        self._unload()
                except Exception as exc:  # a bug: report it readably and keep the worker alive
                    log.exception("model worker: %s failed", kind)
                    self.error.emit(f"Captioning stopped: {user_message(exc)}", traceback.format_exc())
                finally:
                    with self._cond:
                        if self._current_job is not None:
                            self._stop_requests.pop(self._current_job, None)
                        self._current_job = None
        finally:
            try:
                self._unload(quiet=True)
            finally:
                if self._lib is not None:
                    self._lib.close()
                    self._lib = None

    def _library(self):
        """This thread's own connection, opened at the first job (by then the library exists: opening a
        brand-new file from two threads at once can fail to switch it to WAL)."""
        if self._lib is None:
            from ...core.library import Library

            self._lib = Library(self.library_path)
        return self._lib

    # model ------------------------------------------------------------------------------------------
    def _load_cancelled(self, seq: int) -> bool:
        return self._stopping or self._cancel_loads_upto >= seq

    def _ensure_model(self, spec, seq: int) -> bool:
        """Load `spec` unless it is the loaded model. Emits load_finished; returns True when loaded."""
        from ...captioning import models

        if self._loaded is not None and self._loaded.spec == spec:
            return True
        if self._load_cancelled(seq):
            self.load_finished.emit("cancelled", "Model loading was cancelled.")
            return False
        self._unload()
        self.model_state.emit("loading", spec_label(spec), "")

        def cancel() -> bool:
            return self._load_cancelled(seq)

        def progress(stage: str, fraction: float) -> None:
            self.load_progress.emit(stage, float(fraction))

        try:
            _freeze_the_heap()
            self._build_demo_if_needed(spec, progress)
            loaded = models.load_model(spec, progress=progress, cancel=cancel)
            if cancel():  # asked during the last (uninterruptible) stage: honour it now
                models.unload(loaded)
                del loaded
                raise models.LoadCancelled("cancelled")
        except models.LoadCancelled:
            models.unload(None)
            self.model_state.emit("unloaded", "", "")
            self.load_finished.emit("cancelled", "Model loading was cancelled.")
            return False
        except Exception as exc:
            if not isinstance(exc, models.ModelError):
                log.exception("model load failed")
            models.unload(None)
            self.last_load_error = load_error_text(exc)
            self.model_state.emit("unloaded", "", "")
            self.load_finished.emit("failed", self.last_load_error)
            return False
        self._loaded = loaded
        detail = f"{str(loaded.dtype).replace('torch.', '')} on {loaded.device}, {loaded.attention} attention"
        self.model_state.emit("loaded", spec_label(spec), detail)
        self.load_finished.emit("loaded", loaded.id_string())
        self._emit_gpu()
        return True

    @staticmethod
    def _build_demo_if_needed(spec, progress) -> None:
        from ...captioning.demo_model import build_demo_model, is_demo_model

        folder = demo_model_dir()
        if Path(spec.source).expanduser() == folder and not is_demo_model(folder):
            progress("build", 0.0)
            build_demo_model(folder)

    def _unload(self, quiet: bool = False) -> None:
        if self._loaded is None:
            return
        from ...captioning import models

        loaded, self._loaded = self._loaded, None
        models.unload(loaded)  # gc.collect(): walks only what is not frozen (the model), see _freeze_the_heap
        del loaded
        if not quiet:
            self.model_state.emit("unloaded", "", "")
            self._emit_gpu()

    def _emit_gpu(self) -> None:
        info = dict(self._gpu or {})
        if self._loaded is not None and str(self._loaded.device).startswith("cuda"):
            try:
                import torch

                info["used_gb"] = torch.cuda.memory_allocated(self._loaded.device) / 1e9
            except Exception:
                pass
        self.gpu_info.emit(info)

    # jobs -------------------------------------------------------------------------------------------
    def _run_job(self, job_id: int, seq: int) -> None:
        from ...captioning.engine import CaptionEngine
        from ...core.jobs import JobStore
        from ...captioning.models import ModelSpec
        from ...core.library import LibraryError

        try:
            lib = self._library()
        except LibraryError as exc:
            msg = f"The library cannot be opened for captioning: {exc}"
            self.job_stopped.emit(job_id, "paused", msg)
            self.error.emit(msg, traceback.format_exc())
            return
        store = JobStore(lib)
        try:
            job = store.get(job_id)
        except LibraryError:
            self.job_stopped.emit(job_id, "cancelled", "This job no longer exists.")
            return
        before = job.total - job.remaining
        if job.remaining == 0:
            store.set_status(job_id, "done")
            self.job_stopped.emit(job_id, "done", "Nothing left to caption.")
            return
        p = job.params
        try:
            spec = ModelSpec(**p["model"])
        except (TypeError, ValueError, KeyError) as exc:
            msg = f"This job's model settings are not usable ({exc})."
            store.set_status(job_id, "paused", msg)
            self.job_stopped.emit(job_id, "paused", msg)
            return
        self.job_started.emit(job_id, before, job.total)
        if (p.get("backend") or {}).get("kind") == "remote":
            self._run_remote_job(lib, store, job, seq)
            return
        if not self._ensure_model(spec, seq):
            cancelled = self._load_cancelled(seq)
            msg = ("Not started: model loading was cancelled." if cancelled
                   else f"Not started: the model could not be loaded. {self.last_load_error}")
            store.set_status(job_id, "paused", None if cancelled else msg)
            self._stop_requests.pop(job_id, None)
            self.job_stopped.emit(job_id, "paused", msg)
            for other in self.dequeue_all_jobs():  # they would meet the same fate: leave them paused
                self.job_stopped.emit(other, "paused", msg)
            return

        loaded = self._loaded
        max_new = int(p.get("max_new_tokens") or 1024)
        min_new = p.get("min_new_tokens")
        # from_loaded caps the demo model's tokens (the same for the CLI)
        engine = CaptionEngine.from_loaded(loaded, batch_size=int(p.get("batch_size") or 1), max_new_tokens=max_new,
                                           min_new_tokens=min(min_new, max_new) if min_new is not None else None)
        self._caption_with(lib, store, job, engine, loaded.provenance())

    def _run_remote_job(self, lib, store, job, seq: int) -> None:
        """A job whose photos go to a caption server: no local model is loaded."""
        from ...captioning.backends import remote_backend_for_job
        from ...captioning.remote import RemoteError
        from ...core.settings import Settings

        try:
            backend = remote_backend_for_job(job.params, settings=Settings.load())
            backend.connect()
        except RemoteError as exc:
            msg = f"Not started: {exc}"
            store.set_status(job.id, "paused", msg)
            self._stop_requests.pop(job.id, None)
            self.job_stopped.emit(job.id, "paused", msg)
            return
        try:
            self._caption_with(lib, store, job, backend, backend.provenance())
        finally:
            backend.close()

    def _caption_with(self, lib, store, job, engine, provenance: dict) -> None:
        from ...captioning.jobs import run_caption_job

        job_id = job.id
        before = job.total - job.remaining
        processed = before
        current = {"eta": -1.0, "name": ""}
        names: dict[int, str] = {}

        def name_of(pid) -> str:
            if pid is None:
                return ""
            if pid not in names:
                try:
                    names[pid] = lib.photos.get(int(pid)).filename
                except Exception:
                    names[pid] = f"photo {pid}"
            return names[pid]

        def on_progress(done: int, total: int, eta: float | None, key: Any) -> None:
            current["eta"] = -1.0 if eta is None else float(eta)
            current["name"] = name_of(key)
            self.job_progress.emit(job_id, processed, job.total, current["eta"], current["name"])

        def on_outcome(outcome) -> None:
            nonlocal processed
            processed += 1
            self.item_done.emit(job_id, outcome.photo_id, outcome.caption_id or 0, outcome.error or "",
                                name_of(outcome.photo_id))
            self.job_progress.emit(job_id, processed, job.total, current["eta"], current["name"])

        def cancel() -> bool:
            return self._stopping or job_id in self._stop_requests

        try:
            summary = run_caption_job(lib, job_id, engine, model_provenance=provenance,
                                      progress=on_progress, cancel=cancel, on_outcome=on_outcome)
        except Exception as exc:
            log.exception("caption job %s failed", job_id)
            msg = f"Captioning stopped by an error ({user_message(exc)}); the captions made so far are kept."
            store.set_status(job_id, "paused", msg)
            self._stop_requests.pop(job_id, None)
            self.job_stopped.emit(job_id, "paused", msg)
            self.error.emit(msg, traceback.format_exc())
            return
        finally:
            # Drop the engine's caches (reference features on the GPU) without engine.unload(): that runs
            # a full gc.collect(), a GIL-holding stall of the GUI; plain reference counting frees them.
            if hasattr(engine, "clear_cache"):
                engine.clear_cache()
            del engine
        how = self._stop_requests.pop(job_id, None)
        status = "done" if summary.remaining == 0 else ("cancelled" if how == "cancel" else "paused")
        if status == "cancelled":
            store.set_status(job_id, "cancelled")
        what = f"{summary.done} captioned" + (f", {summary.failed} failed" if summary.failed else "")
        when = {"done": "Finished in", "paused": "Paused after", "cancelled": "Cancelled after"}[status]
        why = f" {summary.stopped}" if getattr(summary, "stopped", None) and status == "paused" else ""
        self.job_stopped.emit(job_id, status, f"{when} {_seconds_text(summary.seconds)}: {what} this run.{why}")
        self._emit_gpu()


def _seconds_text(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s} s" if s < 120 else (f"{round(s / 60)} min" if s < 7200 else f"{s / 3600:.1f} h")


def load_error_text(exc: BaseException) -> str:
    """The model layer's one-sentence message, with the GUI's way out instead of the CLI's."""
    from ...captioning.model_manager import ModelNotAvailable

    msg = user_message(exc)
    if isinstance(exc, ModelNotAvailable):
        msg += " In the app: Settings → Model → Download model."
    return msg

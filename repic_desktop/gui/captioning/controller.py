"""The captioning controller: the one object the main window talks to about captions, jobs and the model.

What runs where:
- GUI thread (this object, its dialogs and the queue dock): widgets, the jobs' display state
  (`JobView`), small reads for the dialogs (concept list, how many selected photos are tagged/captioned).
- `ModelWorker` (one QThread): the model — load with progress and cancel, caption jobs with
  `run_caption_job` (each caption committed as it is made), unload. Its own Library connection.
- `tasks.TaskRunner` (daemon threads, gui/tasks.py): creating a job (one transaction, possibly 100k rows),
  marking a job cancelled, loading the job list at start, saving settings, downloads, the demo build.

A job is durable from the moment it is created: quitting pauses the running job (the worker stops at its
next check) and the next start offers to resume it; resumed jobs never caption a done photo twice
(`JobStore.complete_item` marks an item done in the same transaction that stores its caption).

Signals for the main window: `caption_finished(photo_id, caption_id)` (GUI thread) per caption,
`job_changed(job_id)` on progress or status changes.
"""
from __future__ import annotations

import html
import logging
import time
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QApplication, QDockWidget, QMessageBox, QWidget

from ...app.caption_jobs import (
    CaptionOptions, create_caption_job, plan_caption_job, request_presets, suggestion_options,
)
from ...captioning.jobs import resumable_jobs
from ...captioning.models import ModelSpec
from ...core.errors import RepicError
from ...core.jobs import JobStore
from ...core.library import Library, LibraryError
from ..dialogs.caption import CaptionChoice, CaptionDialog, ConceptEntry
from ..tasks import TaskRunner
from .model_worker import ModelWorker, gpu_text
from ..settings_access import load_settings
from ...core.errors import user_message
from .job_view import JobView, job_view, own_concepts_text, where_label

log = logging.getLogger(__name__)

MAX_ERRORS_SHOWN = 200
# job statuses as shown: queued, starting, running, stopping, paused, interrupted, cancelled, done
STOPPED = ("paused", "interrupted", "cancelled", "done")


class CaptioningController(QObject):
    caption_finished = Signal(int, int)   # photo_id, caption_id (GUI thread)
    job_changed = Signal(int)             # job_id: progress or status changed
    jobs_changed = Signal()               # a job was added to / removed from the list
    job_created = Signal(int)             # job_id, right after it was stored and queued
    model_changed = Signal()              # model state, load progress or GPU information changed
    download_changed = Signal()
    settings_changed = Signal()
    message_shown = Signal(str)           # a readable error/info dialog was opened (its text)

    def __init__(self, library_path: Path, parent: QObject | None = None):
        super().__init__(parent)
        self.library_path = Path(library_path)
        # daemon threads: a download or a big job's creation must never keep the app from quitting
        self.tasks = TaskRunner(self, daemon=True, describe=user_message)
        self.jobs: dict[int, JobView] = {}
        self.jobs_loaded = False
        self.model_state = "unloaded"      # unloaded | loading | loaded
        self.model_text = ""               # e.g. "RePIC 7B, 4-bit"
        self.model_detail = ""             # e.g. "bfloat16 on cuda:0, sdpa attention"
        self.model_id_text = ""            # the loaded model's full identity (source@commit, adapter, ...)
        self.load_stage = ""
        self.load_fraction = 0.0
        self.load_cancelling = False
        self.gpu_info: dict[str, Any] | None = None
        self.download: dict[str, Any] | None = None
        self.active_dialog: QWidget | None = None    # the open caption/settings dialog (tests drive it)
        self.resume_prompt: QMessageBox | None = None
        self.last_message: QMessageBox | None = None
        self._parent_widget: QWidget | None = None
        self._pending_resume: QWidget | None = None
        self._dock = None
        self._gui_lib: Library | None = None
        self._shut_down = False

        w = self._worker = ModelWorker(self.library_path)
        w.gpu_info.connect(self._on_gpu)
        w.model_state.connect(self._on_model_state)
        w.load_progress.connect(self._on_load_progress)
        w.load_finished.connect(self._on_load_finished)
        w.job_started.connect(self._on_job_started)
        w.job_progress.connect(self._on_job_progress)
        w.item_done.connect(self._on_item_done)
        w.job_stopped.connect(self._on_job_stopped)
        w.error.connect(self._on_worker_error)
        w.start()
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        self._load_jobs()

    # ================================================================================ public API
    def caption_photos(self, photo_ids: list[int], parent_widget: QWidget) -> None:
        """Ask how (dialog), then store a durable job and queue it on the model worker."""
        self._parent_widget = parent_widget
        ids = list(dict.fromkeys(int(i) for i in photo_ids))
        if not ids:
            self._message(parent_widget, "Nothing selected", "Select the photos to caption first.",
                          icon=QMessageBox.Icon.Information)
            return
        settings, _ = load_settings()
        try:
            spec = ModelSpec.from_user_settings(settings, self._lib())
        except ValueError as exc:
            self._message(parent_widget, "Model settings need attention", f"The model settings are not valid: {exc}",
                          settings_button=True)
            return
        lib = self._lib()
        with_refs = lib.concepts.ids_with_refs()
        concepts = [ConceptEntry(c.name, c.kind, c.id in with_refs) for c in lib.concepts.all()]
        captioned = len(lib.captions.captioned_photo_ids(ids)) if len(ids) <= 5000 else None
        dlg = CaptionDialog(parent_widget, photo_count=len(ids), concepts=concepts,
                            own_summary=self._own_summary(lib, ids), presets=request_presets(settings),
                            preset=settings.caption_default("request_preset"), batch_size=int(settings.caption_default("batch_size")),
                            model_label=where_label(settings, spec), captioned=captioned,
                            suggestions_note=self._suggestions_note(settings))
        dlg.set_device_advice(self._device_advice(spec))
        self._show_dialog(dlg)

        def refresh_model_label() -> None:
            s, _ = load_settings()
            dlg.set_suggestions_note(self._suggestions_note(s))
            try:
                new_spec = ModelSpec.from_user_settings(s, self._lib())
                dlg.model_label.setText(f"Model: {where_label(s, new_spec)}")
                dlg.set_device_advice(self._device_advice(new_spec))
            except ValueError:
                pass

        dlg.settings_requested.connect(lambda: self.open_settings(dlg))
        self.settings_changed.connect(refresh_model_label)
        dlg.finished.connect(lambda *_: self.settings_changed.disconnect(refresh_model_label))
        dlg.accepted.connect(lambda: self._start_job(ids, dlg.choice(), parent_widget))

    def _device_advice(self, spec):
        """No GPU / old driver / too little GPU memory for this model, from the worker's probe (no torch
        import on this thread); None until the worker has probed."""
        from ...captioning.device import advice_for_spec, compute_from_probe

        compute = compute_from_probe(self.gpu_info)
        return advice_for_spec(spec, compute) if compute is not None else None

    def regenerate(self, photo_id: int, parent_widget: QWidget) -> None:
        """Caption one photo again right away (its own people & pets, the default request)."""
        self._parent_widget = parent_widget
        settings, _ = load_settings()
        try:
            name = self._lib().photos.get(int(photo_id)).filename
        except Exception as exc:
            self._message(parent_widget, "Cannot regenerate", str(exc))
            return
        choice = CaptionChoice(concepts=None, preset=settings.caption_default("request_preset"), batch_size=1,
                               skip_captioned=False)
        self._start_job([int(photo_id)], choice, parent_widget, title=f"Regenerate {name}")

    def resume_unfinished(self, parent_widget: QWidget) -> None:
        """Offer the jobs a previous run left unfinished (no-op when there are none)."""
        self._parent_widget = parent_widget
        if not self.jobs_loaded:
            self._pending_resume = parent_widget
            return
        offer = [v for v in self.jobs.values() if v.from_previous_run and v.status in ("paused", "interrupted")]
        if not offer:
            return
        lines = "\n".join(f"• {v.title} — {v.remaining} of {v.total} left" for v in offer)
        box = QMessageBox(QMessageBox.Icon.Question, "Unfinished captioning",
                          f"Captioning from last time did not finish:\n\n{lines}\n\nResume now? The captions already "
                          f"made are kept either way.", QMessageBox.StandardButton.NoButton, parent_widget)
        box.setObjectName("resumePrompt")
        box.resume_button = box.addButton("Resume", QMessageBox.ButtonRole.AcceptRole)
        box.later_button = box.addButton("Not now", QMessageBox.ButtonRole.RejectRole)
        box.discard_button = box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
        box.discard_button.setToolTip("Give these jobs up (their captions are kept)")
        box.setDefaultButton(box.resume_button)
        ids = [v.id for v in offer]

        def clicked(button) -> None:
            if button is box.resume_button:
                for i in ids:
                    self.resume_job(i)
            elif button is box.discard_button:
                for i in ids:
                    self.remove_job(i)
            self.resume_prompt = None

        box.buttonClicked.connect(clicked)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.resume_prompt = box
        box.open()

    def queue_dock(self) -> QDockWidget:
        if self._dock is None:
            from .queue_dock import QueueDock

            self._dock = QueueDock(self)
        return self._dock

    def open_settings(self, parent_widget: QWidget):
        from ..dialogs.settings import SettingsDialog

        dlg = SettingsDialog(self, parent_widget)
        self._show_dialog(dlg)
        return dlg

    def unload_model(self) -> None:
        """Free the model's memory now. A running job is paused (resumable); queued ones are paused too,
        so they do not load the model straight back."""
        for job_id in self._worker.dequeue_all_jobs():
            self._set_status(job_id, "paused", "Paused: the model was unloaded.")
        current = self._worker.current_job
        if current is not None and self._worker.stop_job(current, "pause") == "stopping":
            self._set_status(current, "stopping")
        self._worker.request_unload()

    def gpu_summary(self) -> str:
        info = self.gpu_info
        return gpu_text(info, (info or {}).get("used_gb"))

    def shutdown(self) -> None:
        """Stop the worker: the running job is paused at its next check (resumable next time), a model
        load stops at its next stage, the model is unloaded; waits for the thread."""
        if self._shut_down:
            return
        self._shut_down = True
        self.tasks.close()
        self._worker.stop()
        if not self._worker.wait(2000):
            log.info("waiting for the model worker to stop (a model load stops at its next stage)…")
            self._worker.wait()
        if self._gui_lib is not None:
            self._gui_lib.close()
            self._gui_lib = None

    # ================================================================================ more controls
    def load_model(self) -> None:
        """Load the model from the settings now (jobs load it themselves when needed)."""
        settings, _ = load_settings()
        try:
            spec = ModelSpec.from_user_settings(settings, self._lib())
        except ValueError as exc:
            self._message(self._parent_widget, "Model settings need attention", str(exc), settings_button=True)
            return
        self.load_cancelling = False
        self._worker.request_load(spec)

    def cancel_load(self) -> None:
        self.load_cancelling = True
        self._worker.cancel_load()
        self.model_changed.emit()

    def pause_job(self, job_id: int) -> None:
        r = self._worker.stop_job(job_id, "pause")
        if r == "dequeued":
            self._set_status(job_id, "paused", "Paused before it started.")
        elif r == "stopping":
            self._set_status(job_id, "stopping", "Pausing…")

    def cancel_job(self, job_id: int) -> None:
        """Stop a job for good (captions made so far are kept); it can still be resumed from the list."""
        r = self._worker.stop_job(job_id, "cancel")
        if r == "stopping":
            self._set_status(job_id, "stopping", "Cancelling…")
        else:
            self._mark_cancelled(job_id)

    def resume_job(self, job_id: int) -> None:
        v = self.jobs.get(job_id)
        if v is not None and v.active:
            return
        if v is not None:
            v.status, v.message = "queued", ""
            v.from_previous_run = False
            self.job_changed.emit(job_id)
        self._worker.enqueue_job(job_id)

    def remove_job(self, job_id: int) -> None:
        """Drop a stopped job from the list; a paused one is given up (marked cancelled, captions kept)."""
        v = self.jobs.get(job_id)
        if v is None or v.active:
            return
        if v.status in ("paused", "interrupted"):
            self._write_status(job_id, "cancelled")
        del self.jobs[job_id]
        self.jobs_changed.emit()

    def clear_finished(self) -> None:
        for job_id in [j for j, v in self.jobs.items() if v.status in ("done", "cancelled")]:
            del self.jobs[job_id]
        self.jobs_changed.emit()

    def job_list(self) -> list[JobView]:
        """Newest first."""
        return sorted(self.jobs.values(), key=lambda v: v.id, reverse=True)

    def download_model(self, repo_id: str, revision: str | None = None, cache_dir: str | None = None, *,
                       use_for: str | None = None) -> bool:
        """Download a model in the background (progress through `download_changed`); False when one runs.

        use_for ("clip" | "dinov2" | "detector"): weights for a suggestion matcher; only safetensors and
        configs are fetched, and once it is complete the settings point that matcher at it (saved here,
        not by the dialog, so a download that outlives the settings dialog still takes effect)."""
        if self.download is not None and self.download["status"] == "running":
            return False
        self.download = {"repo_id": repo_id, "revision": revision, "cache_dir": cache_dir, "status": "running",
                         "desc": "starting", "done": 0, "total": None, "message": "", "path": None,
                         "use_for": use_for}
        state = self.download
        last = [0.0]

        def work(report: Callable[[Any], None]):
            from ...captioning import model_manager as mm
            from ...retrieval.registry import MATCHER_MODELS

            def progress(desc: str, done: int, total: int | None) -> None:
                now = time.monotonic()
                if now - last[0] >= 0.1 or (total and done >= total):  # at most 10 updates a second
                    last[0] = now
                    report((desc, done, total))

            if not use_for:
                return str(mm.download_model(repo_id, revision, cache_dir, progress=progress))
            path = mm.download_model(repo_id, revision, cache_dir, progress=progress,
                                     allow_patterns=mm.MATCHER_ALLOW_PATTERNS)
            problem = mm.matcher_folder_problem(path, use_for)
            if problem:
                raise mm.DownloadError(f"{repo_id} cannot be used as {MATCHER_MODELS[use_for].label}: {problem}.")
            from ...core.settings import Settings

            settings = Settings.load()  # not load_settings(): an unreadable file must not be replaced here
            mm.set_matcher_folder(settings, use_for, str(path))
            settings.save()
            return str(path)

        def on_progress(value) -> None:
            state["desc"], state["done"], state["total"] = value
            self.download_changed.emit()

        def on_done(path: str) -> None:
            state.update(status="done", path=path, message=f"Downloaded {repo_id}.")
            self.download_changed.emit()
            if use_for:
                self.settings_changed.emit()

        def on_error(message: str, details: str) -> None:
            state.update(status="failed", message=message)
            self.download_changed.emit()

        self.tasks.run(work, on_done, on_error, on_progress, name="repic-download")
        self.download_changed.emit()
        return True

    # ================================================================================ internals
    def _lib(self) -> Library:
        """The GUI thread's own connection, for small reads only."""
        if self._gui_lib is None:
            self._gui_lib = Library(self.library_path)
        return self._gui_lib

    def _show_dialog(self, dlg: QWidget) -> None:
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.active_dialog = dlg

        def closed(*_):
            if self.active_dialog is dlg:
                self.active_dialog = None

        dlg.finished.connect(closed)
        dlg.open()

    @staticmethod
    def _suggestions_note(settings) -> str:
        opts = suggestion_options(settings)
        if not opts["include_suggestions"]:
            return ""
        text = own_concepts_text(opts)
        return (text[0].upper() + text[1:] + (f" (at most {opts['top_k']} per photo)" if opts["top_k"] else "")
                + ": unconfirmed suggestions go into the prompt too (Settings → Suggestions).")

    @staticmethod
    def _own_summary(lib: Library, ids: list[int]) -> str:
        if len(ids) == 1:
            names = [c.name for c in lib.concepts.of_photo(ids[0])]
            if names:
                return "This photo: " + ", ".join(f"<{n}>" for n in names)
            return "Nobody is tagged in this photo yet: it gets a plain caption."
        if len(ids) > 5000:
            return "Each photo gets the people & pets tagged in it; photos with nobody tagged get a plain caption."
        tagged = lib.concepts.tagged_photo_count(ids)
        if tagged == len(ids):
            return f"All {len(ids)} photos have people or pets tagged."
        return f"{tagged} of {len(ids)} photos have people or pets tagged; the others get a plain caption."

    def _start_job(self, ids: list[int], choice: CaptionChoice, parent: QWidget | None, *,
                   title: str | None = None) -> None:
        """Plan the job exactly as `repic caption` does (app/caption_jobs.py), off the GUI thread (skipping
        the captioned ones and fixing each photo's names reads 100k rows), then store and queue it."""
        options = CaptionOptions(concepts=choice.concepts, request_preset=choice.preset, batch_size=choice.batch_size,
                                 skip_captioned=choice.skip_captioned, title=title)
        path = self.library_path

        def create():
            settings, _ = load_settings()
            with Library(path) as lib:
                try:
                    plan = plan_caption_job(lib, settings, ids, options)
                except RepicError as exc:  # a setting that cannot run: say which, offer the settings
                    return "invalid", str(exc)
                if plan.empty:
                    return None, len(plan.skipped)
                return create_caption_job(lib, plan), len(plan.skipped)

        def created(result) -> None:
            job, skipped = result
            if isinstance(job, str):  # "invalid": the message is in place of the count
                self._message(parent, "Cannot start captioning", skipped, settings_button=True)
                return
            if job is None:
                self._message(parent, "Nothing to caption",
                              f"All {skipped} selected photo" + ("s already have" if skipped != 1 else " already has")
                              + " a caption. Untick “Skip photos that already have a caption” to caption them again.",
                              icon=QMessageBox.Icon.Information)
                return
            v = job_view(job)
            v.status = "queued"
            if skipped:
                v.message = f"{skipped} photo" + ("s" if skipped != 1 else "") + " already captioned: skipped."
            self.jobs[job.id] = v
            self.jobs_changed.emit()
            self._worker.enqueue_job(job.id)
            self.job_created.emit(job.id)

        self.tasks.run(create, created,
                       lambda msg, details: self._message(parent, "The captioning job could not be created", msg,
                                                          details=details), name="repic-create-job")

    def _load_jobs(self) -> None:
        path = self.library_path

        def fetch():
            for attempt in range(3):  # a brand-new library being created by another thread can refuse WAL once
                try:
                    with Library(path) as lib:
                        # jobs whose stored settings cannot run are marked failed here, not offered
                        jobs = JobStore(lib)
                        runnable, _ = resumable_jobs(jobs)
                        return [(j, jobs.failed_items(j.id, MAX_ERRORS_SHOWN)) for j in runnable]
                except LibraryError:
                    if attempt == 2:
                        raise
                    time.sleep(0.2)

        def loaded(rows) -> None:
            for job, errors in rows:
                if job.id not in self.jobs:
                    v = job_view(job, errors)
                    v.from_previous_run = True
                    self.jobs[job.id] = v
            self.jobs_loaded = True
            self.jobs_changed.emit()
            if self._pending_resume is not None:
                parent, self._pending_resume = self._pending_resume, None
                self.resume_unfinished(parent)

        def failed(message: str, details: str) -> None:
            self.jobs_loaded = True
            log.error("cannot read unfinished jobs: %s\n%s", message, details)

        self.tasks.run(fetch, loaded, failed, name="repic-load-jobs")

    def _write_status(self, job_id: int, status: str) -> None:
        path = self.library_path

        def write() -> None:
            with Library(path) as lib:
                JobStore(lib).set_status(job_id, status)

        self.tasks.run(write, None, lambda m, d: log.error("job %s: cannot set status %s: %s", job_id, status, m),
                       name="repic-job-status")

    def _mark_cancelled(self, job_id: int) -> None:
        self._write_status(job_id, "cancelled")
        self._set_status(job_id, "cancelled", "Cancelled: the captions made so far are kept.")

    def _set_status(self, job_id: int, status: str, message: str | None = None) -> None:
        v = self.jobs.get(job_id)
        if v is None:
            return
        v.status = status
        if message is not None:
            v.message = message
        if status in STOPPED:
            v.current, v.eta, v.run_started = "", -1.0, None
        self.job_changed.emit(job_id)

    def _message(self, parent: QWidget | None, title: str, text: str, *, details: str | None = None,
                 icon: QMessageBox.Icon = QMessageBox.Icon.Warning, settings_button: bool = False) -> QMessageBox:
        """A readable, non-blocking message box (details such as a traceback go under "Show Details")."""
        parent = parent or self._parent_widget or QApplication.activeWindow()
        box = QMessageBox(icon, title, "", QMessageBox.StandardButton.Ok, parent)
        box.setObjectName("captioningMessage")
        box.setTextFormat(Qt.TextFormat.RichText)  # escaped below: "<Anya>" in a message stays visible
        box.setText(f"<b>{html.escape(title)}</b>")
        box.setInformativeText("<p>" + html.escape(text).replace("\n", "<br>") + "</p>")
        box.plain_text = text
        if details:
            box.setDetailedText(details)
        if settings_button:
            b = box.addButton("Open Settings…", QMessageBox.ButtonRole.ActionRole)
            b.clicked.connect(lambda: self.open_settings(parent))
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.last_message = box
        box.open()
        self.message_shown.emit(text)
        return box

    # ================================================================================ worker signals
    def _on_gpu(self, info: dict) -> None:
        self.gpu_info = info
        self.model_changed.emit()

    def _on_model_state(self, state: str, text: str, detail: str) -> None:
        self.model_state, self.model_text, self.model_detail = state, text, detail
        if state == "loading":
            self.load_stage, self.load_fraction = "resolve", 0.0
        else:
            self.load_stage, self.load_fraction = "", 0.0
        self.model_changed.emit()

    def _on_load_progress(self, stage: str, fraction: float) -> None:
        self.load_stage, self.load_fraction = stage, fraction
        self.model_changed.emit()

    def _on_load_finished(self, outcome: str, message: str) -> None:
        self.load_cancelling = False
        self.model_id_text = message if outcome == "loaded" else ""
        self.model_changed.emit()
        if outcome == "failed":
            self._message(self._parent_widget, "The model could not be loaded", message, settings_button=True)

    def _on_job_started(self, job_id: int, before: int, total: int) -> None:
        v = self.jobs.get(job_id)
        if v is None:
            return
        v.total, v.processed, v.run_base = total, before, before
        v.run_started = time.monotonic()
        if v.status != "stopping":
            v.status, v.message = "starting", ""
        self.job_changed.emit(job_id)

    def _on_job_progress(self, job_id: int, processed: int, total: int, eta: float, current: str) -> None:
        v = self.jobs.get(job_id)
        if v is None:
            return
        v.processed, v.total, v.current = processed, total, current
        if eta != v.eta:
            v.eta, v.eta_at = eta, time.monotonic()
        if v.status == "starting":
            v.status = "running"
        self.job_changed.emit(job_id)

    def _on_item_done(self, job_id: int, photo_id: int, caption_id: int, error: str, name: str) -> None:
        v = self.jobs.get(job_id)
        if caption_id:
            self.caption_finished.emit(photo_id, caption_id)
        elif v is not None:
            v.failed += 1
            if len(v.errors) < MAX_ERRORS_SHOWN:
                v.errors.append((name, error))
        if v is not None:
            self.job_changed.emit(job_id)

    def _on_job_stopped(self, job_id: int, status: str, message: str) -> None:
        self._set_status(job_id, status, message)

    def _on_worker_error(self, message: str, details: str) -> None:
        self._message(self._parent_widget, "Captioning problem", message, details=details)

"""Personalize: fine-tune RePIC on the library's own people and pets (GRPO + LoRA), from the GUI.

Why it is shaped like this:
- Training runs in a child process (`python -m trainer … --json-progress`, a QProcess), never in this
  process: an out-of-memory or a crash in torch ends the child, not the album, and the GPU memory is
  returned when it exits. The page only reads the child's JSON lines (`training_stream`) and draws them.
- The command is `trainer_command` (program + leading arguments), so tests run a scripted fake trainer.
- `python -m trainer` finds `trainer` by import like any package (installed; an editable install includes
  it), or in a source checkout from the working folder, which the child inherits with the environment:
  no path is put on PYTHONPATH, which would shadow an installed copy.
- Cancel is SIGTERM first: the trainer then stops after the current step and saves a checkpoint, which
  "Resume" continues. A GRPO step can take a minute on a small GPU, so SIGKILL follows only after
  `kill_timeout_ms`, or at once when the user presses "Stop Now".
- Closing the window mid-run asks, then stops the child the same way and closes when it has ended, so
  the window never freezes waiting for it.
- "Use this adapter" writes the same settings `repic-train adapters activate NAME` writes (the adapter
  folder as this library's adapter, model.source = its base); an adapter the trainer flagged as not
  better than the base model needs an explicit "Use anyway".
- The dataset summary comes from `python -m trainer dataset --json`, so the page shows the trainer's
  own numbers (held-out split, warnings) instead of a second, possibly different, count.
"""
from __future__ import annotations

import html
import logging
import os
import sys
import time
from pathlib import Path

import shiboken6
from PySide6.QtCore import QCoreApplication, QProcess, Qt, QTimer, Signal
from PySide6.QtWidgets import QListWidgetItem, QMessageBox, QTreeWidgetItem, QWidget

from ...app.adapters import read_manifest
from ...core.library import Library, LibraryError, NotFound
from ...core.settings import DEFAULT_MODEL_SOURCE, Settings, SettingsError
from ..dialogs.files import choose_folder
from .layout import split_page
from ...app.caption_jobs import demo_model_dir
from ...captioning.demo_model import is_demo_model
from .training_stream import TASKS, TailBuffer, TrainingProgress, metric_text, summary_from_output
from .personalize_layout import tone, PersonalizeLayout
from .personalize_run import TrainingRun

log = logging.getLogger(__name__)

BASE_CHOICES = (DEFAULT_MODEL_SOURCE, "Qwen/Qwen2.5-VL-7B-Instruct")
TASK_LABELS = {"ict": "ICT: name the person or pet in a caption",
               "oct": "OCT: is this person or pet in the photo? (yes/no)",
               "vlt": "VLT: where are they? (a box)"}


def ask(parent: QWidget | None, title: str, text: str, yes: str, no: str = "Cancel") -> bool:
    """A yes/no question with verbs on the buttons (tests replace this function)."""
    box = QMessageBox(QMessageBox.Icon.Question, title, text, QMessageBox.StandardButton.NoButton, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    yes_b = box.addButton(yes, QMessageBox.ButtonRole.AcceptRole)
    box.addButton(no, QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(yes_b)
    box.exec()
    return box.clickedButton() is yes_b


def _same_path(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return a == b


class PersonalizePage(TrainingRun, PersonalizeLayout, QWidget):
    """Setup on the left (who, model, options); the run on the right (status, curves, result, adapters)."""

    adapter_activated = Signal(str)    # the adapter folder now this library's adapter
    running_changed = Signal(bool)

    def __init__(self, library: Library, parent: QWidget | None = None, *,
                 trainer_command: list[str] | None = None):
        super().__init__(parent)
        self.lib = library
        self.trainer_command = list(trainer_command or [sys.executable, "-m", "trainer"])
        self.kill_timeout_ms = 90_000
        self.proc: QProcess | None = None
        self.progress = TrainingProgress()
        self.stderr = TailBuffer(40)
        self._cancelling = False
        self._close_after_stop: QWidget | None = None
        self._last_args: list[str] = []
        self._resume_out: str | None = None
        self._started_at = 0.0
        self._run_base = ""
        self._seen_source: str | None = None
        self._summary_proc: QProcess | None = None
        # A QProcess destroyed while running (the app quits during a dataset count) still emits
        # readyRead/finished into callbacks whose objects are half gone: stop it while everything lives.
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self._drop_summary_proc)
        self._summary_out = bytearray()
        self._summary_err = TailBuffer(5)
        self._summary_wanted = False
        self.summary: dict | None = None
        self.active_adapter: str | None = None

        self._kill_timer = QTimer(self, singleShot=True)
        self._kill_timer.timeout.connect(self._kill_now)
        self._summary_timer = QTimer(self, singleShot=True, interval=400)
        self._summary_timer.timeout.connect(self.refresh_summary)
        self._tick = QTimer(self, interval=1000)      # the elapsed time moves even between steps
        self._tick.timeout.connect(self._update_eta)

        self._build_setup()
        self._build_run()
        self.splitter = split_page(self, self.setup_pane, self.run_panel, (400, 900))
        self.reload()
        self._set_running(False)

    # ------------------------------------------------------------------ library state
    def reload(self) -> None:
        """Concepts with their photo counts, the base-model default, the adapter list."""
        checked = set(self.selected_concepts())
        known = {self.concept_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.concept_list.count())}
        # the trainer's own rule (core/training_photos.py): confirmed tags and accepted captions, never
        # reference photos, so the number here is the one `repic-train dataset` counts
        from ...core.training_photos import photo_counts

        counts = photo_counts(self.lib)
        self.concept_list.blockSignals(True)
        self.concept_list.clear()
        for c in self.lib.concepts.all():
            pc = counts.get(c.id)
            n = pc.photos if pc else 0
            label = f"{c.name}  ·  {n} photo{'s' if n != 1 else ''}"
            if pc and pc.reference_only:
                label += " (only reference photos)"
            item = QListWidgetItem(label)
            item.setData(Qt.ItemDataRole.UserRole, c.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            on = (c.name in checked) if c.name in known else n > 0
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
            if pc and pc.reference_only:
                item.setToolTip(f"Every photo tagged with this name is a reference photo ({pc.tagged_references}), "
                                "and reference photos are never trained on: tag more photos of them")
            elif n == 0:
                item.setToolTip("No photos are tagged with this name yet: there is nothing to learn from")
            self.concept_list.addItem(item)
        self.concept_list.blockSignals(False)
        rows = max(3, min(10, self.concept_list.count()))   # as tall as the list, within reason
        row_h = max(self.concept_list.sizeHintForRow(0), self.fontMetrics().height() + 4)
        self.concept_list.setFixedHeight(rows * row_h + 2 * self.concept_list.frameWidth() + 4)
        if not self.concept_list.count():
            self.summary_label.setText("<i>No people or pets yet: add them on the People &amp; Pets page "
                                       "and tag them in a few photos.</i>")
        settings = self._load_settings(quiet=True)
        source = settings.model.source if settings else DEFAULT_MODEL_SOURCE
        # The captioning model (the welcome's choice, e.g. the demo model) comes first; the demo model is
        # offered whenever it is built. Settings changed since the last look: show the new model.
        choices = [source, *BASE_CHOICES]
        demo = demo_model_dir()
        if is_demo_model(demo):
            choices.append(str(demo))
        first = self.base_combo.count() == 0
        for s in choices:
            if self.base_combo.findText(s) < 0:
                self.base_combo.addItem(s)
                if s == str(demo):
                    self.base_combo.setItemData(self.base_combo.findText(s), "The demo model: trains in minutes on "
                                                "any computer, to try the steps (its captions stay noise)",
                                                Qt.ItemDataRole.ToolTipRole)
        if first or source != self._seen_source:
            self.base_combo.setCurrentText(source)
            self.base_combo.lineEdit().setCursorPosition(0)   # a long hub id reads from its owner
            self.quant_check.setChecked(bool(settings and settings.model.quantization == "4bit"))
        self._seen_source = source
        self.base_status.check()
        self.reload_adapters()
        self._concepts_changed()

    def set_controller(self, controller) -> None:
        """The window's captioning controller: its download runs the base model's Download button."""
        self.base_status.set_controller(controller)

    def selected_concepts(self) -> list[str]:
        return [self.concept_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.concept_list.count())
                if self.concept_list.item(i).checkState() == Qt.CheckState.Checked]

    def _check_all(self, on: bool) -> None:
        self.concept_list.blockSignals(True)
        for i in range(self.concept_list.count()):
            self.concept_list.item(i).setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
        self.concept_list.blockSignals(False)
        self._concepts_changed()

    def _concepts_changed(self) -> None:
        if self.concept_list.count():
            self._summary_wanted = True
            if self.isVisible():
                self._summary_timer.start()
        self._update_start()

    def showEvent(self, e) -> None:
        super().showEvent(e)
        if self._summary_wanted:
            self._summary_timer.start()

    def _load_settings(self, quiet: bool = False) -> Settings | None:
        try:
            return Settings.load()
        except SettingsError as exc:
            if not quiet:
                self._show_error("Cannot read the settings", str(exc))
            return None

    def _browse_base(self) -> None:
        d = choose_folder(self, "Choose a model folder", os.path.expanduser("~"))
        if d:
            self.base_combo.setCurrentText(d)

    # ------------------------------------------------------------------ dataset summary
    def refresh_summary(self) -> None:
        """Ask the trainer for the dataset summary of the checked concepts (a short child process)."""
        self._summary_wanted = False
        if self.is_running():
            return                      # the run's own "dataset" event will bring it
        names = self.selected_concepts()
        if not names:
            self.summary_label.setText("")      # the line above Start Training says what is missing
            return
        self._drop_summary_proc()
        self._summary_out.clear()
        self._summary_err = TailBuffer(5)
        args = ["dataset", f"--library={self.lib.path}"]  # `=` form: see training_stream.trainer_arguments
        if len(names) < self.concept_list.count():
            if any("," in n for n in names):
                self.summary_label.setText("")
                return
            args.append(f"--concepts={','.join(names)}")
        proc = QProcess(self)
        self._setup_env(proc)
        proc.readyReadStandardOutput.connect(lambda: self._summary_out.extend(proc.readAllStandardOutput().data()))
        proc.readyReadStandardError.connect(lambda: self._summary_err.feed(proc.readAllStandardError().data()))
        proc.finished.connect(lambda code, status: self._summary_done(proc, code, status))
        proc.errorOccurred.connect(lambda err: err == QProcess.ProcessError.FailedToStart
                                   and self._summary_done(proc, -1, QProcess.ExitStatus.CrashExit))
        self._summary_proc = proc
        self.summary_label.setText("<i>Counting training examples…</i>")
        proc.start(self.trainer_command[0], self.trainer_command[1:] + args + ["--json"])

    def _drop_summary_proc(self) -> None:
        if self._summary_proc is None:
            return
        old, self._summary_proc = self._summary_proc, None   # _summary_done ignores it from now on
        old.blockSignals(True)      # no output or finished callbacks from a process we dropped
        old.kill()                  # read-only: stopping it early is harmless
        old.waitForFinished(1000)
        old.deleteLater()

    def _summary_done(self, proc: QProcess, code: int, status) -> None:
        if proc is not self._summary_proc or not shiboken6.isValid(proc):   # dropped, or the page is going
            return
        self._summary_proc = None
        proc.deleteLater()
        self._summary_out.extend(proc.readAllStandardOutput().data())
        self._summary_err.finish()
        out = bytes(self._summary_out).decode("utf-8", "replace")
        summary = summary_from_output(out) if code == 0 else None
        if summary is not None:
            self.show_summary(summary)
            return
        reply = TrainingProgress()              # `dataset --json` reports its errors as an "error" event
        reply.feed(out + "\n")
        why = reply.error or (self._summary_err.lines[-1] if self._summary_err.lines
                              else proc.errorString() or f"exit code {code}")
        self.summary_label.setText(f"<span style='color:{tone(self, 'warn')}'>The dataset summary is not available: "
                                   f"{html.escape(why)}</span>")

    def show_summary(self, summary: dict) -> None:
        tasks = summary.get("tasks") if isinstance(summary.get("tasks"), dict) else {}
        concepts = summary.get("concepts") if isinstance(summary.get("concepts"), dict) else {}
        # "train" counts training examples (one photo gives several: a caption, yes/no questions, a box);
        # "heldout" counts photos kept back to score the model before and after
        train = summary.get("train")
        if not isinstance(train, int):
            train = sum(v for v in tasks.values() if isinstance(v, int))
        text = f"<b>{train}</b> training examples"
        if isinstance(summary.get("heldout"), int):
            text += f", <b>{summary['heldout']}</b> photos held out to test"
        lines = [text]
        cols = [t for t in TASKS if t in tasks] or list(TASKS)
        # the trainer's photo count per concept (the same one as the list above and the People page)
        photos = summary.get("photos") if isinstance(summary.get("photos"), dict) else {}

        def n_photos(name) -> str:
            ph = photos.get(name)
            return f"<td align='right'>{html.escape(str(ph.get('photos', '')))}</td>" if isinstance(ph, dict) else ""

        rows = "".join(
            f"<tr><td>{html.escape(str(name))}</td>" + n_photos(name)
            + "".join(f"<td align='right'>{html.escape(str((per or {}).get(t, 0)))}</td>" for t in cols) + "</tr>"
            for name, per in concepts.items() if isinstance(per, dict))
        head = "".join(f"<th align='right' title='{TASK_LABELS.get(t, t)}'>{t.upper()}</th>" for t in cols)
        tot = "".join(f"<td align='right'><b>{html.escape(str(tasks.get(t, 0)))}</b></td>" for t in cols)
        if photos:
            head = "<th align='right' title='Photos to learn from (reference photos are not)'>Photos</th>" + head
            tot = "<td></td>" + tot
        lines.append(f"<table cellspacing='0' cellpadding='2'><tr><th align='left'></th>{head}</tr>{rows}"
                     f"<tr><td><b>All</b></td>{tot}</tr></table>")
        for w in summary.get("warnings") or []:
            lines.append(f"<span style='color:{tone(self, 'warn')}'>⚠ {html.escape(str(w))}</span>")
        self.summary_label.setText("".join(f"<div>{x}</div>" for x in lines))
        self.summary = summary

    # ------------------------------------------------------------------ closing mid-run, errors
    def confirm_close(self, window: QWidget) -> bool:
        """True when `window` may close now. While training runs, ask; on "stop", cancel the run and close
        `window` again once the child has ended (False until then)."""
        if not self.is_running():
            return True
        if self._close_after_stop is not None:
            return False                # already stopping for this close
        if not ask(window, "Training is running",
                   "Personalization is still training. Closing stops it after the current step (a checkpoint "
                   "is saved, so the run can be resumed later from the command line).",
                   "Stop Training and Close", "Keep Training"):
            return False
        self._close_after_stop = window
        self.cancel()
        self._status("Stopping the training; the window closes when it has stopped…")
        return False

    def _show_error(self, title: str, message: str | None) -> None:
        self._status(title, tone(self, "bad"))
        self.error_label.setText(message or title)
        tail = self.stderr.text()
        self.error_details.setPlainText(tail)
        self.error_details.setVisible(bool(tail))
        self.error_box.show()

    # ------------------------------------------------------------------ result
    def _reset_result(self) -> None:
        for lab in self.metric_labels.values():
            lab.setText("—")
        self.verdict.setText("After training, the new adapter is compared with the base model on photos "
                             "it did not train on.")
        self.verdict.setStyleSheet("")
        self.use_btn.setEnabled(False)
        self.use_anyway_btn.hide()

    def _show_metrics(self) -> None:
        for phase, m in (("before", self.progress.before), ("after", self.progress.after)):
            for key in ("recall", "precision", "f1"):
                self.metric_labels[(phase, key)].setText(metric_text(m, key))

    def _show_done(self, ev: dict) -> None:
        b, a = self.progress.before, self.progress.after
        # the trainer judges by F1 (recall alone rewards naming everyone everywhere), so both are shown
        scores = (f"name recall {metric_text(b)} → {metric_text(a)}, F1 {metric_text(b, 'f1')} → "
                  f"{metric_text(a, 'f1')}")
        name = str(ev.get("adapter") or "")
        n = (a or {}).get("n")
        on = f" on {n} held-out photos" if isinstance(n, int) else ""
        if ev.get("flagged"):
            self.verdict.setText(f"⚠ “{name}” is not better than the base model ({scores}{on}). Captions would "
                                 "probably not improve; more tagged photos usually help.")
            self.verdict.setStyleSheet(f"color: {tone(self, 'warn')};")
            self.use_btn.setEnabled(False)
            self.use_anyway_btn.show()
        else:
            better = "names your people and pets better" if ev.get("improved") else "is ready"
            self.verdict.setText(f"“{name}” {better}: {scores}{on}.")
            self.verdict.setStyleSheet(f"color: {tone(self, 'good')};")
            self.use_btn.setEnabled(bool(ev.get("path")))
            self.use_anyway_btn.hide()

    def use_new_adapter(self, anyway: bool = False) -> bool:
        ev = self.progress.done
        if not ev or not ev.get("path"):
            return False
        if anyway and not ask(self, "Use an adapter that did not improve?",
                              f"“{ev.get('adapter')}” recalled names no better than the base model on the held-out "
                              "photos. Use it anyway?", "Use Anyway"):
            return False
        if ev.get("flagged") and not anyway:
            return False
        return self.activate(str(ev.get("adapter") or ""), str(ev["path"]), self._run_base)

    def activate(self, name: str, path: str, base: str) -> bool:
        """Caption this library with this adapter from now on (its base becomes the model)."""
        if not (Path(path) / "adapter_model.safetensors").is_file():
            self._show_error("Cannot use this adapter", f"There is no adapter_model.safetensors in {path}.")
            return False
        try:
            a = self.lib.adapters.get(name) if name else None
        except (NotFound, LibraryError):
            a = None
        settings = self._load_settings()
        if settings is None:
            return False
        if a is not None:               # exactly what `repic-train adapters activate` writes
            base, revision = a.base_model or base, a.base_revision
        else:
            revision = settings.model.revision if settings.model.source == base else None
        settings.set_active_adapter(self.lib, path)
        settings.model.source = base
        settings.model.revision = revision
        try:
            settings.save()
        except OSError as exc:
            self._show_error("Cannot save the settings", str(exc))
            return False
        self._status(f"Captions now use “{name or Path(path).name}”.", tone(self, "good"))
        self.use_btn.setEnabled(False)
        self.use_anyway_btn.hide()
        self.reload_adapters()
        self.adapter_activated.emit(path)
        return True

    def use_no_adapter(self) -> None:
        settings = self._load_settings()
        if settings is None or not settings.active_adapter(self.lib):
            return
        settings.set_active_adapter(self.lib, None)
        try:
            settings.save()
        except OSError as exc:
            self._show_error("Cannot save the settings", str(exc))
            return
        self._status("Captions now use the base model alone.")
        self.reload_adapters()
        self.adapter_activated.emit("")

    # ------------------------------------------------------------------ adapter list
    def reload_adapters(self) -> None:
        settings = self._load_settings(quiet=True)
        try:
            active = settings.active_adapter(self.lib) if settings else None
        except LibraryError:
            active = None
        try:
            adapters = self.lib.adapters.all()
        except LibraryError as exc:
            log.warning("cannot list adapters: %s", exc)
            adapters = []
        self.adapter_list.clear()
        for a in adapters:
            m = read_manifest(a.manifest)
            before, after, flagged = m.before, m.after, m.flagged
            is_active = _same_path(a.path, active)
            item = QTreeWidgetItem([
                a.name, a.base_model, f"{metric_text(before)} → {metric_text(after)}",
                f"{metric_text(before, 'f1')} → {metric_text(after, 'f1')}",
                time.strftime("%Y-%m-%d %H:%M", time.localtime(a.created_at)),
                "✓ in use" if is_active else ("⚠ not better" if flagged else "")])
            item.setData(0, Qt.ItemDataRole.UserRole, a.name)
            item.setToolTip(0, a.path)
            if is_active:
                for c in range(item.columnCount()):
                    f = item.font(c)
                    f.setBold(True)
                    item.setFont(c, f)
            self.adapter_list.addTopLevelItem(item)
        if not adapters:
            item = QTreeWidgetItem(["No adapters yet"])
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.adapter_list.addTopLevelItem(item)
        self.active_adapter = active
        self.no_adapter_btn.setEnabled(bool(active))
        self._update_adapter_buttons()

    def _update_adapter_buttons(self) -> None:
        item = self.adapter_list.currentItem()
        self.use_selected_btn.setEnabled(item is not None and item.data(0, Qt.ItemDataRole.UserRole) is not None)

    def use_selected_adapter(self) -> bool:
        item = self.adapter_list.currentItem()
        name = item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None
        if not name:
            return False
        a = self.lib.adapters.get(name)
        flagged = read_manifest(a.manifest).flagged
        if flagged and not ask(self, "Use an adapter that did not improve?",
                               f"“{a.name}” recalled names no better than its base model. Use it anyway?",
                               "Use Anyway"):
            return False
        return self.activate(a.name, a.path, a.base_model)

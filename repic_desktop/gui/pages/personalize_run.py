"""The Personalize page's training run: the trainer as a child QProcess (its command and environment, start,
cancel and kill, its JSON progress lines, the end of the run). A mixin of PersonalizePage (personalize.py),
split off by size; the module docstring there says why training is a child process.
"""
from __future__ import annotations

import logging
import time

from PySide6.QtCore import QProcess, QProcessEnvironment, QTimer

from .training_stream import (
    TASKS, TailBuffer, TrainingProgress, duration_text, resume_arguments, step_point, trainer_arguments,
)
from .personalize_layout import tone

log = logging.getLogger(__name__)


class TrainingRun:
    """The training child process of PersonalizePage: start, cancel, read its JSON lines, end the run."""

    # ------------------------------------------------------------------ running
    def is_running(self) -> bool:
        return self.proc is not None and self.proc.state() != QProcess.ProcessState.NotRunning

    def _setup_env(self, proc: QProcess) -> None:
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")       # a JSON line must arrive when it is printed
        env.insert("PYTHONIOENCODING", "utf-8")
        proc.setProcessEnvironment(env)

    def build_arguments(self) -> list[str]:
        names = self.selected_concepts()
        every = len(names) == self.concept_list.count()
        return trainer_arguments(
            base=self.base_combo.currentText().strip(), library=str(self.lib.path),
            concepts=None if every else names, name=self.name_edit.text().strip() or None,
            quant4=self.quant_check.isChecked(),
            max_steps=self.steps_spin.value() or None, epochs=self.epochs_spin.value() or None,
            num_generations=self.gens_spin.value() if self.gens_spin.value() > 1 else None,
            seed=self.seed_spin.value() if self.seed_spin.value() >= 0 else None)

    def _update_start(self) -> None:
        why = ""
        names = self.selected_concepts()
        if not names:
            why = "Choose at least one person or pet."
        elif any("," in n for n in names) and len(names) < self.concept_list.count():
            why = ("Names with a comma can only be trained together with everyone "
                   "(the trainer's list is comma-separated).")
        elif not self.base_combo.currentText().strip():
            why = "Choose a base model."
        elif self.base_status.missing:
            why = "The base model is not on this computer yet: Download it, or choose a model folder."
        self.setup_error.setText(why if self.concept_list.count() else "")
        self.setup_error.setVisible(bool(why) and self.concept_list.count() > 0)
        self.start_btn.setEnabled(not why and not self.is_running())

    def start(self, resume: bool = False) -> bool:
        if self.is_running():
            return False
        if resume:
            if not self._resume_out or not self._last_args:
                return False
            args = resume_arguments(self._last_args, self._resume_out)
        else:
            self._update_start()
            if not self.start_btn.isEnabled():
                return False
            try:
                args = self.build_arguments()
            except ValueError as exc:
                self._show_error("Cannot start training", str(exc))
                return False
        self._last_args = args
        self._resume_out = None
        self.resume_btn.hide()
        self._summary_timer.stop()
        self._drop_summary_proc()
        self.progress = TrainingProgress()
        self.stderr = TailBuffer(40)
        self._cancelling = False
        self._run_base = self.base_combo.currentText().strip()
        self.reward_chart.clear()
        self.loss_chart.clear()
        self._reset_result()
        self.error_box.hide()
        self.log_view.clear()
        self.bar.setRange(0, 0)
        self.eta_label.clear()
        proc = QProcess(self)
        self._setup_env(proc)
        proc.readyReadStandardOutput.connect(self._read_stdout)
        proc.readyReadStandardError.connect(self._read_stderr)
        proc.finished.connect(self._finished)
        proc.errorOccurred.connect(self._process_error)
        self.proc = proc
        self._started_at = time.monotonic()
        cmd = self.trainer_command + args
        self.log_view.appendPlainText("$ " + " ".join(cmd))
        log.info("training: %s", " ".join(cmd))
        self._status("Starting the trainer…")
        proc.start(cmd[0], cmd[1:])
        self._set_running(True)
        return True

    def cancel(self) -> None:
        if not self.is_running():
            return
        if self._cancelling:            # the second press: "Stop Now"
            self._kill_now()
            return
        self._cancelling = True
        self._status("Stopping after the current step…")
        self.cancel_btn.setText("Stop Now")
        self.cancel_btn.setToolTip("Stop at once, without saving a checkpoint")
        self.proc.terminate()
        self._kill_timer.start(self.kill_timeout_ms)

    def _kill_now(self) -> None:
        if self.is_running():
            log.warning("killing the trainer (pid %s)", self.proc.processId())
            self.proc.kill()

    def _set_running(self, on: bool) -> None:
        for w in self.setup_controls:
            w.setEnabled(not on)
        self.cancel_btn.setEnabled(on)
        self.resume_btn.setEnabled(not on)
        if not on:
            self.cancel_btn.setText("Cancel")
            self.cancel_btn.setToolTip("Stop after the current step (a checkpoint is saved)")
        self._update_start()
        if on:
            self._tick.start()
        else:
            self._tick.stop()
        self.running_changed.emit(on)

    def _status(self, text: str, color: str = "") -> None:
        self.status_label.setText(text)
        self.status_label.setStyleSheet(f"color: {color};" if color else "")

    # ------------------------------------------------------------------ the child's output
    def _read_stdout(self) -> None:
        if self.proc is None:
            return
        for ev in self.progress.feed(self.proc.readAllStandardOutput().data()):
            self._on_event(ev)
        self._flush_noise()

    def _read_stderr(self) -> None:
        if self.proc is None:
            return
        for line in self.stderr.feed(self.proc.readAllStandardError().data()):
            self.log_view.appendPlainText(line)

    def _flush_noise(self) -> None:
        while self.progress.noise:
            self.log_view.appendPlainText(self.progress.noise.popleft())

    def _on_event(self, ev: dict) -> None:
        kind = ev["event"]
        p = self.progress
        if kind == "dataset":
            self.show_summary(p.summary)
        elif kind == "status":
            self._status(str(ev.get("message", "")))
        elif kind == "eval":
            self._show_metrics()
            self._status("Measured the base model." if ev.get("phase") == "before" else "Measured the new adapter.")
        elif kind == "step":
            s = step_point(ev)
            for t in TASKS:
                self.reward_chart.append(t, s.step, s.rewards[t])
            self.loss_chart.append("loss", s.step, s.loss)
            total = ev.get("max_steps") if isinstance(ev.get("max_steps"), int) and ev["max_steps"] > 0 else None
            if total:
                self.bar.setRange(0, total)
                self.bar.setValue(min(s.step, total))
            self._status(f"Training: step {s.step}" + (f" of {total}" if total else ""))
            self._update_eta()
        elif kind == "done":
            self._show_metrics()
            self._show_done(ev)
        elif kind == "error":
            if not (self._cancelling or ev.get("cancelled")):
                self._show_error("Training failed", p.error)

    def _update_eta(self) -> None:
        if not self.is_running():
            return
        elapsed = duration_text(time.monotonic() - self._started_at)
        p = self.progress
        eta = p.eta_s if p.steps else None
        text = f"{elapsed} elapsed"
        if eta is not None and p.done is None:
            text += f"  ·  about {duration_text(eta)} left"
        if p.epoch is not None:
            text = f"epoch {p.epoch:.2f}  ·  " + text
        self.eta_label.setText(text)

    def _process_error(self, err: QProcess.ProcessError) -> None:
        if err == QProcess.ProcessError.FailedToStart:
            # no `finished` follows a failed start
            self._show_error("The trainer could not start", f"{self.trainer_command[0]}: {self.proc.errorString()}")
            self._end_run()

    def _finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._kill_timer.stop()
        self._read_stdout()
        self._read_stderr()
        for ev in self.progress.finish():
            self._on_event(ev)
        for line in self.stderr.finish():
            self.log_view.appendPlainText(line)
        self._flush_noise()
        p = self.progress
        stop = p.error_event if p.error_event and p.error_event.get("cancelled") else None
        if p.done is not None:
            # A "done" event means the adapter was saved and registered: that is the outcome, whatever
            # the exit code says (a late signal or a crash while exiting cannot unregister it).
            self._cancelling = False
            if p.done.get("flagged"):
                self._status("Done, but the new adapter is not better than the base model.", tone(self, "warn"))
            else:
                self._status("Done.", tone(self, "good"))
        elif self._cancelling or stop is not None:
            self._reset_result()
            if stop is not None and stop.get("checkpoint") and stop.get("out"):
                self._resume_out = str(stop["out"])
                self.resume_btn.show()
                step = stop.get("step")
                self._status(f"Cancelled{f' at step {step}' if isinstance(step, int) else ''}. "
                             "A checkpoint was saved: Resume continues from it.")
            else:
                self._status("Cancelled: no adapter was made.")
        else:
            if p.error:
                msg = p.error
            elif status == QProcess.ExitStatus.CrashExit:
                msg = "The trainer stopped unexpectedly (it crashed or was killed, perhaps out of memory)."
            elif code != 0:
                msg = f"The trainer stopped with exit code {code}."
            else:
                msg = "The trainer ended without making an adapter."
            self._show_error("Training failed", msg)
        self.log_view.appendPlainText(f"[trainer exited with code {code}]")
        self._end_run()
        if self._close_after_stop is not None:
            window, self._close_after_stop = self._close_after_stop, None
            QTimer.singleShot(0, window.close)

    def _end_run(self) -> None:
        self.bar.setRange(0, max(1, self.bar.maximum()))
        if self.progress.done is not None and not self._cancelling:
            self.bar.setValue(self.bar.maximum())
        self._update_eta()
        self._set_running(False)
        self.eta_label.setText(f"took {duration_text(time.monotonic() - self._started_at)}"
                               if self._started_at else "")
        self.reload_adapters()

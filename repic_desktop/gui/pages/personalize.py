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
from PySide6.QtCore import QCoreApplication, QProcess, QProcessEnvironment, Qt, QTimer, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QFormLayout, QFrame, QGridLayout, QHBoxLayout,
    QHeaderView, QLabel, QLineEdit, QListWidget, QListWidgetItem, QMessageBox, QPlainTextEdit, QProgressBar,
    QPushButton, QScrollArea, QSpinBox, QToolButton, QTreeWidget, QTreeWidgetItem,
    QVBoxLayout, QWidget,
)

from ...app.adapters import read_manifest
from ...core.library import Library, LibraryError, NotFound
from ...core.settings import DEFAULT_MODEL_SOURCE, Settings, SettingsError
from ..widgets.charts import LineChart
from ..dialogs.files import choose_folder
from .layout import heading, split_page
from .base_model import BaseModelStatus
from ..widgets.wheel_guard import guard_wheel
from ..captioning.model_worker import demo_model_dir
from ...captioning.demo_model import is_demo_model
from .training_stream import (
    TASKS, TailBuffer, TrainingProgress, duration_text, metric_text, resume_arguments, step_point,
    summary_from_output, trainer_arguments,
)

log = logging.getLogger(__name__)

BASE_CHOICES = (DEFAULT_MODEL_SOURCE, "Qwen/Qwen2.5-VL-7B-Instruct")
TASK_LABELS = {"ict": "ICT: name the person or pet in a caption",
               "oct": "OCT: is this person or pet in the photo? (yes/no)",
               "vlt": "VLT: where are they? (a box)"}
# status colours for light / dark palettes (the same pairs as the queue dock's)
COLORS = {"good": ("#2e7d32", "#81c784"), "warn": ("#b26a00", "#ffb74d"), "bad": ("#c62828", "#e57373")}


def ask(parent: QWidget | None, title: str, text: str, yes: str, no: str = "Cancel") -> bool:
    """A yes/no question with verbs on the buttons (tests replace this function)."""
    box = QMessageBox(QMessageBox.Icon.Question, title, text, QMessageBox.StandardButton.NoButton, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    yes_b = box.addButton(yes, QMessageBox.ButtonRole.AcceptRole)
    box.addButton(no, QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(yes_b)
    box.exec()
    return box.clickedButton() is yes_b




def tone(widget: QWidget, kind: str) -> str:
    dark = widget.palette().color(QPalette.ColorRole.Window).lightness() < 128
    return COLORS[kind][1 if dark else 0]


def _same_path(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return a == b


def _muted(label: QLabel) -> QLabel:
    label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    return label


def _section(title: str) -> QLabel:
    lab = heading(QLabel(title))
    lab.setContentsMargins(0, 8, 0, 0)
    return lab


class PersonalizePage(QWidget):
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

    # ------------------------------------------------------------------ building
    def _build_setup(self) -> None:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.setContentsMargins(12, 10, 8, 10)
        lay.addWidget(heading(QLabel("Personalize"), 1.3))
        intro = _muted(QLabel("Teach the model your own people and pets, from the photos you have tagged. "
                              "Training makes a small add-on (an adapter); the base model is not changed."))
        intro.setWordWrap(True)
        lay.addWidget(intro)

        lay.addWidget(_section("Who to learn"))
        self.concept_list = QListWidget()
        self.concept_list.itemChanged.connect(lambda _i: self._concepts_changed())
        lay.addWidget(self.concept_list)
        row = QHBoxLayout()
        self.all_btn = QPushButton("All")
        self.all_btn.clicked.connect(lambda: self._check_all(True))
        self.none_btn = QPushButton("None")
        self.none_btn.clicked.connect(lambda: self._check_all(False))
        row.addWidget(self.all_btn)
        row.addWidget(self.none_btn)
        row.addStretch(1)
        lay.addLayout(row)
        self.summary_label = QLabel(wordWrap=True, textFormat=Qt.TextFormat.RichText)
        self.summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.summary_label)

        lay.addWidget(_section("Model"))
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.base_combo = QComboBox(editable=True)
        self.base_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.base_combo.setToolTip("The model the adapter is trained for: a hub id or a model folder")
        self.base_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.base_combo.setMinimumContentsLength(12)
        self.browse_btn = QPushButton("Folder…")
        self.browse_btn.clicked.connect(self._browse_base)
        base_row = QHBoxLayout()
        base_row.addWidget(self.base_combo, 1)
        base_row.addWidget(self.browse_btn)
        form.addRow("Base model", base_row)
        self.base_status = BaseModelStatus(self.base_combo)
        self.base_status.changed.connect(lambda: hasattr(self, "start_btn") and self._update_start())
        form.addRow("", self.base_status)
        self.name_edit = QLineEdit(placeholderText="automatic")
        self.name_edit.setToolTip("A name for the new adapter (letters, digits, - and _)")
        form.addRow("Adapter name", self.name_edit)
        self.quant_check = QCheckBox("4-bit base model (fits 8–12 GB GPUs)")
        form.addRow("", self.quant_check)
        lay.addLayout(form)

        self.adv_toggle = QToolButton(text="Advanced", checkable=True)
        self.adv_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.adv_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.adv_toggle.setAutoRaise(True)
        self.adv_toggle.toggled.connect(self._toggle_advanced)
        lay.addWidget(self.adv_toggle)
        self.advanced = QWidget()
        af = QFormLayout(self.advanced)
        af.setContentsMargins(16, 0, 0, 0)

        def spin(lo: int, hi: int, special: str, tip: str) -> QSpinBox:
            # the lowest value means "leave it to the trainer": no flag is passed at all
            s = QSpinBox(minimum=lo, maximum=hi)
            s.setSpecialValueText(special)
            s.setToolTip(tip)
            return s

        self.steps_spin = spin(0, 100_000, "Auto", "Stop after this many optimizer steps")
        self.epochs_spin = spin(0, 100, "Auto", "Passes over the training examples")
        self.gens_spin = spin(1, 64, "Auto", "Captions sampled per example for GRPO's group comparison")
        self.seed_spin = spin(-1, 2**31 - 1, "Default", "Random seed: the same seed repeats a run")
        self.seed_spin.setValue(-1)
        af.addRow("Max steps", self.steps_spin)
        af.addRow("Epochs", self.epochs_spin)
        af.addRow("Generations", self.gens_spin)
        af.addRow("Seed", self.seed_spin)
        self.advanced.hide()
        lay.addWidget(self.advanced)

        lay.addStretch(1)
        # The reason Start is off and the buttons sit under the scrolling form, never inside it: on a
        # small screen (or with Advanced open) they were scrolled out of sight.
        footer = QWidget()
        fl = QVBoxLayout(footer)
        fl.setContentsMargins(12, 4, 8, 10)
        self.setup_error = QLabel(wordWrap=True)
        self.setup_error.setStyleSheet(f"color: {tone(self, 'bad')};")
        self.setup_error.hide()
        fl.addWidget(self.setup_error)
        btns = QHBoxLayout()
        self.start_btn = QPushButton("Start Training")
        self.start_btn.setDefault(True)
        self.start_btn.clicked.connect(lambda: self.start())
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(lambda: self.cancel())
        self.resume_btn = QPushButton("Resume")
        self.resume_btn.setToolTip("Continue the cancelled run from its last checkpoint")
        self.resume_btn.clicked.connect(lambda: self.start(resume=True))
        self.resume_btn.hide()
        btns.addWidget(self.start_btn, 1)
        btns.addWidget(self.resume_btn)
        btns.addWidget(self.cancel_btn)
        fl.addLayout(btns)

        self.setup_scroll = QScrollArea()
        self.setup_scroll.setWidgetResizable(True)
        self.setup_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.setup_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setup_scroll.setWidget(w)
        self.setup_scroll.setMinimumWidth(300)
        self.wheel_guard = guard_wheel(w)
        self.setup_pane = QWidget()
        pl = QVBoxLayout(self.setup_pane)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.setSpacing(0)
        pl.addWidget(self.setup_scroll, 1)
        pl.addWidget(footer)
        self.setup_controls = [self.concept_list, self.all_btn, self.none_btn, self.base_combo, self.browse_btn,
                               self.name_edit, self.quant_check, self.advanced]

    def _build_run(self) -> None:
        self.run_panel = QWidget()
        lay = QVBoxLayout(self.run_panel)
        lay.setContentsMargins(8, 10, 12, 10)
        head = QHBoxLayout()
        self.status_label = heading(QLabel("Not started"), 1.15)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        head.addWidget(self.status_label, 1)
        self.eta_label = QLabel()
        head.addWidget(self.eta_label)
        lay.addLayout(head)
        self.bar = QProgressBar()
        self.bar.setTextVisible(False)
        self.bar.setMaximumHeight(10)
        lay.addWidget(self.bar)

        self.error_box = QFrame()
        self.error_box.setFrameShape(QFrame.Shape.StyledPanel)
        el = QVBoxLayout(self.error_box)
        self.error_label = QLabel(wordWrap=True)
        self.error_label.setStyleSheet(f"color: {tone(self, 'bad')}; font-weight: bold;")
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        el.addWidget(self.error_label)
        self.error_details = QPlainTextEdit(readOnly=True)
        self.error_details.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.error_details.setMaximumHeight(120)
        el.addWidget(self.error_details)
        self.error_box.hide()
        lay.addWidget(self.error_box)

        charts = QHBoxLayout()
        self.reward_chart = LineChart("Reward per task", x_label="step", y_range=(0.0, 1.0),
                                      connect_gaps=True)
        for t in TASKS:
            self.reward_chart.add_series(t)
        self.loss_chart = LineChart("Loss", x_label="step")
        self.loss_chart.add_series("loss", "#D55E00")
        charts.addWidget(self.reward_chart)
        charts.addWidget(self.loss_chart)
        lay.addLayout(charts, 3)

        # result: before/after name recall on the held-out photos
        self.result_box = QFrame()
        self.result_box.setFrameShape(QFrame.Shape.StyledPanel)
        rl = QVBoxLayout(self.result_box)
        rl.addWidget(heading(QLabel("Name recall on held-out photos")))
        grid = QGridLayout()
        grid.setHorizontalSpacing(24)
        self.metric_labels: dict[tuple[str, str], QLabel] = {}
        for c, head_text in enumerate(("", "Before", "After")):
            if head_text:
                grid.addWidget(_muted(QLabel(head_text)), 0, c, Qt.AlignmentFlag.AlignRight)
        for r, (key, text) in enumerate((("recall", "Recall"), ("precision", "Precision"), ("f1", "F1")), start=1):
            grid.addWidget(QLabel(text), r, 0)
            for c, phase in enumerate(("before", "after"), start=1):
                lab = QLabel("—", alignment=Qt.AlignmentFlag.AlignRight)
                if key == "recall":
                    heading(lab, 1.2)
                self.metric_labels[(phase, key)] = lab
                grid.addWidget(lab, r, c)
        grid.setColumnStretch(3, 1)
        rl.addLayout(grid)
        self.verdict = QLabel(wordWrap=True)
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        rl.addWidget(self.verdict)
        rb = QHBoxLayout()
        self.use_btn = QPushButton("Use this adapter")
        self.use_btn.setToolTip("Caption with this adapter from now on (Model settings)")
        self.use_btn.clicked.connect(lambda: self.use_new_adapter())
        self.use_anyway_btn = QPushButton("Use anyway…")
        self.use_anyway_btn.clicked.connect(lambda: self.use_new_adapter(anyway=True))
        rb.addWidget(self.use_btn)
        rb.addWidget(self.use_anyway_btn)
        rb.addStretch(1)
        rl.addLayout(rb)
        lay.addWidget(self.result_box)

        # existing adapters
        ah = QHBoxLayout()
        ah.addWidget(_section("Your adapters"))
        ah.addStretch(1)
        self.use_selected_btn = QPushButton("Use selected")
        self.use_selected_btn.clicked.connect(self.use_selected_adapter)
        self.no_adapter_btn = QPushButton("Use none")
        self.no_adapter_btn.setToolTip("Caption with the base model alone")
        self.no_adapter_btn.clicked.connect(self.use_no_adapter)
        ah.addWidget(self.use_selected_btn)
        ah.addWidget(self.no_adapter_btn)
        lay.addLayout(ah)
        self.adapter_list = QTreeWidget()
        self.adapter_list.setHeaderLabels(["Adapter", "Base model", "Recall before → after", "F1 before → after",
                                           "Created", ""])
        self.adapter_list.setRootIsDecorated(False)
        self.adapter_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.adapter_list.setMinimumHeight(70)
        hdr = self.adapter_list.header()
        hdr.setStretchLastSection(False)
        hdr.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hdr.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.adapter_list.currentItemChanged.connect(lambda *_: self._update_adapter_buttons())
        lay.addWidget(self.adapter_list, 1)

        self.log_toggle = QToolButton(text="Trainer log", checkable=True)
        self.log_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.log_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.log_toggle.setAutoRaise(True)
        self.log_view = QPlainTextEdit(readOnly=True)
        self.log_view.setMaximumBlockCount(2000)
        self.log_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.log_view.hide()
        self.log_toggle.toggled.connect(lambda on: (self.log_view.setVisible(on), self.log_toggle.setArrowType(
            Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)))
        lay.addWidget(self.log_toggle)
        lay.addWidget(self.log_view, 1)
        self._reset_result()

    def _toggle_advanced(self, on: bool) -> None:
        self.advanced.setVisible(on)
        self.adv_toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)

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

"""The Personalize page's layout (setup: who to learn, the model, settings; run: status, charts, result,
your adapters).
A mixin of PersonalizePage (personalize.py), split off by size: the builders make the widgets the page's
other methods use.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QFormLayout, QFrame, QGridLayout, QHBoxLayout, QHeaderView,
    QLabel, QLineEdit, QListWidget, QPlainTextEdit, QProgressBar, QPushButton, QScrollArea, QSpinBox,
    QToolButton, QTreeWidget, QVBoxLayout, QWidget,
)

from ..widgets.charts import LineChart
from .layout import heading
from .base_model import BaseModelStatus
from ..widgets.wheel_guard import guard_wheel
from .training_stream import TASKS


# status colours for light / dark palettes (the same pairs as the queue dock's)
COLORS = {"good": ("#2e7d32", "#81c784"), "warn": ("#b26a00", "#ffb74d"), "bad": ("#c62828", "#e57373")}


def tone(widget: QWidget, kind: str) -> str:
    dark = widget.palette().color(QPalette.ColorRole.Window).lightness() < 128
    return COLORS[kind][1 if dark else 0]


def _muted(label: QLabel) -> QLabel:
    label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    return label


def _section(title: str) -> QLabel:
    lab = heading(QLabel(title))
    lab.setContentsMargins(0, 8, 0, 0)
    return lab


class PersonalizeLayout:
    """How PersonalizePage is laid out: the setup column and the run column, built once in __init__."""

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

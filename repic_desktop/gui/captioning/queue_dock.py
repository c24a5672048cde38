"""The captioning queue dock: the model (load progress, cancel, unload, GPU) and every job of this session.

Each job card shows a progress bar, photos/min, time left, the photo being captioned, the photos that
failed with their reasons, and Pause / Cancel / Resume / Remove. It only displays the controller's state
(`JobView`s and model fields) and calls the controller; it never touches the model or the library.
The face-index job ("Index Faces in Library") gets a card of the same shape (`IndexCard`) that reads an
`index_controller.IndexController` the same way.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import (
    QDockWidget, QFrame, QHBoxLayout, QLabel, QListWidget, QProgressBar, QPushButton, QScrollArea,
    QSizePolicy, QToolButton, QVBoxLayout, QWidget,
)

from .model_worker import LOAD_STAGES
from ..pages.layout import heading

if TYPE_CHECKING:
    from .controller import CaptioningController
    from .job_view import JobView
    from .index_controller import IndexController

STATUS_TEXT = {
    "queued": "Waiting", "starting": "Starting", "running": "Captioning", "stopping": "Stopping",
    "paused": "Paused", "interrupted": "Interrupted", "cancelled": "Cancelled", "done": "Done",
}


def _is_dark(widget: QWidget) -> bool:
    return widget.palette().color(QPalette.ColorRole.Window).lightness() < 128


def status_color(status: str, dark: bool) -> str:
    good, warn, bad, busy = (("#81c784", "#ffb74d", "#e57373", "#64b5f6") if dark
                             else ("#2e7d32", "#b26a00", "#c62828", "#1565c0"))
    return {"done": good, "paused": warn, "interrupted": warn, "stopping": warn, "cancelled": bad,
            "running": busy, "starting": busy}.get(status, "")


def duration_text(seconds: float) -> str:
    if seconds < 0:
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s" if s < 600 else f"{round(s / 60)} min"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def _small(label: QLabel) -> QLabel:
    f = QFont(label.font())
    f.setPointSizeF(max(7.0, f.pointSizeF() * 0.9))
    label.setFont(f)
    return label


def _secondary(label: QLabel) -> QLabel:
    """Secondary text: between the text and the background colour (readable in light and dark themes,
    unlike the disabled colour)."""
    pal = label.palette()
    fg, bg = pal.color(QPalette.ColorRole.WindowText), pal.color(QPalette.ColorRole.Window)
    mix = QColor((fg.red() * 62 + bg.red() * 38) // 100, (fg.green() * 62 + bg.green() * 38) // 100,
                 (fg.blue() * 62 + bg.blue() * 38) // 100)
    pal.setColor(QPalette.ColorRole.WindowText, mix)
    label.setPalette(pal)
    return label


class JobCard(QFrame):
    def __init__(self, controller: "CaptioningController", job_id: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller, self.job_id = controller, job_id
        self.setObjectName(f"jobCard{job_id}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.setSpacing(3)
        top = QHBoxLayout()
        self.title = heading("", parent=self)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top.addWidget(self.title, 1)
        self.status = QLabel(self)
        top.addWidget(self.status)
        lay.addLayout(top)
        self.detail = _secondary(_small(QLabel(self)))
        self.detail.setWordWrap(True)
        lay.addWidget(self.detail)
        self.bar = QProgressBar(self)
        self.bar.setTextVisible(False)  # the count is in the line below: text on a bar is hard to read
        self.bar.setMaximumHeight(12)
        lay.addWidget(self.bar)
        self.stats = _small(QLabel(self))
        self.stats.setWordWrap(True)
        lay.addWidget(self.stats)
        self.message = QLabel(self)
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.message)
        self.errors_toggle = QToolButton(self)
        self.errors_toggle.setCheckable(True)
        self.errors_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.errors_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.errors_toggle.setAutoRaise(True)
        self.errors_toggle.toggled.connect(self._toggle_errors)
        lay.addWidget(self.errors_toggle)
        self.errors = QListWidget(self)
        self.errors.setWordWrap(True)
        self.errors.setMaximumHeight(140)
        self.errors.setVisible(False)
        lay.addWidget(self.errors)
        top.setSpacing(4)
        self.pause = QPushButton("Pause", self)
        self.pause.setToolTip("Stop now; the job stays in the list and continues with Resume (also after a restart)")
        self.pause.clicked.connect(lambda: controller.pause_job(job_id))
        self.cancel = QPushButton("Cancel", self)
        self.cancel.setToolTip("Stop this job for good; the captions made so far are kept")
        self.cancel.clicked.connect(lambda: controller.cancel_job(job_id))
        self.resume = QPushButton("Resume", self)
        self.resume.setToolTip("Caption the photos this job has left")
        self.resume.clicked.connect(lambda: controller.resume_job(job_id))
        self.remove = QPushButton("Remove", self)
        self.remove.setToolTip("Remove from the list (a paused job is given up; its captions are kept)")
        self.remove.clicked.connect(lambda: controller.remove_job(job_id))
        # On the title row, as on the index card: the dock often opens at its minimum height, and buttons
        # below the progress and error lines were then scrolled out of sight while a job ran.
        for b in (self.pause, self.cancel, self.resume, self.remove):
            b.setStyleSheet("QPushButton { padding: 1px 10px; }")
            top.addWidget(b)
        self._shown_errors = 0
        self.refresh()

    def _toggle_errors(self, on: bool) -> None:
        self.errors.setVisible(on and self.errors.count() > 0)
        self.errors_toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)

    def refresh(self) -> None:
        v: JobView | None = self.controller.jobs.get(self.job_id)
        if v is None:
            return
        self.title.setText(v.title)
        status = v.status
        text = STATUS_TEXT.get(status, status)
        if status in ("queued", "starting") and self.controller.model_state == "loading":
            text = "Loading model"
        self.status.setText(text)
        color = status_color(status, _is_dark(self))
        self.status.setStyleSheet(f"color: {color}; font-weight: 600;" if color else "font-weight: 600;")
        self.detail.setText(v.detail)
        self.bar.setRange(0, max(1, v.total))
        self.bar.setValue(min(v.processed, v.total))
        stats = [f"{v.processed} of {v.total} photo" + ("s" if v.total != 1 else "")]
        if v.status in ("running", "starting", "stopping"):
            rate = v.rate
            if rate is not None:
                stats.append(f"{rate:.1f} photos/min" if rate < 100 else f"{rate:.0f} photos/min")
            left = v.seconds_left
            if left is not None and v.remaining:
                stats.append(f"about {duration_text(left)} left" if left >= 1 else "almost done")
            if v.current:
                stats.append(f"now: {v.current}")
        elif v.remaining and status in ("paused", "interrupted", "cancelled", "queued"):
            stats.append(f"{v.remaining} left")
        self.stats.setText(" · ".join(stats))
        self.message.setText(v.message)
        self.message.setVisible(bool(v.message))
        n_err = v.failed
        self.errors_toggle.setVisible(n_err > 0)
        self.errors.setVisible(n_err > 0 and self.errors_toggle.isChecked())
        self.errors_toggle.setText(f"{n_err} photo" + ("s" if n_err != 1 else "") + " failed — show why")
        if len(v.errors) != self._shown_errors:
            for name, reason in v.errors[self._shown_errors:]:
                self.errors.addItem(f"{name}: {reason}")
            self._shown_errors = len(v.errors)
        active = v.active
        self.pause.setVisible(status in ("queued", "starting", "running"))
        self.cancel.setVisible(status in ("queued", "starting", "running"))
        self.resume.setVisible(status in ("paused", "interrupted", "cancelled") and v.remaining > 0)
        self.remove.setVisible(not active)


INDEX_STATUS_TEXT = {"starting": "Loading matcher", "running": "Indexing", "stopping": "Stopping",
                     "done": "Done", "cancelled": "Cancelled", "failed": "Failed"}


class IndexCard(QFrame):
    """The face-index job: progress, the photo being indexed, Cancel / Resume / Remove.

    Compact on purpose (buttons on the title row, one stats line): the queue dock opens at its minimum
    height, and the dock grows by exactly this card's height while it is shown (QueueDock)."""

    height_changed = Signal()   # after refresh: rows shown or hidden, text re-wrapped

    def __init__(self, index: "IndexController", parent: QWidget | None = None):
        super().__init__(parent)
        self.index = index
        self.setObjectName("indexCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        lay.setSpacing(2)
        top = QHBoxLayout()
        top.setSpacing(4)
        self.title = heading("Index faces in library", parent=self)
        top.addWidget(self.title)
        self.status = QLabel(self)
        top.addWidget(self.status)
        top.addStretch(1)
        lay.addLayout(top)
        self.bar = QProgressBar(self)
        self.bar.setTextVisible(False)
        self.bar.setMaximumHeight(8)
        lay.addWidget(self.bar)
        self.stats = _secondary(_small(QLabel(self)))
        self.stats.setWordWrap(True)
        self.stats.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.stats)
        self.message = QLabel(self)
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.message)
        buttons = top
        self.cancel = QPushButton("Cancel", self)
        self.cancel.setToolTip("Stop after the current photo; what is indexed is kept and Resume continues")
        self.cancel.clicked.connect(index.cancel)
        self.resume = QPushButton("Resume", self)
        self.resume.setToolTip("Index the photos this job has left")
        self.resume.clicked.connect(index.resume)
        self.remove = QPushButton("Remove", self)
        self.remove.setToolTip("Remove from the list (what was indexed is kept)")
        self.remove.clicked.connect(index.dismiss)
        self.show_photos = QPushButton("Show Photos", self)
        self.show_photos.setToolTip("Show the photos with suggestions waiting for you to confirm or reject")
        self.show_photos.clicked.connect(index.show_suggested.emit)
        for b in (self.show_photos, self.cancel, self.resume, self.remove):
            b.setStyleSheet("QPushButton { padding: 1px 10px; }")   # no taller than the title row needs
            buttons.addWidget(b)
        index.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        ix = self.index
        state = ix.state
        self.setVisible(state != "idle")
        self.status.setText(INDEX_STATUS_TEXT.get(state, state))
        color = status_color({"failed": "cancelled", "starting": "running"}.get(state, state), _is_dark(self))
        self.status.setStyleSheet(f"color: {color}; font-weight: 600;" if color else "font-weight: 600;")
        if state == "starting" or (ix.active and not ix.total):
            self.bar.setRange(0, 0)          # busy: loading the matcher, or counting photos
        else:
            self.bar.setRange(0, max(1, ix.total))
            self.bar.setValue(min(ix.done, max(1, ix.total)))
        stats = [f"{ix.done} of {ix.total} photo" + ("s" if ix.total != 1 else "")] if ix.total else []
        if state == "running":
            rate = ix.rate
            if rate is not None:
                stats.append(f"{rate:.0f} photos/min" if rate >= 10 else f"{rate:.1f} photos/min")
                left = (ix.total - ix.done) / rate * 60 if rate > 0 else -1
                if ix.total > ix.done and left >= 1:
                    stats.append(f"about {duration_text(left)} left")
            if ix.current:
                stats.append(f"now: {ix.current}")
        if ix.matcher_name and state in ("running", "stopping", "done"):
            stats.append(ix.matcher_name)
        self.stats.setText(" · ".join(stats))
        self.stats.setVisible(bool(stats))
        self.message.setText(ix.message)
        self.message.setVisible(bool(ix.message))
        self.cancel.setVisible(state in ("starting", "running"))
        self.show_photos.setVisible(getattr(ix, "pending_suggestions", 0) > 0)
        self.resume.setVisible(ix.resumable)
        self.remove.setVisible(not ix.active)
        self.height_changed.emit()


class IndexDock(QDockWidget):
    """The face-index card on its own, for a window without the captioning queue dock."""

    def __init__(self, index: "IndexController", parent: QWidget | None = None):
        super().__init__("Face Indexing", parent)
        self.setObjectName("faceIndexDock")
        body = QWidget(self)
        lay = QVBoxLayout(body)
        lay.setContentsMargins(6, 6, 6, 6)
        self.index_card = IndexCard(index, body)
        lay.addWidget(self.index_card)
        lay.addStretch(1)
        self.setWidget(body)
        index.changed.connect(self._changed)

    def _changed(self) -> None:
        if self.index_card.index.active and not self.isVisible():
            self.show()
            self.raise_()


class ModelPanel(QFrame):
    def __init__(self, controller: "CaptioningController", parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = controller
        self.setObjectName("modelPanel")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.setSpacing(3)
        top = QHBoxLayout()
        top.setSpacing(4)
        head = heading("Model", parent=self)
        top.addWidget(head)
        self.state = QLabel(self)
        top.addWidget(self.state)
        top.addStretch(1)
        self.load = QPushButton("Load", self)
        self.load.setToolTip("Load the model now (captioning loads it by itself when needed)")
        self.load.clicked.connect(controller.load_model)
        self.cancel = QPushButton("Cancel loading", self)
        self.cancel.clicked.connect(controller.cancel_load)
        self.unload = QPushButton("Unload model", self)
        self.unload.setToolTip("Free the GPU memory now (a running job is paused and can be resumed)")
        self.unload.clicked.connect(controller.unload_model)
        self.settings = QPushButton("Settings…", self)
        self.settings.clicked.connect(lambda: controller.open_settings(self.window()))
        for b in (self.load, self.cancel, self.unload, self.settings):
            top.addWidget(b)
        lay.addLayout(top)
        self.name = QLabel(self)
        self.name.setWordWrap(True)
        self.name.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.name)
        self.stage = _small(QLabel(self))
        lay.addWidget(self.stage)
        self.bar = QProgressBar(self)
        self.bar.setTextVisible(False)
        self.bar.setMaximumHeight(10)
        lay.addWidget(self.bar)
        self.gpu = _secondary(_small(QLabel(self)))  # "bfloat16 on cuda:0, sdpa attention · GPU: ..."
        self.gpu.setWordWrap(True)
        lay.addWidget(self.gpu)
        self.download = _small(QLabel(self))
        self.download.setWordWrap(True)
        lay.addWidget(self.download)
        self.download_bar = QProgressBar(self)
        self.download_bar.setMaximumHeight(10)
        self.download_bar.setTextVisible(False)
        lay.addWidget(self.download_bar)
        self._label: str | None = None  # the settings' model, re-read only when the settings change
        controller.model_changed.connect(self.refresh)
        controller.download_changed.connect(self.refresh)
        controller.settings_changed.connect(self._settings_changed)
        self.refresh()

    def _settings_changed(self) -> None:
        self._label = None
        self.refresh()

    def refresh(self) -> None:
        c = self.controller
        state = c.model_state
        dark = _is_dark(self)
        self.name.setToolTip(c.model_id_text if state == "loaded" else "")
        if state == "loaded":
            self.state.setText("loaded")
            self.state.setStyleSheet(f"color: {status_color('done', dark)};")
            self.name.setText(c.model_text)
        elif state == "loading":
            self.state.setText("cancelling…" if c.load_cancelling else "loading…")
            self.state.setStyleSheet(f"color: {status_color('running', dark)};")
            self.name.setText(c.model_text)
        else:
            self.state.setText("not loaded")
            self.state.setStyleSheet("")
            if self._label is None:
                self._label = self._settings_label()
            self.name.setText(self._label)
        loading = state == "loading"
        self.stage.setVisible(loading)
        self.bar.setVisible(loading)
        if loading:
            self.stage.setText(LOAD_STAGES.get(c.load_stage, c.load_stage) + "…")
            if c.load_stage in ("weights", "build"):
                self.bar.setRange(0, 0)  # busy: that stage reports no progress of its own
            else:
                self.bar.setRange(0, 100)
                self.bar.setValue(int(100 * c.load_fraction))
        self.load.setVisible(state == "unloaded")
        self.cancel.setVisible(loading)
        self.cancel.setEnabled(not c.load_cancelling)
        self.unload.setVisible(state == "loaded")
        gpu = c.gpu_summary()
        self.gpu.setText(f"{c.model_detail} · {gpu}" if state == "loaded" and c.model_detail else gpu)
        d = c.download
        self.download.setVisible(d is not None)
        self.download_bar.setVisible(d is not None and d["status"] == "running")
        if d is not None:
            if d["status"] == "running":
                total = d["total"]
                if total and total > 50e6:
                    self.download.setText(f"Downloading {d['repo_id']}: {d['done'] / 1e9:.1f} of {total / 1e9:.1f} GB")
                else:
                    self.download.setText(f"Downloading {d['repo_id']}… {d['desc']}")
                if total:
                    self.download_bar.setRange(0, 1000)
                    self.download_bar.setValue(int(1000 * min(d["done"], total) / total))
                else:
                    self.download_bar.setRange(0, 0)
            else:
                self.download.setText(d["message"])

    def _settings_label(self) -> str:
        from ...app.caption_jobs import spec_label
        from ...captioning.models import ModelSpec
        from ..settings_access import load_settings

        s, _ = load_settings()
        try:
            lib = self.controller._lib()  # the adapter is the library's own
        except Exception:  # noqa: BLE001 - only the label's adapter part is lost
            lib = None
        try:
            return spec_label(ModelSpec.from_user_settings(s, lib))
        except ValueError as exc:
            return f"Settings need attention: {exc}"


class QueueDock(QDockWidget):
    def __init__(self, controller: "CaptioningController", parent: QWidget | None = None):
        super().__init__("Captioning", parent)
        self.controller = controller
        self.setObjectName("captioningQueueDock")  # for QMainWindow.saveState/restoreState
        body = QWidget(self)
        lay = QVBoxLayout(body)
        lay.setContentsMargins(6, 6, 6, 6)
        self.model_panel = ModelPanel(controller, body)
        lay.addWidget(self.model_panel)
        self.scroll = QScrollArea(body)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.list_widget = QWidget(self.scroll)
        self.list_layout = QVBoxLayout(self.list_widget)
        self.list_layout.setContentsMargins(0, 0, 0, 0)
        self.list_layout.setSpacing(6)
        self.empty = QLabel("No captioning jobs yet.\nSelect photos and choose “Caption…” to start one.",
                            self.list_widget)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setEnabled(False)
        self.list_layout.addWidget(self.empty)
        self.list_layout.addStretch(1)
        self.scroll.setWidget(self.list_widget)
        # Small minimum (QScrollArea's own is ~70 px): with no saved layout the dock then opens at about
        # the model row + a line of jobs instead of a third of the window; the jobs scroll, the user can
        # drag the dock taller.
        self._min_scroll = 2 * self.empty.fontMetrics().height() + 6
        self.scroll.setMinimumHeight(self._min_scroll)
        lay.addWidget(self.scroll, 1)
        footer = QHBoxLayout()
        footer.addStretch(1)
        self.clear = QPushButton("Clear finished", body)
        self.clear.clicked.connect(controller.clear_finished)
        footer.addWidget(self.clear)
        lay.addLayout(footer)
        body.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        body.setMinimumWidth(300)
        self.setWidget(body)
        self.cards: dict[int, JobCard] = {}
        self.index_card: IndexCard | None = None
        controller.jobs_changed.connect(self.rebuild)
        controller.job_changed.connect(self._job_changed)
        controller.model_changed.connect(self._refresh_all)
        # photos/min and "time left" move on even between photos
        self._tick = QTimer(self, interval=1000)
        self._tick.timeout.connect(self._refresh_running)
        self._tick.start()
        self.rebuild()

    def rebuild(self) -> None:
        jobs = self.controller.job_list()
        wanted = [v.id for v in jobs]
        for job_id in [j for j in self.cards if j not in wanted]:
            card = self.cards.pop(job_id)
            self.list_layout.removeWidget(card)
            card.deleteLater()
        for pos, job_id in enumerate(wanted):
            card = self.cards.get(job_id)
            if card is None:
                card = self.cards[job_id] = JobCard(self.controller, job_id, self.list_widget)
            if self.list_layout.indexOf(card) != pos + 1:
                self.list_layout.removeWidget(card)
                self.list_layout.insertWidget(pos + 1, card)  # after the "empty" label
        self.empty.setVisible(not wanted and not self._index_shown())
        self._set_clearable(any(v.status in ("done", "cancelled") for v in jobs))

    def add_index_controller(self, index: "IndexController") -> IndexCard:
        """Show the face-index job here too (below the captioning jobs)."""
        card = self.index_card = IndexCard(index, self.list_widget)
        self.list_layout.insertWidget(self.list_layout.count() - 1, card)   # before the stretch
        index.changed.connect(self._index_changed)
        card.height_changed.connect(self._fit_index_card)
        self._index_changed()
        return card

    def _fit_index_card(self) -> None:
        """While the index card is shown the scroll area is at least its height: at the dock's first-run
        (minimum) height the card would otherwise be cut off below its progress bar and need scrolling."""
        card = self.index_card
        need = self._min_scroll
        if card is not None and self._index_shown():
            width = max(card.width(), self.scroll.viewport().width(), 1)
            hint = card.heightForWidth(width) if card.hasHeightForWidth() else -1
            need = max(need, hint if hint > 0 else card.sizeHint().height())
        if self.scroll.minimumHeight() != need:
            self.scroll.setMinimumHeight(need)

    def _index_shown(self) -> bool:
        return self.index_card is not None and self.index_card.index.state != "idle"

    def _index_changed(self) -> None:
        self.empty.setVisible(not self.cards and not self._index_shown())
        self._fit_index_card()
        if self.index_card is not None and self.index_card.index.active and not self.isVisible():
            self.show()
            self.raise_()

    def _set_clearable(self, on: bool) -> None:
        # hidden (not just greyed out) while there is nothing to clear: its row is height the dock
        # would otherwise always need
        self.clear.setEnabled(on)
        self.clear.setVisible(on)

    def _job_changed(self, job_id: int) -> None:
        card = self.cards.get(job_id)
        if card is None:
            self.rebuild()
        else:
            card.refresh()
        v = self.controller.jobs.get(job_id)
        if v is not None and not v.active:
            self._set_clearable(any(j.status in ("done", "cancelled") for j in self.controller.jobs.values()))

    def _refresh_all(self) -> None:
        for card in self.cards.values():
            card.refresh()

    def _refresh_running(self) -> None:
        if not self.isVisible():
            return
        for job_id, card in self.cards.items():
            v = self.controller.jobs.get(job_id)
            if v is not None and v.status == "running":
                card.refresh()

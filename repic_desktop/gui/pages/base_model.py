"""Personalize's base model row: is the chosen model on this computer, and a Download button if not.

The download is the captioning controller's (`CaptioningController.download_model`, on a worker with
progress; `captioning.model_manager.download_model` underneath): one download at a time for the whole
window, shown here and in Settings alike, and it goes on if the user leaves the page. The "is it here?"
check is `model_manager.resolve_local`, which only looks at the local cache (never the network).
"""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

SIZE_HINTS = {"Yeongtak/RePIC_Qwen2.5VL_7B": "≈16 GB", "Qwen/Qwen2.5-VL-7B-Instruct": "≈16 GB"}


def _mb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


class BaseModelStatus(QWidget):
    """Under the base-model combo: "Not downloaded yet" + Download, then progress, then nothing."""

    changed = Signal()          # `missing` may have changed (the page re-checks Start Training)

    def __init__(self, combo: QComboBox, parent: QWidget | None = None):
        super().__init__(parent)
        self.combo = combo
        self.controller = None
        self.missing = False        # a hub id that is not (completely) in the cache
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        row = QHBoxLayout()
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.label, 1)
        self.button = QPushButton("Download", self)
        self.button.setToolTip("Download this model from the Hugging Face Hub into the model cache, in the "
                               "background (an interrupted download continues where it stopped)")
        self.button.clicked.connect(self.start)
        row.addWidget(self.button)
        lay.addLayout(row)
        self.bar = QProgressBar(self)
        self.bar.setMaximumHeight(10)
        self.bar.setTextVisible(False)
        lay.addWidget(self.bar)
        self._timer = QTimer(self, singleShot=True, interval=400)
        self._timer.timeout.connect(self.check)
        combo.currentTextChanged.connect(lambda _t: self._timer.start())
        self.check()

    def source(self) -> str:
        return self.combo.currentText().strip()

    def set_controller(self, controller) -> None:
        self.controller = controller
        if controller is not None and hasattr(controller, "download_changed"):
            controller.download_changed.connect(self.refresh)
        self.check()

    def _download(self) -> dict | None:
        d = getattr(self.controller, "download", None)
        return d if d is not None and d.get("repo_id") == self.source() and not d.get("use_for") else None

    def check(self) -> None:
        """Is the chosen model here? (cache lookup only)"""
        from ...captioning import model_manager as mm

        src = self.source()
        self.missing = False
        text = ""
        if src and not mm.is_local_path(src) and mm.looks_like_repo_id(src) and "/" in src:
            try:
                mm.resolve_local(src)
            except mm.ModelNotAvailable:
                self.missing = True
                size = SIZE_HINTS.get(src)
                text = f"Not downloaded yet{f' ({size})' if size else ''}."
        self.label.setText(text)
        self.refresh()
        self.changed.emit()

    def refresh(self) -> None:
        d = self._download()
        running = d is not None and d["status"] == "running"
        if d is not None and d["status"] == "done" and self.missing:
            self._timer.start(0)                    # downloaded: the model is here now (check again)
        elif d is not None and d["status"] == "failed":
            self.label.setText(f"Download failed: {d['message']}")
        elif running:
            total, done = d.get("total"), d.get("done") or 0
            self.label.setText(f"Downloading {self.source()}… {_mb(done)}" + (f" of {_mb(total)}" if total else ""))
            self.bar.setRange(0, 1000 if total else 0)
            if total:
                self.bar.setValue(int(1000 * min(done, total) / total))
        can_download = self.controller is not None and hasattr(self.controller, "download_model")
        self.button.setVisible(self.missing and not running and can_download)
        self.bar.setVisible(running)
        self.label.setVisible(bool(self.label.text()) and (self.missing or running))
        self.setVisible(self.missing or running)

    def start(self) -> bool:
        if self.controller is None:
            return False
        ok = self.controller.download_model(self.source())
        if not ok:
            self.label.setText("Another download is running: wait for it to finish.")
        self.refresh()
        return ok

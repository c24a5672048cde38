"""The About dialog: versions that matter for a bug report, the library in use, and the GPU torch finds
(looked up on a worker: importing torch takes seconds)."""
from __future__ import annotations

import platform

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QVBoxLayout

from ... import APP_NAME, __version__


def versions() -> list[tuple[str, str]]:
    """Versions that matter for a bug report. torch/transformers are read from package metadata, not
    imported (importing torch takes seconds)."""
    from importlib import metadata

    import PySide6
    from PySide6 import QtCore

    out = [(APP_NAME, __version__), ("Python", platform.python_version()),
           ("Qt / PySide6", f"{QtCore.qVersion()} / {PySide6.__version__}")]
    for dist in ("torch", "transformers", "bitsandbytes", "pillow"):
        try:
            out.append((dist, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            out.append((dist, "not installed"))
    import sqlite3
    out.append(("SQLite", sqlite3.sqlite_version))
    out.append(("System", f"{platform.system()} {platform.release()} ({platform.machine()})"))
    return out


def gpu_summary_slow() -> str:
    """What GPU torch finds (imports torch: call from a worker)."""
    from ...captioning.device import device_summary
    return device_summary()["summary"]


class AboutDialog(QDialog):
    def __init__(self, parent=None, gpu: str | None = None, tasks=None, library_path=None):
        super().__init__(parent)
        self.setWindowTitle(f"About {APP_NAME}")
        self.setMinimumWidth(520)
        lay = QVBoxLayout(self)
        head = QHBoxLayout()
        icon = QLabel()
        app_icon = QApplication.windowIcon()
        if not app_icon.isNull():
            icon.setPixmap(app_icon.pixmap(72, 72))
        title = QLabel(f"<h2>{APP_NAME} {__version__}</h2>"
                       "<p>Captions for your family photos that name your people and pets, made on your own "
                       "computer with RePIC (a personalized Qwen2.5-VL).</p>", wordWrap=True)
        head.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        head.addWidget(title, 1)
        lay.addLayout(head)
        rows = "".join(f"<tr><td style='padding-right:14px'><b>{k}</b></td><td>{v}</td></tr>" for k, v in versions())
        if library_path is not None:
            rows += f"<tr><td style='padding-right:14px'><b>Library</b></td><td>{library_path}</td></tr>"
        self.table = QLabel(f"<table>{rows}</table>")
        self.table.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.table)
        self.gpu = QLabel(f"<b>GPU:</b> {gpu}" if gpu else "<b>GPU:</b> checking…", wordWrap=True)
        self.gpu.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.gpu)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        bb.rejected.connect(self.reject)
        bb.accepted.connect(self.accept)
        lay.addWidget(bb)
        if gpu is None and tasks is not None:
            tasks.run(gpu_summary_slow, self._gpu, lambda m, d: self._gpu(f"unknown ({m})"))

    def _gpu(self, text: str) -> None:
        self.gpu.setText(f"<b>GPU:</b> {text}")

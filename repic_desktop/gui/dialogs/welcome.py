"""First-run welcome: add photos, add people & pets, choose the model (hub download / local folder / demo).

Shown once (`Settings.extra["welcome_done"]`). It is a window-modal but non-blocking dialog; the
actions it offers are the main window's own (`import_folder_dialog`, `show_people`, when it has them)
and the controller's (download, settings). Building the demo model and saving the settings run on
background threads.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup, QDialog, QDialogButtonBox, QFormLayout, QFrame, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
    QPushButton, QRadioButton, QVBoxLayout, QWidget,
)

from ...core.settings import DEFAULT_MODEL_SOURCE, Settings
from ...app.caption_jobs import demo_model_dir
from ..pages.layout import heading
from ..settings_access import load_settings
from .settings_tabs import HUB_MODEL_SIZE_TEXT, DownloadPanel, _folder_row

if TYPE_CHECKING:
    from ..captioning.controller import CaptioningController


def suggested_quantization(gpu_info: dict[str, Any] | None) -> str:
    """bf16 needs ≈17 GB with room to work, 8-bit ≈9 GB, 4-bit ≈6 GB (on the largest GPU found)."""
    devices = (gpu_info or {}).get("devices") or []
    if not (gpu_info or {}).get("cuda") or not devices:
        return "none"  # CPU: quantization is refused there anyway
    vram = max(d.get("total_gb", 0) for d in devices)
    return "none" if vram >= 24 else ("8bit" if vram >= 16 else "4bit")


def maybe_show_welcome(main_window: QWidget, controller: "CaptioningController") -> "WelcomeDialog | None":
    """Show the welcome on the first run only; returns the (open, non-blocking) dialog or None."""
    settings, _ = load_settings()
    if settings.extra.get("welcome_done"):
        return None
    lib = getattr(main_window, "lib", None)
    if lib is not None and lib.photos.count() > 0:
        return None     # someone already set this library up (another computer, the CLI): no first-run tour
    dlg = WelcomeDialog(main_window, controller)
    dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dlg.open()
    return dlg


class WelcomeDialog(QDialog):
    def __init__(self, main_window: QWidget | None, controller: "CaptioningController"):
        super().__init__(main_window)
        self.main_window, self.controller = main_window, controller
        self.setObjectName("welcomeDialog")
        self.setWindowTitle("Welcome to RePIC Desktop")
        self._touched = False
        lay = QVBoxLayout(self)
        lay.setSpacing(10)
        lay.addWidget(heading("Welcome to RePIC Desktop", 1.6, self))
        intro = QLabel("RePIC writes captions for your photos that name the people and pets you know — for "
                       "example “&lt;Anya&gt; and her dog &lt;Bond&gt; at the beach”. Three steps to start:", self)
        intro.setWordWrap(True)
        intro.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(intro)

        self.photos_button = self._step(lay, "1. Add your photos",
                                        "Pick a folder; its photos are indexed, never moved or changed.",
                                        "Add a photo folder…", "import_folder_dialog")
        self.people_button = self._step(lay, "2. Tell it who is who",
                                        "Name the people and pets and give each a reference photo.",
                                        "Add people && pets…", "show_people")

        lay.addWidget(heading("3. Choose the captioning model", parent=self))
        box = QGroupBox(self)
        bl = QVBoxLayout(box)
        self.gpu = QLabel(box)
        self.gpu.setWordWrap(True)
        bl.addWidget(self.gpu)
        self.group = QButtonGroup(self)
        self.source_hub = QRadioButton(f"RePIC 7B from the Hugging Face hub — {HUB_MODEL_SIZE_TEXT} download", box)
        self.source_local = QRadioButton("A model folder on this computer", box)
        self.source_demo = QRadioButton("Demo model — only shows how the app works: its captions are random noise",
                                        box)
        for i, b in enumerate((self.source_hub, self.source_local, self.source_demo)):
            self.group.addButton(b, i)
            b.clicked.connect(self._user_choice)
        bl.addWidget(self.source_hub)
        hub = QWidget(box)
        hl = QFormLayout(hub)
        hl.setContentsMargins(24, 0, 0, 0)
        settings, _ = load_settings()
        self.cache_dir = QLineEdit(settings.model.cache_dir or "", hub)
        self.cache_dir.setPlaceholderText("the Hugging Face cache (~/.cache/huggingface/hub)")
        hl.addRow("Save it in:", _folder_row(self.cache_dir, "Folder for the downloaded model", hub))
        self.download = DownloadPanel(controller, lambda: (DEFAULT_MODEL_SOURCE, None, self.cache_dir.text().strip() or None),
                                      hub)
        self.download.button.setText("Download now")
        hl.addRow("", self.download)
        self.quant_note = QLabel(hub)
        self.quant_note.setWordWrap(True)
        hl.addRow("", self.quant_note)
        bl.addWidget(hub)
        self.hub_area = hub
        bl.addWidget(self.source_local)
        local = QWidget(box)
        ll = QFormLayout(local)
        ll.setContentsMargins(24, 0, 0, 0)
        self.local_path = QLineEdit(local)
        self.local_path.setPlaceholderText("folder with config.json and *.safetensors")
        ll.addRow("Folder:", _folder_row(self.local_path, "Model folder", local))
        bl.addWidget(local)
        self.local_area = local
        bl.addWidget(self.source_demo)
        demo_note = QLabel("No download; ready in 10-20 seconds (loading PyTorch takes most of it) and runs on any computer. "
                           "Use it to look around, "
                           "then switch to RePIC 7B in Settings for real captions.", box)
        demo_note.setWordWrap(True)
        demo_note.setContentsMargins(24, 0, 0, 0)
        demo_note.setEnabled(False)
        bl.addWidget(demo_note)
        lay.addWidget(box)
        self.group.idToggled.connect(lambda *_: self._update())

        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.buttons = QDialogButtonBox(self)
        self.start = self.buttons.addButton("Start", QDialogButtonBox.ButtonRole.AcceptRole)
        self.skip = self.buttons.addButton("Skip for now", QDialogButtonBox.ButtonRole.RejectRole)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)
        controller.model_changed.connect(self._gpu_changed)
        self._gpu_changed()
        self.resize(600, self.sizeHint().height())

    def _step(self, lay: QVBoxLayout, title: str, text: str, button: str, method: str) -> QPushButton:
        frame = QFrame(self)
        row = QHBoxLayout(frame)
        row.setContentsMargins(0, 0, 0, 0)
        col = QVBoxLayout()
        col.addWidget(heading(title, parent=frame))
        d = QLabel(text, frame)
        d.setWordWrap(True)
        col.addWidget(d)
        row.addLayout(col, 1)
        b = QPushButton(button, frame)
        action = getattr(self.main_window, method, None)
        if callable(action):
            def run() -> None:
                action()
                b.setText("✓ " + button.rstrip("…"))
            b.clicked.connect(run)
        else:
            b.setEnabled(False)
            b.setToolTip("Available from the main window")
        row.addWidget(b)
        lay.addWidget(frame)
        return b

    # ------------------------------------------------------------------------------------------------
    def _user_choice(self) -> None:
        self._touched = True

    def _gpu_changed(self) -> None:
        info = self.controller.gpu_info
        if info is None:
            self.gpu.setText("Checking for an NVIDIA GPU…")
        elif info.get("cuda"):
            names = ", ".join(f"{d['name']} ({d['total_gb']:g} GB)" for d in info.get("devices", []))
            self.gpu.setText(f"GPU found: {names}.")
        else:
            self.gpu.setText("<b>No NVIDIA GPU was found.</b> RePIC 7B can still run on the CPU, but slowly "
                             "(minutes per photo). The demo model is a good way to look around first.")
        if not self._touched:
            (self.source_hub if info and info.get("cuda") else self.source_demo).setChecked(True)
        self._update()

    def _update(self) -> None:
        self.hub_area.setEnabled(self.source_hub.isChecked())
        self.local_area.setEnabled(self.source_local.isChecked())
        q = suggested_quantization(self.controller.gpu_info)
        self.quant_note.setText({"none": "", "8bit": "Your GPU memory suits 8-bit quantization (≈9 GB): it will be used.",
                                 "4bit": "Your GPU memory suits 4-bit quantization (≈6 GB): it will be used."}[q])
        self.quant_note.setVisible(q != "none")

    def choice(self) -> str:
        return "hub" if self.source_hub.isChecked() else ("local" if self.source_local.isChecked() else "demo")

    def _settings(self) -> Settings:
        s, _ = load_settings()
        s = copy.deepcopy(s)
        s.extra["welcome_done"] = True
        choice = self.choice()
        if choice == "hub":
            s.model.source = DEFAULT_MODEL_SOURCE
            s.model.revision = None
            s.model.cache_dir = self.cache_dir.text().strip() or None
            s.model.quantization = suggested_quantization(self.controller.gpu_info)
        elif choice == "local":
            folder = Path(self.local_path.text().strip()).expanduser()
            if not self.local_path.text().strip():
                raise ValueError("Choose the model folder first.")
            if not (folder / "config.json").is_file():
                raise ValueError(f"{folder} is not a model folder (it has no config.json).")
            s.model.source = str(folder)
            s.model.revision = None
        else:
            s.model.source = str(demo_model_dir())
            s.model.revision = None
            s.model.adapter = None
            s.model.quantization = "none"
        return s

    def accept(self) -> None:
        try:
            settings = self._settings()
        except ValueError as exc:
            self.status.setText(f"<span style='color:#d9534f'>{exc}</span>")
            return
        demo = self.choice() == "demo"
        self.start.setEnabled(False)
        self.status.setText("Preparing the demo model…" if demo else "Saving…")

        def work():
            if demo:
                from ...captioning.demo_model import build_demo_model, is_demo_model

                folder = demo_model_dir()
                if not is_demo_model(folder):
                    build_demo_model(folder)
            return settings.save()

        def done(_path) -> None:
            self.controller.settings_changed.emit()
            QDialog.accept(self)

        def failed(message: str, _details: str) -> None:
            self.start.setEnabled(True)
            self.status.setText(f"<span style='color:#d9534f'>Could not finish: {message}</span>")

        self.controller.tasks.run(work, done, failed, name="repic-welcome")

    def reject(self) -> None:
        """"Skip for now": do not show the welcome again (everything is in the menus and Settings)."""
        settings, _ = load_settings()
        settings.extra["welcome_done"] = True
        self.controller.tasks.run(settings.save, None, lambda *_: None, name="repic-welcome-skip")
        QDialog.reject(self)

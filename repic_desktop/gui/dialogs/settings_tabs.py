"""The Settings dialog's tabs (model, performance, prompt, suggestions, server): how each is laid out. A mixin
of SettingsDialog (settings.py), split off by size: the builders set the widgets the dialog reads back.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QAbstractItemView, QButtonGroup, QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox,
    QHBoxLayout, QHeaderView, QLabel, QLineEdit, QProgressBar, QPushButton, QRadioButton, QSpinBox,
    QTableWidget, QVBoxLayout, QWidget,
)

from ...captioning.prompt import REQUEST_PRESETS, SYSTEM_PROMPTS
from ...core.settings import DEFAULT_MODEL_SOURCE, Settings
from ..settings_access import model_choice
from .files import choose_folder

if TYPE_CHECKING:
    from ..captioning.controller import CaptioningController


HUB_MODEL_SIZE_TEXT = "≈16 GB"
TOKEN_PIXELS = 28 * 28  # one visual token = one 28x28 block
QUANT_CHOICES = [("none", "None — bfloat16 (≈16 GB of GPU memory)"), ("8bit", "8-bit (≈9 GB)"),
                 ("4bit", "4-bit (≈6 GB; best for 8–12 GB cards)")]
ATTENTION_CHOICES = [("auto", "Auto (flash-attention 2 when installed, else SDPA)"),
                     ("flash_attention_2", "Flash-attention 2"), ("sdpa", "SDPA (PyTorch)")]


def _folder_row(edit: QLineEdit, title: str, parent: QWidget) -> QWidget:
    w = QWidget(parent)
    row = QHBoxLayout(w)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(edit, 1)
    b = QPushButton("Browse…", w)

    def pick() -> None:
        start = edit.text().strip() or str(Path.home())
        folder = choose_folder(parent, title, os.path.expanduser(start))
        if folder:
            edit.setText(folder)

    b.clicked.connect(pick)
    row.addWidget(b)
    return w


def _combo(choices: list[tuple[str, str]], current: str, parent: QWidget) -> QComboBox:
    c = QComboBox(parent)
    for value, label in choices:
        c.addItem(label, value)
    i = c.findData(current)
    c.setCurrentIndex(max(i, 0))
    return c


class DownloadPanel(QWidget):
    """"Download model" button, progress and status; the download itself belongs to the controller.

    The controller runs one download at a time; a panel shows progress only for its own target (repo and
    use_for), and otherwise just disables its button while another download runs."""

    def __init__(self, controller: "CaptioningController", get_target, parent: QWidget | None = None, *,
                 use_for: str | None = None, button_text: str = "Download model"):
        super().__init__(parent)
        self.controller = controller
        self._get_target = get_target  # -> (repo_id, revision, cache_dir)
        self.use_for = use_for
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.button = QPushButton(button_text, self)
        self.button.setToolTip("Fetch the model into the cache folder (resumable: an interrupted download "
                               "continues where it stopped). Only safetensors weights and configs are fetched.")
        self.button.clicked.connect(self.start)
        row.addWidget(self.button)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.status, 1)
        lay.addLayout(row)
        self.bar = QProgressBar(self)
        self.bar.setVisible(False)
        lay.addWidget(self.bar)
        controller.download_changed.connect(self.refresh)
        self.refresh()

    def start(self) -> None:
        repo, revision, cache = self._get_target()
        if self.use_for:
            self.controller.download_model(repo, revision, cache, use_for=self.use_for)
        else:
            self.controller.download_model(repo, revision, cache)
        self.refresh()

    def _mine(self, d: dict | None) -> bool:
        return d is not None and d["repo_id"] == self._get_target()[0] and d.get("use_for") == self.use_for

    def show_cached(self, text: str) -> None:
        """The cache check's answer, unless a download of this model has something newer to say."""
        d = self.controller.download
        if not self._mine(d) or d["status"] == "done":
            self.status.setText(text)

    def refresh(self) -> None:
        d = self.controller.download
        running = d is not None and d["status"] == "running"
        self.button.setEnabled(not running)
        self.bar.setVisible(running and self._mine(d))
        if not self._mine(d):
            return
        if running:
            done, total = d["done"], d["total"]
            if total:
                scale = 1e9 if total > 50e6 else (1e6 if total > 50e3 else 1)
                unit = {1e9: "GB", 1e6: "MB", 1: ""}[scale]
                self.bar.setRange(0, 1000)
                self.bar.setValue(int(1000 * min(done, total) / total))
                self.bar.setFormat(f"{done / scale:.1f} / {total / scale:.1f} {unit}".strip() if scale != 1
                                   else f"{done} / {total}")
            else:
                self.bar.setRange(0, 0)
            self.status.setText(f"Downloading {d['repo_id']}… {d['desc']}")
        elif d["status"] == "done":
            self.status.setText(f"Downloaded {d['repo_id']}.")
        else:
            self.status.setText(d["message"])


class SettingsTabs:
    """The tabs of SettingsDialog, one builder each; the dialog keeps the values, checks and saving."""

    # tabs --------------------------------------------------------------------------------------------
    def _model_tab(self, s: Settings) -> QWidget:
        page = QWidget(self)
        lay = QVBoxLayout(page)
        box = QGroupBox("Model source", page)
        form = QVBoxLayout(box)
        self.source_group = QButtonGroup(self)
        self.source_hub = QRadioButton(f"RePIC 7B (or another Qwen2.5-VL) from the Hugging Face hub — "
                                       f"{HUB_MODEL_SIZE_TEXT} download", box)
        self.source_local = QRadioButton("A model folder on this computer", box)
        self.source_demo = QRadioButton("Demo model — shows how the app works; its captions are random noise", box)
        for i, b in enumerate((self.source_hub, self.source_local, self.source_demo)):
            self.source_group.addButton(b, i)
        choice = model_choice(s)
        src = s.model.source or DEFAULT_MODEL_SOURCE
        self.hub_id = QLineEdit(src if choice == "hub" else DEFAULT_MODEL_SOURCE, box)
        self.hub_id.setPlaceholderText(DEFAULT_MODEL_SOURCE)
        self.local_path = QLineEdit(src if choice == "local" else "", box)
        self.local_path.setPlaceholderText("folder with config.json and *.safetensors")
        form.addWidget(self.source_hub)
        hub_row = QFormLayout()
        hub_row.setContentsMargins(24, 0, 0, 0)
        hub_row.addRow("Model id:", self.hub_id)
        self.revision = QLineEdit(s.model.revision or "", box)
        self.revision.setPlaceholderText("latest (main)")
        hub_row.addRow("Revision:", self.revision)
        self.cache_dir = QLineEdit(s.model.cache_dir or "", box)
        self.cache_dir.setPlaceholderText("the Hugging Face cache (~/.cache/huggingface/hub)")
        hub_row.addRow("Cache folder:", _folder_row(self.cache_dir, "Cache folder for downloaded models", box))
        self.download = DownloadPanel(self.controller, self._download_target, box)
        hub_row.addRow("", self.download)
        form.addLayout(hub_row)
        form.addWidget(self.source_local)
        local_row = QFormLayout()
        local_row.setContentsMargins(24, 0, 0, 0)
        local_row.addRow("Folder:", _folder_row(self.local_path, "Model folder", box))
        form.addLayout(local_row)
        form.addWidget(self.source_demo)
        demo_note = QLabel("A tiny random model: no download, ready in 10-20 seconds (loading PyTorch takes most of it), runs on "
                           "any computer. "
                           "Use it to try every screen; use RePIC 7B for real captions.", box)
        demo_note.setWordWrap(True)
        demo_note.setContentsMargins(24, 0, 0, 0)
        demo_note.setEnabled(False)
        form.addWidget(demo_note)
        {"hub": self.source_hub, "local": self.source_local, "demo": self.source_demo}[choice].setChecked(True)
        self.source_group.idToggled.connect(lambda *_: self._update_enabled())
        lay.addWidget(box)

        box2 = QGroupBox("Adapter", page)
        f2 = QFormLayout(box2)
        lib = self._library()
        self.adapter = QLineEdit((s.active_adapter(lib) if lib is not None else s.model.adapter) or "", box2)
        self.adapter.setPlaceholderText("none — optional LoRA adapter folder, applied unmerged")
        self.adapter.setToolTip("The adapter of this library only: another library never captions with it.")
        f2.addRow("LoRA adapter:", _folder_row(self.adapter, "LoRA adapter folder", box2))
        lay.addWidget(box2)
        lay.addStretch(1)
        return page

    def _performance_tab(self, s: Settings) -> QWidget:
        page = QWidget(self)
        form = QFormLayout(page)
        self.quantization = _combo(QUANT_CHOICES, s.model.quantization, page)
        form.addRow("Quantization:", self.quantization)
        self.device = QComboBox(page)
        self.device.setEditable(True)
        devices = ["auto", "cpu", "cuda"]
        info = self.controller.gpu_info or {}
        devices += [f"cuda:{d['index']}" for d in info.get("devices", [])]
        self.device.addItems(devices)
        self.device.setCurrentText(s.model.device or "auto")
        self.device.setToolTip("auto = the first NVIDIA GPU when there is one, else the CPU")
        form.addRow("Device:", self.device)
        self.attention = _combo(ATTENTION_CHOICES, s.caption_default("attention"), page)
        form.addRow("Attention:", self.attention)
        self.batch_size = QSpinBox(page)
        self.batch_size.setRange(1, 64)
        self.batch_size.setValue(int(s.caption_default("batch_size")))
        self.batch_size.setToolTip("Photos captioned together. Larger is faster on a big GPU; on out-of-memory "
                                   "the app halves it by itself.")
        form.addRow("Batch size:", self.batch_size)
        self.max_tokens = QSpinBox(page)
        self.max_tokens.setRange(4, 16384)
        self.max_tokens.setSingleStep(64)
        self.max_tokens.setSuffix(" visual tokens")
        self.max_tokens.setValue(max(4, int(s.caption_default("max_pixels")) // TOKEN_PIXELS))
        self.pixels_note = QLabel(page)
        self.max_tokens.valueChanged.connect(self._update_pixels_note)
        self._update_pixels_note()
        pix = QWidget(page)
        pl = QHBoxLayout(pix)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(self.max_tokens)
        pl.addWidget(self.pixels_note, 1)
        form.addRow("Pixel limit per image:", pix)
        self.max_new_tokens = QSpinBox(page)
        self.max_new_tokens.setRange(16, 4096)
        self.max_new_tokens.setValue(int(s.caption_default("max_new_tokens")))
        self.max_new_tokens.setSuffix(" tokens")
        self.max_new_tokens.setToolTip("Longest caption, in tokens (RePIC: 1024). The demo model stops at 32.")
        form.addRow("Longest caption:", self.max_new_tokens)
        return page

    def _prompt_tab(self, s: Settings) -> QWidget:
        page = QWidget(self)
        lay = QVBoxLayout(page)
        form = QFormLayout()
        self.system_preset = QComboBox(page)
        for name, text in SYSTEM_PROMPTS.items():
            self.system_preset.addItem(name, name)
            self.system_preset.setItemData(self.system_preset.count() - 1, text, Qt.ItemDataRole.ToolTipRole)
        self.system_preset.setCurrentIndex(max(0, self.system_preset.findData(s.caption_default("system_preset"))))
        form.addRow("System prompt:", self.system_preset)
        self.system_text = QLabel(page)
        self.system_text.setWordWrap(True)
        self.system_text.setEnabled(False)
        self.system_preset.currentIndexChanged.connect(
            lambda *_: self.system_text.setText(SYSTEM_PROMPTS[self.system_preset.currentData()]))
        self.system_text.setText(SYSTEM_PROMPTS[self.system_preset.currentData()])
        form.addRow("", self.system_text)
        self.request_preset = QComboBox(page)
        form.addRow("Default request:", self.request_preset)
        lay.addLayout(form)
        lay.addWidget(QLabel("Request presets (the built-in ones are RePIC's; add your own below):", page))
        self.presets = QTableWidget(0, 2, page)
        self.presets.setHorizontalHeaderLabels(["Name", "Request text"])
        self.presets.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.presets.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.presets.verticalHeader().setVisible(False)
        self.presets.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        for name, text in REQUEST_PRESETS.items():
            self._add_preset_row(name, text, builtin=True)
        user = s.caption_default("request_presets")
        for name, text in (user.items() if isinstance(user, dict) else []):
            self._add_preset_row(name, text, builtin=False)
        self.presets.itemChanged.connect(lambda *_: self._fill_request_combo())
        lay.addWidget(self.presets, 1)
        row = QHBoxLayout()
        add = QPushButton("Add preset", page)
        add.clicked.connect(self._new_preset)
        self.remove_preset = QPushButton("Remove", page)
        self.remove_preset.clicked.connect(self._remove_selected_preset)
        row.addWidget(add)
        row.addWidget(self.remove_preset)
        row.addStretch(1)
        lay.addLayout(row)
        self._fill_request_combo(s.caption_default("request_preset"))
        return page

    def _suggestions_tab(self, s: Settings) -> QWidget:
        from ...retrieval.registry import DEFAULT_MATCHER, MATCHER_MODELS, MATCHERS
        from ...retrieval.service import retrieval_settings

        cfg = retrieval_settings(s)
        page = QWidget(self)
        lay = QVBoxLayout(page)
        form = QFormLayout()
        self.default_matcher = QComboBox(page)
        for mid, info in MATCHERS.items():
            self.default_matcher.addItem(info.label, mid)
        self.default_matcher.setCurrentIndex(max(0, self.default_matcher.findData(
            cfg.get("default_matcher") or DEFAULT_MATCHER)))
        form.addRow("Matcher:", self.default_matcher)
        self.matcher_status = QLabel("Checking which matchers can run…", page)
        self.matcher_status.setWordWrap(True)
        self.matcher_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("", self.matcher_status)
        self.matcher_info: list[dict[str, Any]] | None = None
        self._matcher_seq = 0
        self._matcher_timer = QTimer(self, singleShot=True, interval=300)
        self._matcher_timer.timeout.connect(self._check_matchers)
        self.default_matcher.currentIndexChanged.connect(lambda *_: self._show_matchers())
        self.matcher_dirs: dict[str, QLineEdit] = {}
        self.matcher_downloads: dict[str, DownloadPanel] = {}
        for use, m in MATCHER_MODELS.items():
            edit = QLineEdit(cfg.get(m.settings_key) or "", page)
            edit.setPlaceholderText(f"not set: download {m.default_id} or choose a folder")
            edit.textChanged.connect(lambda *_: self._matcher_timer.start())
            self.matcher_dirs[use] = edit
            form.addRow(f"{m.label}:", _folder_row(edit, f"{m.label} model folder", page))
            target = (lambda m=m: (m.default_id, None, self.cache_dir.text().strip() or None))
            panel = DownloadPanel(self.controller, target, page, use_for=use, button_text=f"Download {m.default_id}")
            panel.button.setToolTip(f"Fetch {m.default_id} (safetensors and configs only, resumable) into the "
                                    f"cache folder of the Model tab, then use it here.")
            self.matcher_downloads[use] = panel
            form.addRow("", panel)
        self.threshold = QDoubleSpinBox(page)
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setDecimals(3)
        self.threshold.setSingleStep(0.01)
        self.threshold.setSpecialValueText("the matcher's own")
        thr = cfg.get("threshold")
        self.threshold.setValue(float(thr) if isinstance(thr, (int, float)) else 0.0)
        self.threshold.setToolTip("Cosine similarity a match needs, for the chosen matcher only (each matcher's "
                                  "own: faces 0.909, dlib's identity rule; CLIP 0.80; DINOv2 0.60). Used by "
                                  "indexing, Find people and captioning; a change re-matches on the next index.")
        form.addRow("Threshold:", self.threshold)
        self.top_k = QSpinBox(page)
        self.top_k.setRange(0, 50)
        self.top_k.setSpecialValueText("default")
        k = cfg.get("top_k")
        self.top_k.setValue(int(k) if isinstance(k, int) and k > 0 else 0)
        self.top_k.setToolTip("At most this many people & pets suggested per photo (RePIC: top-K retrieval).")
        form.addRow("Top K:", self.top_k)
        lay.addLayout(form)
        self.auto_include = QCheckBox("When captioning, also use unconfirmed suggestions above the threshold", page)
        self.auto_include.setChecked(bool(cfg.get("auto_include_suggestions")))
        self.auto_include.setToolTip("Off: only the people & pets you tagged or confirmed go into the prompt.")
        lay.addWidget(self.auto_include)
        note = QLabel("Cats are only hinted by a simple cat-face detector: a weak hint (\u201ca cat was seen\u201d) "
                      "that names no one and never goes into a caption by itself.", page)
        note.setWordWrap(True)
        note.setEnabled(False)
        lay.addWidget(note)
        lay.addStretch(1)
        self.controller.download_changed.connect(self._on_matcher_download)
        return page

    def _server_tab(self, s: Settings) -> QWidget:
        """A caption server (vLLM or `repic serve`): photos are sent there instead of captioned here."""
        from ...captioning.remote import server_settings

        cfg = server_settings(s)
        page = QWidget(self)
        form = QFormLayout(page)
        note = QLabel("Caption on a GPU server (vLLM, or `repic serve` on another computer) instead of this "
                      "computer. When a URL is set, the photos of new caption jobs are SENT to that server. "
                      "The API key is read from the REPIC_API_KEY variable or the system keyring "
                      "(`repic server set-key URL`), never stored here.", page)
        note.setWordWrap(True)
        form.addRow(note)
        self.server_url = QLineEdit(cfg["url"] or "", page)
        self.server_url.setObjectName("serverUrl")
        self.server_url.setPlaceholderText("empty: caption on this computer; e.g. https://gpu-box:8000")
        form.addRow("Server URL:", self.server_url)
        self.served_model = QLineEdit(cfg["served_model"] or "", page)
        self.served_model.setPlaceholderText("empty: the only model the server serves")
        form.addRow("Served model:", self.served_model)
        self.ca_file = QLineEdit(cfg["ca_file"] or "", page)
        self.ca_file.setPlaceholderText("empty: the system's certificate authorities")
        form.addRow("CA file:", self.ca_file)
        self.allow_http = QCheckBox("Allow plain http to another computer (photos travel unencrypted)", page)
        self.allow_http.setChecked(cfg["allow_http"])
        form.addRow("", self.allow_http)
        self.test_server = QPushButton("Test connection", page)
        self.test_server.setObjectName("testServer")
        self.test_server.clicked.connect(self._test_server)
        form.addRow("", self.test_server)
        self.server_result = QLabel("", page)
        self.server_result.setObjectName("serverResult")
        self.server_result.setWordWrap(True)
        self.server_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("", self.server_result)
        return page

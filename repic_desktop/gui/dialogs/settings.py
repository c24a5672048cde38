"""Captioning settings: which model (hub / local folder / demo), how to run it, the prompt presets, and
the "who is in this photo?" suggestions (matcher, its weights, threshold, whether captions use them).

Stored per user in the platform config dir through `core.settings.Settings` (the same file the CLI
reads): the model fields in `Settings.model`, everything else under `Settings.extra` with the keys in
`core.settings.CAPTION_DEFAULTS`, the suggestions under `Settings.extra["retrieval"]` (read by
`retrieval.service.retrieval_settings`). Saving (a file write with fsync), the "is it downloaded?" check
(cache scan) and the matchers' readiness check (it looks at folders) run on background threads; downloads
go through the controller, which keeps them going after the dialog closes. Reading the settings
(`load_settings`, the model spec, the presets) is `gui/settings_access.py`'s.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QButtonGroup, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox,
    QFormLayout, QGroupBox,
    QHBoxLayout, QHeaderView, QLabel, QLineEdit, QProgressBar, QPushButton, QRadioButton, QSpinBox, QTabWidget,
    QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from ...captioning.models import DEFAULT_MAX_PIXELS
from ...captioning.prompt import REQUEST_PRESETS, SYSTEM_PROMPTS, PromptError, check_user_text
from ...core.settings import DEFAULT_MODEL_SOURCE, Settings
from ..captioning.model_worker import demo_model_dir
from ..settings_access import extra, load_settings, model_choice, model_spec_from_settings
from .files import choose_folder

if TYPE_CHECKING:
    from ..captioning.controller import CaptioningController

HUB_MODEL_SIZE_TEXT = "≈16 GB"
TOKEN_PIXELS = 28 * 28  # one visual token = one 28x28 block

QUANT_CHOICES = [("none", "None — bfloat16 (≈16 GB of GPU memory)"), ("8bit", "8-bit (≈9 GB)"),
                 ("4bit", "4-bit (≈6 GB; best for 8–12 GB cards)")]
ATTENTION_CHOICES = [("auto", "Auto (flash-attention 2 when installed, else SDPA)"),
                     ("flash_attention_2", "Flash-attention 2"), ("sdpa", "SDPA (PyTorch)")]


# ------------------------------------------------------------------------------------------------------
# small widgets
# ------------------------------------------------------------------------------------------------------

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


# ------------------------------------------------------------------------------------------------------
# the dialog
# ------------------------------------------------------------------------------------------------------

class SettingsDialog(QDialog):
    saved = Signal()

    def __init__(self, controller: "CaptioningController", parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = controller
        self.setWindowTitle("Captioning settings")
        self.setObjectName("captioningSettingsDialog")
        self.settings, load_error = load_settings()
        s = self.settings
        lay = QVBoxLayout(self)
        tabs = QTabWidget(self)
        self.tabs = tabs
        lay.addWidget(tabs)
        tabs.addTab(self._model_tab(s), "Model")
        tabs.addTab(self._performance_tab(s), "Performance")
        tabs.addTab(self._prompt_tab(s), "Prompt")
        tabs.addTab(self._suggestions_tab(s), "Suggestions")
        from .appearance import AppearanceTab
        self.appearance = AppearanceTab(self)
        tabs.addTab(self.appearance, "Appearance")
        tabs.addTab(self._server_tab(s), "Server")
        self.error_label = QLabel(load_error or "", self)
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: palette(highlight); font-weight: 600;" if not load_error else
                                       "color: #d9534f; font-weight: 600;")
        self.error_label.setVisible(bool(load_error))
        lay.addWidget(self.error_label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel,
                                   self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.buttons = buttons
        lay.addWidget(buttons)
        self.resize(640, 560)
        self._check_timer = QTimer(self, singleShot=True, interval=400)
        self._check_timer.timeout.connect(self._check_cached)
        for e in (self.hub_id, self.revision, self.cache_dir):
            e.textChanged.connect(lambda *_: self._check_timer.start())
        self._update_enabled()
        self._check_timer.start(0)
        self._matcher_timer.start(0)

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

    def _library(self):
        """The controller's library (None when it cannot be opened)."""
        try:
            return self.controller._lib()
        except Exception:  # noqa: BLE001 - a library that cannot open only loses the adapter row's scope
            return None

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
        self.attention = _combo(ATTENTION_CHOICES, extra(s, "attention"), page)
        form.addRow("Attention:", self.attention)
        self.batch_size = QSpinBox(page)
        self.batch_size.setRange(1, 64)
        self.batch_size.setValue(int(extra(s, "batch_size")))
        self.batch_size.setToolTip("Photos captioned together. Larger is faster on a big GPU; on out-of-memory "
                                   "the app halves it by itself.")
        form.addRow("Batch size:", self.batch_size)
        self.max_tokens = QSpinBox(page)
        self.max_tokens.setRange(4, 16384)
        self.max_tokens.setSingleStep(64)
        self.max_tokens.setSuffix(" visual tokens")
        self.max_tokens.setValue(max(4, int(extra(s, "max_pixels")) // TOKEN_PIXELS))
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
        self.max_new_tokens.setValue(int(extra(s, "max_new_tokens")))
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
        self.system_preset.setCurrentIndex(max(0, self.system_preset.findData(extra(s, "system_preset"))))
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
        user = extra(s, "request_presets")
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
        self._fill_request_combo(extra(s, "request_preset"))
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

    def _retrieval_values(self) -> dict[str, Any]:
        """Settings.extra["retrieval"] as edited; keys this dialog does not show are kept."""
        from ...retrieval.registry import MATCHER_MODELS
        from ...retrieval.service import retrieval_settings

        r = retrieval_settings(self.settings)
        for use, m in MATCHER_MODELS.items():
            folder = self.matcher_dirs[use].text().strip()
            if folder:
                r[m.settings_key] = folder
            else:
                r.pop(m.settings_key, None)
        r["default_matcher"] = self.default_matcher.currentData()
        r["auto_include_suggestions"] = self.auto_include.isChecked()
        thr = round(self.threshold.value(), 3)
        if thr > 0:
            r["threshold"] = thr
        else:
            r.pop("threshold", None)
        if self.top_k.value() > 0:
            r["top_k"] = self.top_k.value()
        else:
            r.pop("top_k", None)
        return r

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

    def _server_values(self) -> dict[str, Any]:
        from ...captioning.remote import RemoteError, ServerAddress

        url = self.server_url.text().strip()
        if url:
            try:
                url = ServerAddress.parse(url, allow_http=self.allow_http.isChecked()).url
            except RemoteError as exc:
                raise ValueError(str(exc)) from None
        ca = self.ca_file.text().strip()
        if ca and not Path(ca).expanduser().is_file():
            raise ValueError(f"The CA file {ca} does not exist (Server tab).")
        out = dict(self.settings.extra.get("server") or {})
        out.update(url=url or None, served_model=self.served_model.text().strip() or None, ca_file=ca or None,
                   allow_http=self.allow_http.isChecked())
        return out

    def _test_server(self) -> None:
        """`repic server test` for the URL as typed, off the GUI thread (it waits on the network)."""
        from ...captioning.remote import RemoteOptions, test_connection

        try:
            cfg = self._server_values()
        except ValueError as exc:
            self.server_result.setText(str(exc))
            return
        if not cfg["url"]:
            self.server_result.setText("No server URL: photos are captioned on this computer.")
            return
        options = RemoteOptions(servers=[cfg["url"]], served_model=cfg["served_model"], ca_file=cfg["ca_file"],
                                allow_http=cfg["allow_http"], timeout=30.0)
        hint = self.settings.model.source
        self.test_server.setEnabled(False)
        self.server_result.setText("Testing…")

        def check():
            tokenizer = None
            try:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(hint, local_files_only=True)
            except Exception:
                pass
            return test_connection(options, tokenizer=tokenizer, model_hint=hint)

        def done(reports) -> None:
            self.test_server.setEnabled(True)
            self.server_result.setText("\n".join(
                [f"{r.url}: {'OK' if r.ok else 'FAILED'}" for r in reports] + [ln for r in reports for ln in r.lines]))

        def failed(message: str, _details: str) -> None:
            self.test_server.setEnabled(True)
            self.server_result.setText(f"The test failed: {message}")

        self.controller.tasks.run(check, done, failed, name="repic-server-test")

    def _check_matchers(self) -> None:
        """Which matchers can run with the folders as typed (off the GUI thread: it looks at folders)."""
        from types import SimpleNamespace

        self._matcher_seq += 1
        seq = self._matcher_seq
        probe = SimpleNamespace(extra={"retrieval": self._retrieval_values()})

        def check():
            from ...retrieval.service import available_matchers

            return available_matchers(probe)

        def done(infos) -> None:
            if seq == self._matcher_seq:  # an older check finishing late says nothing about the current text
                self.matcher_info = infos
                self._show_matchers()

        self.controller.tasks.run(check, done, lambda *_: None, name="repic-matcher-check")

    def _show_matchers(self) -> None:
        if self.matcher_info is None:
            return
        lines = []
        for info in self.matcher_info:
            i = self.default_matcher.findData(info["id"])
            if i >= 0:
                self.default_matcher.setItemText(i, info["name"] + ("" if info["ready"] else " — not ready"))
                self.default_matcher.setItemData(i, info["why"] or info.get("note") or "ready",
                                                 Qt.ItemDataRole.ToolTipRole)
            if info["ready"]:
                lines.append(f"✓ {info['name']}: ready" + (f" ({info['note']})" if info.get("note") else ""))
            else:
                lines.append(f"✗ {info['name']}: {info['why']}")
        self.matcher_status.setText("\n".join(lines))

    def _on_matcher_download(self) -> None:
        d = self.controller.download
        if d is not None and d["status"] == "done" and d.get("use_for") in self.matcher_dirs and d.get("path"):
            edit = self.matcher_dirs[d["use_for"]]
            if edit.text().strip() != d["path"]:
                edit.setText(d["path"])

    # presets -----------------------------------------------------------------------------------------
    def _add_preset_row(self, name: str, text: str, builtin: bool) -> int:
        r = self.presets.rowCount()
        self.presets.blockSignals(True)
        self.presets.insertRow(r)
        for c, value in enumerate((name, text)):
            item = QTableWidgetItem(value)
            if builtin:
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                item.setForeground(self.palette().placeholderText())
                item.setToolTip("built in (RePIC's wording)")
            item.setData(Qt.ItemDataRole.UserRole, builtin)
            self.presets.setItem(r, c, item)
        self.presets.blockSignals(False)
        return r

    def _new_preset(self) -> None:
        names = set(self._preset_rows())
        n = 1
        while f"my-preset-{n}" in names:
            n += 1
        r = self._add_preset_row(f"my-preset-{n}", "Give a short personalized caption of this image.", builtin=False)
        self._fill_request_combo()
        self.presets.setCurrentCell(r, 1)
        self.presets.editItem(self.presets.item(r, 1))

    def _remove_selected_preset(self) -> None:
        r = self.presets.currentRow()
        if r >= 0 and not self.presets.item(r, 0).data(Qt.ItemDataRole.UserRole):
            self.presets.removeRow(r)
            self._fill_request_combo()

    def _preset_rows(self, user_only: bool = False) -> dict[str, str]:
        out: dict[str, str] = {}
        for r in range(self.presets.rowCount()):
            name, text = self.presets.item(r, 0), self.presets.item(r, 1)
            if user_only and name.data(Qt.ItemDataRole.UserRole):
                continue
            out[name.text().strip()] = " ".join(text.text().split())
        return out

    def _fill_request_combo(self, select: str | None = None) -> None:
        current = select or self.request_preset.currentData()
        self.request_preset.blockSignals(True)
        self.request_preset.clear()
        for name, text in self._preset_rows().items():
            if name:
                self.request_preset.addItem(f"{name} — {text}", name)
        i = self.request_preset.findData(current)
        self.request_preset.setCurrentIndex(i if i >= 0 else max(0, self.request_preset.findData("personalized")))
        self.request_preset.blockSignals(False)

    # state -------------------------------------------------------------------------------------------
    def _update_pixels_note(self) -> None:
        px = self.max_tokens.value() * TOKEN_PIXELS
        note = f"= {px:,} pixels"
        if px == DEFAULT_MAX_PIXELS:
            note += " (RePIC's setting)"
        self.pixels_note.setText(note)

    def _update_enabled(self) -> None:
        hub, local = self.source_hub.isChecked(), self.source_local.isChecked()
        for w in (self.hub_id, self.revision, self.download):
            w.setEnabled(hub)
        self.local_path.parentWidget().setEnabled(local)
        self.local_path.setEnabled(local)

    def source_choice(self) -> str:
        return "hub" if self.source_hub.isChecked() else ("local" if self.source_local.isChecked() else "demo")

    def _download_target(self) -> tuple[str, str | None, str | None]:
        return (self.hub_id.text().strip() or DEFAULT_MODEL_SOURCE, self.revision.text().strip() or None,
                self.cache_dir.text().strip() or None)

    def _check_cached(self) -> None:
        repo, revision, cache = self._download_target()

        def check() -> str:
            from ...captioning.model_manager import ModelError, resolve_local

            try:
                resolve_local(repo, revision=revision, cache_dir=cache)
            except ModelError:
                return f"Not downloaded yet ({HUB_MODEL_SIZE_TEXT} for RePIC 7B)."
            return "Downloaded: ready to load."

        self.controller.tasks.run(check, lambda text: self.download.show_cached(text), lambda *_: None,
                                  name="repic-cache-check")

    def values(self) -> Settings:
        """The settings as edited (raises ValueError with a readable message when something is wrong)."""
        import copy

        s = copy.deepcopy(self.settings)
        choice = self.source_choice()
        if choice == "hub":
            source = self.hub_id.text().strip() or DEFAULT_MODEL_SOURCE
        elif choice == "local":
            source = self.local_path.text().strip()
            if not source:
                raise ValueError("Choose the model folder (or another model source).")
            if not Path(source).expanduser().is_dir():
                raise ValueError(f"The model folder {source} does not exist.")
        else:
            source = str(demo_model_dir())
        s.model.source = source
        s.model.revision = (self.revision.text().strip() or None) if choice == "hub" else None
        lib = self._library()
        if lib is not None:  # an adapter belongs to the library it was chosen in
            s.set_active_adapter(lib, self.adapter.text().strip() or None)
        else:
            s.model.adapter = self.adapter.text().strip() or None
        s.model.quantization = self.quantization.currentData()
        s.model.device = self.device.currentText().strip() or "auto"
        s.model.cache_dir = self.cache_dir.text().strip() or None
        user_presets = self._preset_rows(user_only=True)
        for name, text in user_presets.items():
            if not name:
                raise ValueError("Every request preset needs a name.")
            if not text:
                raise ValueError(f"The request preset {name!r} is empty.")
            try:
                check_user_text(text, f"The request preset {name!r}")
            except PromptError as exc:
                raise ValueError(str(exc)) from None
        s.extra.update({
            "attention": self.attention.currentData(),
            "batch_size": self.batch_size.value(),
            "max_pixels": self.max_tokens.value() * TOKEN_PIXELS,
            "max_new_tokens": self.max_new_tokens.value(),
            "request_preset": self.request_preset.currentData() or "personalized",
            "request_presets": user_presets,
            "system_preset": self.system_preset.currentData(),
        })
        s.extra["retrieval"] = self._retrieval_values()
        s.extra["server"] = self._server_values()
        from ...retrieval.registry import MATCHER_MODELS

        for use, m in MATCHER_MODELS.items():
            folder = s.extra["retrieval"].get(m.settings_key)
            if folder and not Path(folder).expanduser().is_dir():
                raise ValueError(f"The {m.label} folder {folder} does not exist (Suggestions tab).")
        model_spec_from_settings(s)  # validates device, quantization, pixel limits (ValueError)
        return s

    def accept(self) -> None:
        try:
            s = self.values()
        except ValueError as exc:
            self._show_error(str(exc))
            return
        self.buttons.setEnabled(False)

        def saved(_path) -> None:
            self.buttons.setEnabled(True)
            self.settings = s
            self.saved.emit()
            self.controller.settings_changed.emit()
            QDialog.accept(self)

        def failed(message: str, _details: str) -> None:
            self.buttons.setEnabled(True)
            self._show_error(f"The settings could not be saved: {message}")

        self.controller.tasks.run(s.save, saved, failed, name="repic-save-settings")

    def _show_error(self, text: str) -> None:
        self.error_label.setStyleSheet("color: #d9534f; font-weight: 600;")
        self.error_label.setText(text)
        self.error_label.setVisible(True)

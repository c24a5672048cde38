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

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QLabel, QTabWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from ...captioning.models import DEFAULT_MAX_PIXELS, ModelSpec
from ...captioning.prompt import PromptError, check_user_text
from ...core.settings import DEFAULT_MODEL_SOURCE, Settings
from ...app.caption_jobs import demo_model_dir
from ..settings_access import load_settings
from .settings_tabs import HUB_MODEL_SIZE_TEXT, TOKEN_PIXELS, SettingsTabs

if TYPE_CHECKING:
    from ..captioning.controller import CaptioningController


# ------------------------------------------------------------------------------------------------------
# the dialog
# ------------------------------------------------------------------------------------------------------

class SettingsDialog(SettingsTabs, QDialog):
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

    def _library(self):
        """The controller's library (None when it cannot be opened)."""
        try:
            return self.controller._lib()
        except Exception:  # noqa: BLE001 - a library that cannot open only loses the adapter row's scope
            return None

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
        ModelSpec.from_user_settings(s)  # validates device, quantization, pixel limits (ValueError)
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

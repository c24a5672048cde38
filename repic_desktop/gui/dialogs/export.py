"""Write to Files…: write captions, people, regions and keywords from the library into the photos' files
(or .xmp sidecars), for the selected photos or every accepted one.

The dialog is a thin front end for `metadata.export.export_photos`: a dry run fills the preview (per
photo: the keys that would change, old → new, and the consistency check's warnings), Write runs the
real export with progress and Cancel, and the same tree then shows the summary (written / unchanged /
refused / failed, with reasons). Both runs happen in the TaskRunner's worker threads, each with its own
`Library(path)`; the GUI thread never touches a photo file. The options are the defaults stored in
`Settings.extra["metadata"]` (shared with `repic export`) and are saved back when the user writes.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import threading
from pathlib import Path
from typing import Any

import shiboken6
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QButtonGroup, QCheckBox, QDialog, QDialogButtonBox, QGroupBox, QHBoxLayout, QLabel, QProgressBar,
    QPushButton, QRadioButton, QTreeWidget, QTreeWidgetItem, QVBoxLayout,
)

from ...core.settings import Settings, SettingsError
from ...metadata.export import ExportOptions, ExportReport, accepted_photo_ids, export_photos
from ...metadata.fields import DEFAULT_GROUPS
from ...metadata.writer import WriteOptions
from ..wording import count

log = logging.getLogger(__name__)

FIELD_LABELS = (("caption", "Caption"), ("people", "People && pets"), ("regions", "Face regions"),
                ("keywords", "Keywords (other tags)"))
STATUS_LABELS = {"written": "written", "unchanged": "unchanged", "would-write": "will change",
                 "refused": "refused", "failed": "failed"}


def _short(value: Any, limit: int = 120) -> str:
    if value is None or value == [] or value == "":
        return "—"
    text = "; ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_export_defaults(settings: Settings) -> dict[str, Any]:
    """The dialog's options from Settings.extra["metadata"] (what `repic export` uses too)."""
    raw = settings.extra.get("metadata") or {}
    try:
        opts = ExportOptions.from_settings(settings.extra)
    except (TypeError, ValueError) as exc:  # a hand-edited settings file: fall back, say so
        log.warning("ignoring bad metadata settings: %s", exc)
        opts = ExportOptions()
    groups = [g for g in opts.write.groups if g in DEFAULT_GROUPS] if "groups" in raw else list(DEFAULT_GROUPS)
    return {"groups": groups, "sidecar_only": opts.write.sidecar == "always",
            "keep_brackets": opts.keep_brackets, "pet_regions": opts.write.pet_regions,
            "include_drafts": opts.include_drafts}


_CLI_HINT = re.compile(r"\s*\(or use --include-drafts\)")


def gui_reason(reason: str | None) -> str:
    """A reason from metadata.export in the dialog's words: the CLI flag it may name is a checkbox here."""
    return _CLI_HINT.sub(" (or tick “Include draft captions”)", reason or "")


class ExportDialog(QDialog):
    """Preview and write library metadata into photo files. `written(list[int])`: photos whose caption
    was recorded as exported (written or already up to date), so the caller can refresh them."""

    written = Signal(list)
    preview_ready = Signal()
    export_finished = Signal(object)   # the ExportReport

    def __init__(self, library_path: Path, tasks, selected_ids: list[int] | None = None, parent=None,
                 settings: Settings | None = None):
        super().__init__(parent)
        self.setWindowTitle("Write to Files")
        self.library_path = Path(library_path)
        self.tasks = tasks
        self.selected_ids = list(selected_ids or [])
        self._settings_error = ""
        if settings is None:
            try:
                settings = Settings.load()
            except SettingsError as exc:
                self._settings_error = str(exc)
                settings = Settings()
        self.settings = settings
        self._generation = 0
        self._running = False
        self._cancel = threading.Event()
        self._close_when_done = False
        self.report: ExportReport | None = None
        self.preview_report: ExportReport | None = None

        # scope
        scope = QGroupBox("Photos")
        self.rb_selected = QRadioButton(f"Selected photos ({len(self.selected_ids)})")
        self.rb_accepted = QRadioButton("All photos with an accepted caption")
        self.scope_group = QButtonGroup(self)
        for b in (self.rb_selected, self.rb_accepted):
            self.scope_group.addButton(b)
        self.rb_selected.setEnabled(bool(self.selected_ids))
        (self.rb_selected if self.selected_ids else self.rb_accepted).setChecked(True)
        sl = QVBoxLayout(scope)
        sl.addWidget(self.rb_selected)
        sl.addWidget(self.rb_accepted)

        # options
        d = load_export_defaults(settings)
        opts = QGroupBox("What to write")
        ol = QVBoxLayout(opts)
        row = QHBoxLayout()
        self.field_boxes: dict[str, QCheckBox] = {}
        for key, label in FIELD_LABELS:
            cb = QCheckBox(label)
            cb.setChecked(key in d["groups"])
            self.field_boxes[key] = cb
            row.addWidget(cb)
        row.addStretch(1)
        ol.addLayout(row)
        self.cb_sidecar = QCheckBox("Never modify originals (write .xmp sidecar files next to the photos)")
        self.cb_sidecar.setChecked(d["sidecar_only"])
        self.cb_brackets = QCheckBox("Keep <Name> brackets in the caption")
        self.cb_brackets.setChecked(d["keep_brackets"])
        self.cb_pets = QCheckBox("Write regions for pets too (some apps show every named region as a person)")
        self.cb_pets.setChecked(d["pet_regions"])
        self.cb_drafts = QCheckBox("Include draft captions (not yet accepted)")
        self.cb_drafts.setToolTip("Also write the selected photos whose caption is still waiting for review")
        self.cb_drafts.setChecked(d["include_drafts"])
        self.cb_remember = QCheckBox("Remember these options as the defaults")
        self.cb_remember.setChecked(True)
        for w in (self.cb_sidecar, self.cb_brackets, self.cb_pets, self.cb_drafts, self.cb_remember):
            ol.addWidget(w)

        # preview / summary
        self.tree = QTreeWidget()
        self.tree.setColumnCount(3)
        self.tree.setHeaderLabels(["Photo / key", "Now", "After writing"])
        self.tree.setUniformRowHeights(True)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)   # long folders: the file name stays
        self.tree.setColumnWidth(0, 300)
        self.tree.setColumnWidth(1, 220)
        self.summary = QLabel("Preparing the preview…")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QProgressBar()
        self.progress.setVisible(False)

        self.buttons = QDialogButtonBox()
        self.btn_write = QPushButton("Write")
        self.btn_write.setDefault(True)
        self.btn_cancel = QPushButton("Cancel")
        self.btn_close = QPushButton("Close")
        self.buttons.addButton(self.btn_write, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.addButton(self.btn_cancel, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(self.btn_close, QDialogButtonBox.ButtonRole.RejectRole)
        self.btn_cancel.setVisible(False)
        self.btn_write.setEnabled(False)
        self.btn_write.clicked.connect(self.start_write)
        self.btn_cancel.clicked.connect(self._cancel.set)
        self.btn_close.clicked.connect(self.reject)

        lay = QVBoxLayout(self)
        lay.addWidget(scope)
        lay.addWidget(opts)
        lay.addWidget(QLabel("Preview (nothing is written until you press Write):"))
        lay.addWidget(self.tree, 1)
        lay.addWidget(self.summary)
        lay.addWidget(self.progress)
        lay.addWidget(self.buttons)
        self.resize(860, 620)
        if self._settings_error:
            self.summary.setText(f"Settings could not be read ({self._settings_error}); using the built-in defaults.")

        self._preview_timer = QTimer(self, singleShot=True, interval=150)
        self._preview_timer.timeout.connect(self.refresh_preview)
        for w in (*self.field_boxes.values(), self.cb_sidecar, self.cb_brackets, self.cb_pets, self.cb_drafts,
                  self.rb_selected, self.rb_accepted):
            w.toggled.connect(lambda _on: self._preview_timer.start())
        self.refresh_preview()

    # ------------------------------------------------------------------ options
    def groups(self) -> tuple[str, ...]:
        return tuple(k for k, _ in FIELD_LABELS if self.field_boxes[k].isChecked())

    def options(self) -> ExportOptions:
        base = WriteOptions.from_settings(self.settings.extra) if self._settings_ok() else WriteOptions()
        base = dataclasses.replace(base, groups=self.groups(), pet_regions=self.cb_pets.isChecked(),
                                   sidecar="always" if self.cb_sidecar.isChecked() else "auto")
        own = ExportOptions.from_settings(self.settings.extra) if self._settings_ok() else ExportOptions()
        return ExportOptions(write=base, keep_brackets=self.cb_brackets.isChecked(),
                             include_drafts=self.cb_drafts.isChecked(), strict=own.strict)

    def _settings_ok(self) -> bool:
        try:
            ExportOptions.from_settings(self.settings.extra)
            return True
        except (TypeError, ValueError):
            return False

    def save_defaults(self) -> None:
        if self._settings_error:  # never overwrite a settings file we could not read
            return
        meta = dict(self.settings.extra.get("metadata") or {})
        meta.update(groups=list(self.groups()), sidecar="always" if self.cb_sidecar.isChecked() else "auto",
                    keep_brackets=self.cb_brackets.isChecked(), pet_regions=self.cb_pets.isChecked(),
                    include_drafts=self.cb_drafts.isChecked())
        self.settings.extra["metadata"] = meta
        try:
            self.settings.save()
        except OSError as exc:
            log.warning("could not save the export defaults: %s", exc)

    def _ids_fn(self):
        """What runs in the worker to pick the photos (all accepted is a query: not on the GUI thread)."""
        ids = list(self.selected_ids) if self.rb_selected.isChecked() else None
        return (lambda lib: ids) if ids is not None else accepted_photo_ids

    # ------------------------------------------------------------------ preview (dry run)
    def refresh_preview(self) -> None:
        if self._running:
            return
        self._generation += 1
        gen = self._generation
        self.btn_write.setEnabled(False)
        if not self.groups():
            self.tree.clear()
            self.summary.setText("Choose at least one field to write.")
            return
        self.summary.setText("Preparing the preview…")
        path, opts, pick = self.library_path, self.options(), self._ids_fn()

        def work(lib):
            return export_photos(lib, pick(lib), opts, dry_run=True)

        self.tasks.run(work, lambda rep: self._preview_done(gen, rep),
                       lambda m, dt: self._preview_failed(gen, m), library=path)

    def _preview_done(self, gen: int, rep: ExportReport) -> None:
        if not shiboken6.isValid(self) or gen != self._generation or self._running:
            return
        self.preview_report = rep
        self._fill(rep)
        c = rep.counts
        if not rep.photos:
            self.summary.setText("No photos to write: " + ("none selected." if self.rb_selected.isChecked()
                                                           else "no photo has an accepted caption."))
        else:
            warn = sum(1 for p in rep.photos if p.issues)
            parts = [f"{count(len(rep.photos), 'photo')}: {c.get('would-write', 0)} will change, "
                     f"{c.get('unchanged', 0)} already up to date, "
                     f"{c.get('refused', 0) + c.get('failed', 0)} cannot be written"]
            if warn:
                parts.append(f"{warn} with caption/tag warnings")
            self.summary.setText("; ".join(parts) + ".")
        self.btn_write.setEnabled(c.get("would-write", 0) > 0 or c.get("unchanged", 0) > 0)
        self.preview_ready.emit()

    def _preview_failed(self, gen: int, message: str) -> None:
        if shiboken6.isValid(self) and gen == self._generation:
            self.tree.clear()
            self.summary.setText(f"Cannot prepare the preview: {message}")
            self.preview_ready.emit()

    def _fill(self, rep: ExportReport) -> None:
        self.tree.clear()
        for p in rep.photos:
            top = QTreeWidgetItem([p.path, STATUS_LABELS.get(p.status, p.status), gui_reason(p.reason)])
            top.setData(0, Qt.ItemDataRole.UserRole, p.photo_id)
            top.setToolTip(0, p.path)
            self.tree.addTopLevelItem(top)
            if p.result is not None and p.result.target == "sidecar" and p.result.written_path:
                top.setText(2, (gui_reason(p.reason) + " — " if p.reason else "") + f"sidecar {Path(p.result.written_path).name}")
            for issue in p.issues:
                it = QTreeWidgetItem(top, [f"⚠ {issue.message}", "", ""])
                it.setFirstColumnSpanned(True)
            if p.result is not None:
                for ch in p.result.changes:
                    it = QTreeWidgetItem(top, [ch["key"], _short(ch.get("old")), _short(ch.get("new"))])
                    it.setToolTip(1, _short(ch.get("old"), 4000))
                    it.setToolTip(2, _short(ch.get("new"), 4000))
                for note in p.result.notes:
                    QTreeWidgetItem(top, [f"note: {note}", "", ""])
            top.setExpanded(len(rep.photos) <= 20)

    # ------------------------------------------------------------------ write
    def start_write(self) -> None:
        if self._running or not self.groups():
            return
        if self.cb_remember.isChecked():
            self.save_defaults()
        self._running = True
        self._generation += 1  # a preview still in flight is stale now
        self._cancel.clear()
        self._set_busy(True)
        self.summary.setText("Writing…")
        path, opts, pick, cancel = self.library_path, self.options(), self._ids_fn(), self._cancel

        def work(lib, progress):
            return export_photos(lib, pick(lib), opts, dry_run=False,
                                 progress=lambda n, total, p: progress((n, total, p)), cancel=cancel.is_set)

        self.tasks.run(work, self._write_done, self._write_failed, on_progress=self._write_progress, library=path)

    def _set_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.progress.setRange(0, 0)
        self.btn_cancel.setVisible(busy)
        self.btn_write.setEnabled(not busy)
        for w in (*self.field_boxes.values(), self.cb_sidecar, self.cb_brackets, self.cb_pets, self.cb_drafts, self.cb_remember,
                  self.rb_selected, self.rb_accepted):
            w.setEnabled(not busy and (w is not self.rb_selected or bool(self.selected_ids)))

    def _write_progress(self, value) -> None:
        if not shiboken6.isValid(self):
            return
        n, total, path = value
        self.progress.setRange(0, total)
        self.progress.setValue(n)
        self.summary.setText(f"Writing {n} of {total}: {Path(path).name}")

    def _write_done(self, rep: ExportReport) -> None:
        if not shiboken6.isValid(self):
            return
        self._running = False
        self.report = rep
        self._set_busy(False)
        self.btn_write.setEnabled(False)  # written: a second press would find nothing to do
        self._fill(rep)
        c = rep.counts
        text = (f"Written: {c.get('written', 0)}, unchanged: {c.get('unchanged', 0)}, "
                f"refused: {c.get('refused', 0)}, failed: {c.get('failed', 0)}")
        if rep.cancelled:
            text += f" — cancelled, {count(len(rep.photos), 'photo')} handled before"
        reasons = [f"{Path(p.path).name}: {gui_reason(p.reason)}" for p in rep.failed if p.reason]
        if reasons:
            text += "\n" + "\n".join(reasons[:8]) + (f"\n… and {len(reasons) - 8} more" if len(reasons) > 8 else "")
        self.summary.setText(text)
        self.written.emit([p.photo_id for p in rep.photos if p.status in ("written", "unchanged")])
        self.export_finished.emit(rep)
        if self._close_when_done:
            super().reject()

    def _write_failed(self, message: str, details: str) -> None:
        if not shiboken6.isValid(self):
            log.error("export failed: %s\n%s", message, details)
            return
        self._running = False
        self._set_busy(False)
        self.summary.setText(f"Writing stopped: {message}")
        log.error("export failed: %s\n%s", message, details)
        self.export_finished.emit(None)
        if self._close_when_done:
            super().reject()

    def reject(self) -> None:
        if self._running:  # stop after the current photo, then close
            self._cancel.set()
            self._close_when_done = True
            self.summary.setText("Stopping after the current photo…")
            return
        super().reject()

    def closeEvent(self, e) -> None:
        if self._running:
            self.reject()
            e.ignore()
            return
        super().closeEvent(e)

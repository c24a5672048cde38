"""The small "Caption photos" dialog: which people & pets go into the prompt, which request, batch size.

It only collects choices; the controller turns them into a durable job (off the GUI thread) and hands
the job to the model worker. Everything it shows was read by the controller beforehand (a few small
queries), so opening it never waits on the model.
"""
from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
    QLineEdit, QListWidget, QListWidgetItem, QPushButton, QRadioButton, QSpinBox, QVBoxLayout, QWidget,
)

from ..pages.layout import heading


@dataclass(frozen=True)
class CaptionChoice:
    concepts: list[str] | None     # None = each photo's own (as tagged)
    preset: str
    batch_size: int
    skip_captioned: bool


@dataclass(frozen=True)
class ConceptEntry:
    name: str
    kind: str
    has_reference: bool


KIND_LABEL = {"person": "person", "pet": "pet", "other": "other"}


class CaptionDialog(QDialog):
    settings_requested = Signal()

    def __init__(self, parent: QWidget | None, *, photo_count: int, concepts: list[ConceptEntry],
                 own_summary: str, presets: dict[str, str], preset: str, batch_size: int, model_label: str,
                 captioned: int | None, title: str | None = None, suggestions_note: str = ""):
        super().__init__(parent)
        self.setObjectName("captionDialog")
        self.setWindowTitle("Caption photos")
        self.photo_count = photo_count
        self._concepts = {c.name: c for c in concepts}
        lay = QVBoxLayout(self)

        lay.addWidget(heading(title or (f"Caption {photo_count} photo" + ("s" if photo_count != 1 else "")),
                              1.3, self))
        model_row = QHBoxLayout()
        self.model_label = QLabel(f"Model: {model_label}", self)
        self.model_label.setWordWrap(True)
        model_row.addWidget(self.model_label, 1)
        settings = QPushButton("Settings…", self)
        settings.setToolTip("Change the model, quantization, device and prompt presets")
        settings.clicked.connect(self.settings_requested)
        model_row.addWidget(settings)
        lay.addLayout(model_row)

        box = QGroupBox("People && pets the model is told about", self)
        bl = QVBoxLayout(box)
        self.mode_group = QButtonGroup(self)
        self.own = QRadioButton("Each photo's own, as tagged", box)
        self.chosen = QRadioButton("The same for every photo:", box)
        self.mode_group.addButton(self.own, 0)
        self.mode_group.addButton(self.chosen, 1)
        self.own.setChecked(True)
        bl.addWidget(self.own)
        self.own_summary = QLabel(own_summary, box)
        self.own_summary.setWordWrap(True)
        self.own_summary.setContentsMargins(24, 0, 0, 0)
        self.own_summary.setEnabled(False)
        bl.addWidget(self.own_summary)
        self.suggestions_note = QLabel("", box)
        self.suggestions_note.setObjectName("suggestionsNote")
        self.suggestions_note.setWordWrap(True)
        self.suggestions_note.setContentsMargins(24, 0, 0, 0)
        bl.addWidget(self.suggestions_note)
        self.set_suggestions_note(suggestions_note)
        bl.addWidget(self.chosen)
        pick = QWidget(box)
        pl = QVBoxLayout(pick)
        pl.setContentsMargins(24, 0, 0, 0)
        self.search = QLineEdit(pick)
        self.search.setPlaceholderText("Search people & pets…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._filter)
        pl.addWidget(self.search)
        self.concept_list = QListWidget(pick)
        self.concept_list.setMinimumHeight(120)
        for c in concepts:
            text = f"{c.name}  ·  {KIND_LABEL.get(c.kind, c.kind)}"
            if not c.has_reference:
                text += "  ·  no reference photo yet"
            item = QListWidgetItem(text, self.concept_list)
            item.setData(Qt.ItemDataRole.UserRole, c.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
        if not concepts:
            QListWidgetItem("No people or pets yet: add them in People & Pets.", self.concept_list).setFlags(
                Qt.ItemFlag.NoItemFlags)
        self.concept_list.itemChanged.connect(lambda *_: self._update())
        pl.addWidget(self.concept_list)
        self.picked_label = QLabel("", pick)
        pl.addWidget(self.picked_label)
        bl.addWidget(pick)
        self.pick_area = pick
        self.mode_group.idToggled.connect(lambda *_: self._update())
        lay.addWidget(box)

        form = QFormLayout()
        self.preset = QComboBox(self)
        for name, text in presets.items():
            self.preset.addItem(f"{name} — {text}", name)
            self.preset.setItemData(self.preset.count() - 1, text, Qt.ItemDataRole.ToolTipRole)
        self.preset.setCurrentIndex(max(0, self.preset.findData(preset)))
        form.addRow("Request:", self.preset)
        self.batch = QSpinBox(self)
        self.batch.setRange(1, 64)
        self.batch.setValue(max(1, int(batch_size)))
        self.batch.setToolTip("Photos captioned together: larger is faster on a big GPU (halved automatically "
                              "when the GPU runs out of memory).")
        form.addRow("Batch size:", self.batch)
        lay.addLayout(form)
        text = "Skip photos that already have a caption"
        if captioned:
            text += f" ({captioned} of {photo_count})"
        self.skip = QCheckBox(text, self)
        self.skip.setChecked(captioned is None or captioned < photo_count)
        self.skip.setVisible(captioned != 0)
        lay.addWidget(self.skip)

        self.warning = QLabel("", self)
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #d9822b;")
        lay.addWidget(self.warning)
        # no GPU / too little GPU memory for the model (captioning/device.py): said before the job starts
        self.device_note = QLabel("", self)
        self.device_note.setWordWrap(True)
        self.device_note.setStyleSheet("color: #d9822b;")
        self.device_note.setVisible(False)
        lay.addWidget(self.device_note)
        self._device_blocks = False
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel,
                                        self)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Caption")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)
        self._update()
        self.resize(480, self.sizeHint().height())

    # ------------------------------------------------------------------------------------------------
    def checked_names(self) -> list[str]:
        out = []
        for i in range(self.concept_list.count()):
            item = self.concept_list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) and item.checkState() == Qt.CheckState.Checked:
                out.append(item.data(Qt.ItemDataRole.UserRole))
        return out

    def set_device_advice(self, advice) -> None:
        """A CaptionAdvice (or None): "warn" is shown, "stop" is shown and disables Caption."""
        text = advice.text() if advice is not None else ""
        self.device_note.setText(text)
        self.device_note.setVisible(bool(text))
        self._device_blocks = advice is not None and advice.level == "stop"
        self._update()

    def set_suggestions_note(self, text: str) -> None:
        """What "each photo's own" adds from suggestions; hidden when suggestions are not used."""
        self.suggestions_note.setText(text)
        self.suggestions_note.setVisible(bool(text))

    def set_checked(self, names: list[str]) -> None:
        """Choose these concepts for every photo (switches to "the same for every photo")."""
        self.chosen.setChecked(True)
        wanted = set(names)
        for i in range(self.concept_list.count()):
            item = self.concept_list.item(i)
            name = item.data(Qt.ItemDataRole.UserRole)
            if name:
                item.setCheckState(Qt.CheckState.Checked if name in wanted else Qt.CheckState.Unchecked)

    def choice(self) -> CaptionChoice:
        return CaptionChoice(concepts=self.checked_names() if self.chosen.isChecked() else None,
                             preset=self.preset.currentData(), batch_size=self.batch.value(),
                             skip_captioned=not self.skip.isHidden() and self.skip.isChecked())

    def _filter(self, text: str) -> None:
        needle = text.strip().casefold()
        for i in range(self.concept_list.count()):
            item = self.concept_list.item(i)
            name = item.data(Qt.ItemDataRole.UserRole) or ""
            item.setHidden(bool(needle) and needle not in name.casefold())

    def _update(self) -> None:
        chosen = self.chosen.isChecked()
        self.pick_area.setEnabled(chosen)
        names = self.checked_names()
        self.picked_label.setText(f"{len(names)} chosen: " + ", ".join(f"<{n}>" for n in names) if names
                                  else "None chosen yet.")
        warn = []
        if chosen:
            lacking = [n for n in names if not self._concepts[n].has_reference]
            if lacking:
                warn.append("No reference photo yet for " + ", ".join(f"<{n}>" for n in lacking)
                            + ": add one in People & Pets, or these photos will fail.")
        else:
            lacking = [n for n, c in self._concepts.items() if not c.has_reference]
            if lacking:
                warn.append("No reference photo yet for " + ", ".join(f"<{n}>" for n in lacking[:5])
                            + ("…" if len(lacking) > 5 else "") + ": photos tagged with them will fail.")
        self.warning.setText(" ".join(warn))
        self.warning.setVisible(bool(warn))
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled((not chosen or bool(names)) and not getattr(self, "_device_blocks", False))

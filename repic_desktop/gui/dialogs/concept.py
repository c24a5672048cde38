"""The concept dialog: add or edit one person or pet (name, kind, info line, reference photos with boxes)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QComboBox, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QListWidget,
    QListWidgetItem, QPushButton, QVBoxLayout,
)

from ...core.concepts import KINDS, MAX_INFO_LENGTH, ConceptError, validate_info, validate_name
from ...core.images import SUPPORTED_EXTENSIONS
from ...core.library import Box, Library, LibraryError
from .files import choose_open_files
from ..tasks import TaskRunner
from ..widgets.thumbnails import ThumbnailLoader
from .box import BoxDialog
from ..widgets.inline_error import error_label, show_error
from .photo_picker import PhotoPickerDialog
from ..pages.people_model import KIND_LABELS, REF_THUMB, request_ref_thumb


@dataclass
class PendingRef:
    """A reference chosen in the Add dialog, not stored yet."""
    photo_id: int | None = None
    file_path: str | None = None
    box: Box | None = None
    label: str = ""
    full_size: tuple[int, int] | None = None

    def source(self, lib: Library) -> str:
        return self.file_path if self.file_path else lib.photos.get(self.photo_id).fs_path


class ConceptDialog(QDialog):
    """Add a person, pet or thing: name, kind, info and reference photos (each optionally boxed)."""

    created = Signal(int)      # concept id

    def __init__(self, library: Library, tasks: TaskRunner, loader: ThumbnailLoader, name: str = "",
                 photo_id: int | None = None, browser_selection: list[int] | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Add a person or pet")
        self.resize(620, 560)
        self.lib, self.tasks, self.loader = library, tasks, loader
        self.refs: list[PendingRef] = []
        self.tag_photo_id = photo_id
        self.browser_selection = browser_selection or []
        self.concept_id: int | None = None

        lay = QVBoxLayout(self)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        self.name = QLineEdit(name, placeholderText="e.g. Anna, Grandpa Joe, Rex")
        self.name.textChanged.connect(self._validate)
        self.kind = QComboBox()
        for k in KINDS:
            self.kind.addItem(KIND_LABELS[k], k)
        self.info = QLineEdit(placeholderText="One line the model is told, e.g. \"my daughter, 7, curly red hair\"")
        self.info.setMaxLength(MAX_INFO_LENGTH)
        self.info.textChanged.connect(self._validate)
        form.addRow("Name", self.name)
        form.addRow("Kind", self.kind)
        form.addRow("Info", self.info)
        lay.addLayout(form)
        self.error = error_label()
        lay.addWidget(self.error)

        lay.addWidget(QLabel("<b>Reference photos</b> — clear photos of them; the first is the one the model sees. "
                             "Draw a box around the face when others are in the photo.", wordWrap=True))
        self.ref_list = QListWidget()
        self.ref_list.setViewMode(QListWidget.ViewMode.IconMode)
        self.ref_list.setIconSize(QSize(REF_THUMB, REF_THUMB))
        self.ref_list.setGridSize(QSize(REF_THUMB + 26, REF_THUMB + 40))
        self.ref_list.setMovement(QListWidget.Movement.Static)
        self.ref_list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.ref_list.setMinimumHeight(REF_THUMB + 50)
        self.ref_list.itemDoubleClicked.connect(lambda _: self.draw_box())
        lay.addWidget(self.ref_list, 1)
        row = QHBoxLayout()
        self.from_library = QPushButton("From library…")
        self.from_library.clicked.connect(self.add_from_library)
        self.from_file = QPushButton("From file…")
        self.from_file.clicked.connect(self.add_from_file)
        self.box_btn = QPushButton("Draw box…")
        self.box_btn.clicked.connect(self.draw_box)
        self.remove_btn = QPushButton("Remove")
        self.remove_btn.clicked.connect(self.remove_ref)
        for b in (self.from_library, self.from_file):
            row.addWidget(b)
        row.addStretch(1)
        row.addWidget(self.box_btn)
        row.addWidget(self.remove_btn)
        lay.addLayout(row)
        self.ref_list.currentRowChanged.connect(lambda _: self._update_buttons())

        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok = bb.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setText("Add")
        bb.accepted.connect(self.save)
        bb.rejected.connect(self.reject)
        lay.addWidget(bb)
        self._loader_conn = loader.ready.connect(self._thumb_ready)
        if photo_id is not None:
            p = library.photos.get(photo_id)
            self.add_ref(PendingRef(photo_id=photo_id, label=p.filename, full_size=(p.width, p.height)))
        self._validate()
        self._update_buttons()

    # ------------------------------------------------------------------ references
    def add_ref(self, ref: PendingRef) -> None:
        self.refs.append(ref)
        self._rebuild_refs()
        self.ref_list.setCurrentRow(len(self.refs) - 1)

    def _rebuild_refs(self) -> None:
        self.ref_list.clear()
        for i, r in enumerate(self.refs):
            text = ("★ " if i == 0 else "") + (r.label or "photo") + ("\n▣ box" if r.box else "")
            it = QListWidgetItem(text)
            it.setData(Qt.ItemDataRole.UserRole, i)
            it.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            it.setToolTip(r.file_path or r.label)
            self.ref_list.addItem(it)
            key = ("pending", id(self), i, r.photo_id, r.file_path, r.box)
            request_ref_thumb(self.loader, key, r.source(self.lib), r.box)
        self._update_buttons()
        self._validate()

    def _thumb_ready(self, key, image) -> None:
        if not (isinstance(key, tuple) and key[:2] == ("pending", id(self))):
            return
        i = key[2]
        if i < self.ref_list.count() and i < len(self.refs):
            r = self.refs[i]
            if (r.photo_id, r.file_path, r.box) == key[3:]:
                self.ref_list.item(i).setIcon(QIcon(QPixmap.fromImage(image)))

    def add_from_library(self) -> None:
        dlg = PhotoPickerDialog(self.lib, self.tasks, self.loader, self.browser_selection, self)
        if dlg.exec() != QDialog.DialogCode.Accepted or dlg.photo_id() is None:
            return
        p = self.lib.photos.get(dlg.photo_id())
        ref = PendingRef(photo_id=p.id, label=p.filename, full_size=(p.width, p.height))
        self.add_ref(ref)
        self.draw_box()

    def add_from_file(self) -> None:
        pattern = " ".join(f"*{e}" for e in sorted(SUPPORTED_EXTENSIONS))
        paths = choose_open_files(self, "Reference photos", os.path.expanduser("~"), f"Images ({pattern})",
                                  library=self.lib)
        for path in paths:
            self.add_ref(PendingRef(file_path=path, label=os.path.basename(path)))
        if len(paths) == 1:
            self.draw_box()

    def draw_box(self) -> None:
        i = self.ref_list.currentRow()
        if not 0 <= i < len(self.refs):
            return
        r = self.refs[i]
        name = self.name.text().strip() or "them"
        dlg = BoxDialog(self.tasks, r.source(self.lib), f"Where is {name}?", r.full_size, r.box, self)
        self._box_dialog = dlg
        if dlg.exec() == QDialog.DialogCode.Accepted:
            r.box = dlg.box
            self._rebuild_refs()
            self.ref_list.setCurrentRow(i)

    def remove_ref(self) -> None:
        i = self.ref_list.currentRow()
        if 0 <= i < len(self.refs):
            del self.refs[i]
            self._rebuild_refs()

    def _update_buttons(self) -> None:
        has = 0 <= self.ref_list.currentRow() < len(self.refs)
        self.box_btn.setEnabled(has)
        self.remove_btn.setEnabled(has)

    # ------------------------------------------------------------------ validate and save
    def _validate(self) -> bool:
        problem = None
        try:
            name = validate_name(self.name.text())
            validate_info(self.info.text())
            try:
                other = self.lib.concepts.get(name)
                problem = f"the name <{name}> is already used by <{other.name}>; names must be unique"
            except LibraryError:
                pass
        except ConceptError as exc:
            problem = str(exc) if self.name.text().strip() or self.info.text() else None
            if not self.name.text().strip():
                self.ok.setEnabled(False)
                show_error(self.error, problem if self.info.text() else None)
                return False
        if problem is None and not self.refs:
            self.ok.setToolTip("Add at least one reference photo so the model knows who this is")
        else:
            self.ok.setToolTip("")
        show_error(self.error, problem)
        self.ok.setEnabled(problem is None)
        return problem is None

    def save(self) -> None:
        if not self._validate():
            return
        name, kind, info = self.name.text().strip(), self.kind.currentData(), self.info.text()
        refs = [PendingRef(r.photo_id, r.file_path, r.box, r.label) for r in self.refs]
        path = self.lib.path
        tag_photo = self.tag_photo_id

        def work(lib):
            from ...core.concepts import import_reference_file
            with lib.transaction():
                c = lib.concepts.add(name, kind, info)
                for r in refs:
                    if r.photo_id is not None:
                        lib.concepts.add_ref(c.name, photo_id=r.photo_id, box=r.box)
                    else:
                        import_reference_file(lib, c.name, r.file_path, box=r.box)
                if tag_photo is not None:
                    lib.concepts.tag(tag_photo, c.name)
            return c.id

        def done(cid: int) -> None:
            self.concept_id = cid
            self.created.emit(cid)
            self.accept()

        def failed(message: str, details: str) -> None:
            self.ok.setEnabled(True)
            self.ok.setText("Add")
            show_error(self.error, message)

        self.ok.setEnabled(False)
        self.ok.setText("Adding…")
        show_error(self.error, None)
        self.tasks.run(work, done, failed, library=path)

    def done(self, r: int) -> None:
        try:
            self.loader.ready.disconnect(self._thumb_ready)
        except (RuntimeError, TypeError):
            pass
        super().done(r)

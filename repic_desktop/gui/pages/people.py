"""People & Pets: the concepts RePIC names in captions, each with reference photos and a line of info.

Why it is shaped like this:
- The list is a small item model over `lib.concepts.all()` (hundreds at most); each row's icon is the
  primary reference photo cropped to its box, decoded on the thumbnail pool.
- Validation happens where it is defined, in the library layer (`validate_name`, unique names, box
  inside the photo): its messages are shown inline under the fields, word for word, as the user types
  or saves; nothing is duplicated here.
- Copying a reference photo from a file into the library's folder is file I/O, so "Add" with file
  references runs on the task pool (one transaction: a bad reference never leaves a half-made person).
- Rename and info/kind edits are undoable (the window's QUndoStack); merge and delete ask first.
"""
from __future__ import annotations

import html
import logging
import os

from PySide6.QtCore import QModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPalette, QPixmap, QUndoCommand, QUndoStack
from PySide6.QtWidgets import (
    QComboBox, QDialog, QDialogButtonBox, QFormLayout, QFrame, QHBoxLayout, QLabel, QLineEdit, QListView,
    QListWidget, QListWidgetItem, QMessageBox, QPushButton, QStackedWidget, QVBoxLayout, QWidget,
)

from ...core.concepts import KINDS, MAX_INFO_LENGTH, ConceptError, validate_info, validate_name
from ...core.images import SUPPORTED_EXTENSIONS
from ...core.library import Box, Library, LibraryError
from ..dialogs.files import choose_open_file
from ...core.photo_queries import PhotoFilter, query_photo_ids
from ..widgets.banner import EmptyState
from ..widgets.photo_grid import PhotoGridView
from .photo_model import PhotoListModel
from ..tasks import TaskRunner
from ..widgets.thumbnails import ThumbnailLoader
from .layout import heading, split_page
from ..wording import count
from ..dialogs.box import BoxDialog
from ..widgets.inline_error import error_label, show_error
from ..dialogs.photo_picker import PhotoPickerDialog
from .people_model import ConceptDelegate, ConceptListModel, KIND_LABELS, REF_THUMB, request_ref_thumb
from ..dialogs.concept import ConceptDialog

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Undoable concept edits
# --------------------------------------------------------------------------------------------------

class ConceptEditCommand(QUndoCommand):
    """Rename and/or change kind and info. Built after the change succeeded (so validation errors are
    shown inline, never raised from redo); the first redo is therefore a no-op."""

    def __init__(self, lib: Library, concept_id: int, before: tuple[str, str, str], after: tuple[str, str, str],
                 notify):
        super().__init__(f"Edit <{after[0]}>" if before[0] == after[0] else f"Rename <{before[0]}> to <{after[0]}>")
        self.lib, self.cid, self.before, self.after, self.notify = lib, concept_id, before, after, notify
        self._first = True

    def _apply(self, state: tuple[str, str, str]) -> None:
        name, kind, info = state
        current = self.lib.concepts.get(self.cid)
        if current.name != name:
            self.lib.concepts.rename(current.name, name)
        self.lib.concepts.update(name, info=info, kind=kind)
        self.notify(self.cid)

    def redo(self) -> None:
        if self._first:
            self._first = False
            return
        self._apply(self.after)

    def undo(self) -> None:
        self._apply(self.before)


# --------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------


class PeopleManager(QWidget):
    """List of people & pets on the left, the chosen one's details and reference photos on the right."""

    concepts_changed = Signal()
    show_photos = Signal(int)          # concept id: filter the browser by this person/pet
    photo_activated = Signal(int, int)  # concept id, photo id (double-click in "Photos with ...")

    def __init__(self, library: Library, tasks: TaskRunner, loader: ThumbnailLoader, undo: QUndoStack,
                 parent=None):
        super().__init__(parent)
        self.lib, self.tasks, self.loader, self.undo = library, tasks, loader, undo
        self.browser_selection: list[int] = []
        self.model = ConceptListModel(library, loader, self)

        # left: list
        self.filter = QLineEdit(placeholderText="Find…", clearButtonEnabled=True)
        self.filter.textChanged.connect(self._apply_filter)
        self.list = QListView()
        self.list.setModel(self.model)
        self.list.setItemDelegate(ConceptDelegate(self.list))
        self.list.setUniformItemSizes(True)
        self.list.setFrameShape(QFrame.Shape.NoFrame)
        self.list.selectionModel().currentChanged.connect(lambda cur, _: self._show(cur))
        self.add_btn = QPushButton("+  Add person or pet…")
        self.add_btn.clicked.connect(lambda: self.add_concept())
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(8, 8, 4, 8)
        title = heading("People & Pets", 1.3)
        ll.addWidget(title)
        ll.addWidget(QLabel("RePIC names them in captions as &lt;Name&gt;.", textFormat=Qt.TextFormat.RichText))
        ll.addWidget(self.filter)
        ll.addWidget(self.list, 1)
        ll.addWidget(self.add_btn)

        # right: details
        self.detail = QWidget()
        dl = QVBoxLayout(self.detail)
        dl.setContentsMargins(16, 12, 16, 12)
        self.header = heading("", 1.5)
        dl.addWidget(self.header)
        form = QFormLayout()
        self.name_edit = QLineEdit()
        self.kind_edit = QComboBox()
        for k in KINDS:
            self.kind_edit.addItem(KIND_LABELS[k], k)
        self.info_edit = QLineEdit(placeholderText="One line the model is told about them")
        self.info_edit.setMaxLength(MAX_INFO_LENGTH)
        form.addRow("Name", self.name_edit)
        form.addRow("Kind", self.kind_edit)
        form.addRow("Info", self.info_edit)
        dl.addLayout(form)
        self.error = error_label()
        dl.addWidget(self.error)
        row = QHBoxLayout()
        self.photos_btn = QPushButton("Show their photos")
        self.photos_btn.clicked.connect(lambda: self.current_id() is not None and self.show_photos.emit(self.current_id()))
        self.save_btn = QPushButton("Save changes")
        self.save_btn.clicked.connect(self.save_changes)
        self.revert_btn = QPushButton("Revert")
        self.revert_btn.clicked.connect(lambda: self._show(self.list.currentIndex()))
        row.addWidget(self.photos_btn)
        row.addStretch(1)
        row.addWidget(self.revert_btn)
        row.addWidget(self.save_btn)
        dl.addLayout(row)
        for w in (self.name_edit, self.info_edit):
            w.textChanged.connect(self._dirty)
        self.kind_edit.currentIndexChanged.connect(self._dirty)
        self.name_edit.returnPressed.connect(self.save_changes)
        self.info_edit.returnPressed.connect(self.save_changes)

        refs_head = QHBoxLayout()
        refs_head.addWidget(QLabel("<b>Reference photos</b>"))
        refs_head.addStretch(1)
        dl.addSpacing(6)
        dl.addLayout(refs_head)
        self.refs = QListWidget()
        self.refs.setViewMode(QListWidget.ViewMode.IconMode)
        self.refs.setIconSize(QSize(REF_THUMB, REF_THUMB))
        self.refs.setGridSize(QSize(REF_THUMB + 26, REF_THUMB + 40))
        self.refs.setMovement(QListWidget.Movement.Static)
        self.refs.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.refs.setFixedHeight(REF_THUMB + 58)
        dl.addWidget(self.refs)
        rrow = QHBoxLayout()
        self.ref_lib_btn = QPushButton("Add from library…")
        self.ref_lib_btn.clicked.connect(self.add_ref_from_library)
        self.ref_file_btn = QPushButton("Add from file…")
        self.ref_file_btn.clicked.connect(self.add_ref_from_file)
        self.ref_remove_btn = QPushButton("Remove reference")
        self.ref_remove_btn.clicked.connect(self.remove_ref)
        self.ref_primary_btn = QPushButton("Make primary")
        self.ref_primary_btn.setToolTip("Use the selected photo as the reference the model sees (★)")
        self.ref_primary_btn.clicked.connect(self.make_primary_ref)
        self.refs.currentItemChanged.connect(lambda *_: self._update_ref_buttons())
        rrow.addWidget(self.ref_lib_btn)
        rrow.addWidget(self.ref_file_btn)
        rrow.addStretch(1)
        rrow.addWidget(self.ref_primary_btn)
        rrow.addWidget(self.ref_remove_btn)
        dl.addLayout(rrow)
        self.ref_error = error_label()
        dl.addWidget(self.ref_error)

        dl.addSpacing(6)
        self.photos_header = QLabel()
        dl.addWidget(self.photos_header)
        self.photos_model = PhotoListModel(library, loader, self)
        self.photos_view = PhotoGridView()
        self.photos_view.set_thumb_size(100)
        self.photos_view.setModel(self.photos_model)
        self.photos_view.setFrameShape(QFrame.Shape.StyledPanel)
        self.photos_view.doubleClicked.connect(self._photo_double_clicked)
        self.photos_empty = QLabel(alignment=Qt.AlignmentFlag.AlignCenter, wordWrap=True)
        self.photos_empty.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.photos_stack = QStackedWidget()
        self.photos_stack.addWidget(self.photos_view)
        self.photos_stack.addWidget(self.photos_empty)
        dl.addWidget(self.photos_stack, 1)
        self._photos_gen = 0
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        dl.addSpacing(6)
        dl.addWidget(line)
        drow = QHBoxLayout()
        self.merge_btn = QPushButton("Merge into…")
        self.merge_btn.setToolTip("The same person entered twice: move their references and photos to another entry")
        self.merge_btn.clicked.connect(self.merge)
        self.delete_btn = QPushButton("Delete…")
        self.delete_btn.clicked.connect(self.delete)
        drow.addStretch(1)
        drow.addWidget(self.merge_btn)
        drow.addWidget(self.delete_btn)
        dl.addLayout(drow)
        loader.ready.connect(self._ref_thumb_ready)

        self.empty = EmptyState()
        self.empty.set("No people or pets yet",
                       "Add the people and pets you want named in captions, each with a clear reference photo. "
                       "RePIC then writes captions like “<Anna> is feeding <Rex> in the garden.”",
                       [("Add person or pet…", lambda: self.add_concept())])
        self.right = QStackedWidget()
        self.right.addWidget(self.detail)
        self.right.addWidget(self.empty)

        self.splitter = split_page(self, left, self.right, (340, 700))
        self.reload()

    # ------------------------------------------------------------------ list
    def reload(self, select: int | None = None) -> None:
        keep = select if select is not None else self.current_id()
        self.model.reload()
        row = self.model.row_of(keep) if keep is not None else None
        if row is None and self.model.rowCount():
            row = 0
        if row is not None:
            self.list.setCurrentIndex(self.model.index(row))
        self._show(self.list.currentIndex())
        self._apply_filter(self.filter.text())

    def _apply_filter(self, text: str) -> None:
        t = text.strip().casefold()
        for i, r in enumerate(self.model.rows):
            c = r["concept"]
            self.list.setRowHidden(i, bool(t) and t not in c.name.casefold() and t not in c.info.casefold())

    def current_id(self) -> int | None:
        idx = self.list.currentIndex()
        if not idx.isValid() or idx.row() >= len(self.model.rows):
            return None
        return self.model.rows[idx.row()]["concept"].id

    def select(self, concept_id: int) -> None:
        row = self.model.row_of(concept_id)
        if row is not None:
            self.list.setCurrentIndex(self.model.index(row))

    def _show(self, index: QModelIndex) -> None:
        if not index.isValid() or index.row() >= len(self.model.rows):
            self.right.setCurrentWidget(self.empty if not self.model.rows else self.detail)
            self.detail.setEnabled(bool(self.model.rows))
            return
        self.detail.setEnabled(True)
        self.right.setCurrentWidget(self.detail)
        row = self.model.rows[index.row()]
        c = row["concept"]
        self._shown = (c.name, c.kind, c.info)
        self.header.setText(html.escape(c.name))
        for w in (self.name_edit, self.info_edit, self.kind_edit):
            w.blockSignals(True)
        self.name_edit.setText(c.name)
        self.info_edit.setText(c.info)
        self.kind_edit.setCurrentIndex(max(0, self.kind_edit.findData(c.kind)))
        for w in (self.name_edit, self.info_edit, self.kind_edit):
            w.blockSignals(False)
        show_error(self.error, None)
        show_error(self.ref_error, None)
        self._dirty()
        n = row["tagged"]   # the button shows every tagged photo, references included
        self.photos_btn.setText(f"Show in Photos ({n})")
        self.photos_btn.setEnabled(n > 0)
        self.photos_header.setText(f"<b>Photos with {html.escape(c.name)}</b>")
        self._load_photos(c.id, c.name)
        self._fill_refs(c.id, row["refs"])

    def _load_photos(self, concept_id: int, name: str) -> None:
        self._photos_gen += 1
        gen = self._photos_gen
        path = self.lib.path

        def work(lib):
            return query_photo_ids(lib, PhotoFilter(concept_id=concept_id))

        def done(ids):
            if gen != self._photos_gen:
                return
            self.photos_model.set_ids(ids)
            if len(ids):
                self.photos_stack.setCurrentWidget(self.photos_view)
            else:
                self.photos_empty.setText(f"No photos say {html.escape(name)} is in them yet. In Photos, select "
                                          "photos and use “Add person or pet” or the right-click menu.")
                self.photos_stack.setCurrentWidget(self.photos_empty)

        self.tasks.run(work, done, library=path)

    def _photo_double_clicked(self, index) -> None:
        cid = self.current_id()
        if cid is not None and index.isValid():
            self.photo_activated.emit(cid, self.photos_model.photo_id(index.row()))

    def _fill_refs(self, concept_id: int, refs) -> None:
        from ...core.concepts import reference_label, reference_path
        self.refs.clear()
        for i, ref in enumerate(refs):
            try:
                path = reference_path(self.lib, ref)
                label = os.path.basename(path) if ref.photo_id is not None else reference_label(path)
            except LibraryError:
                path, label = None, "(photo gone)"
            it = QListWidgetItem(("★ " if i == 0 else "") + label + ("\n▣ box" if ref.box else ""))
            it.setData(Qt.ItemDataRole.UserRole, ref.id)
            it.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            it.setToolTip((path or "") + ("\nThe reference the model sees" if i == 0 else ""))
            self.refs.addItem(it)
            if path:
                request_ref_thumb(self.loader, ("ref", ref.id, ref.box), path, ref.box)
        if not refs:
            it = QListWidgetItem("No reference photo yet.\nAdd one so the model knows who this is.")
            it.setFlags(Qt.ItemFlag.NoItemFlags)
            self.refs.addItem(it)
        self.ref_remove_btn.setEnabled(bool(refs))
        self._update_ref_buttons()

    def _update_ref_buttons(self) -> None:
        it = self.refs.currentItem()
        rid = it.data(Qt.ItemDataRole.UserRole) if it is not None else None
        # the first row is already the primary reference
        self.ref_primary_btn.setEnabled(rid is not None and self.refs.row(it) > 0)

    def _ref_thumb_ready(self, key, image) -> None:
        if not (isinstance(key, tuple) and key[0] == "ref"):
            return
        for i in range(self.refs.count()):
            it = self.refs.item(i)
            if it.data(Qt.ItemDataRole.UserRole) == key[1]:
                it.setIcon(QIcon(QPixmap.fromImage(image)))

    # ------------------------------------------------------------------ edits
    def _form_state(self) -> tuple[str, str, str]:
        return self.name_edit.text().strip(), self.kind_edit.currentData(), " ".join(self.info_edit.text().split())

    def _dirty(self) -> None:
        shown = getattr(self, "_shown", None)
        dirty = shown is not None and self._form_state() != shown
        self.save_btn.setEnabled(dirty)
        self.revert_btn.setEnabled(dirty)
        if dirty:  # validate as the user types, with the library's own messages
            try:
                validate_name(self.name_edit.text())
                validate_info(self.info_edit.text())
                show_error(self.error, None)
            except ConceptError as exc:
                show_error(self.error, str(exc))
                self.save_btn.setEnabled(False)
        else:
            show_error(self.error, None)

    def save_changes(self) -> bool:
        cid = self.current_id()
        shown = getattr(self, "_shown", None)
        if cid is None or shown is None:
            return False
        after = self._form_state()
        if after == shown:
            return False
        try:
            with self.lib.transaction():
                if after[0] != shown[0]:
                    self.lib.concepts.rename(shown[0], after[0])
                self.lib.concepts.update(after[0], info=after[2], kind=after[1])
        except (LibraryError, ConceptError) as exc:
            show_error(self.error, str(exc))
            return False
        new = self.lib.concepts.get(cid)
        self.undo.push(ConceptEditCommand(self.lib, cid, shown, (new.name, new.kind, new.info), self._concept_changed))
        self._concept_changed(cid)
        return True

    def _concept_changed(self, cid: int) -> None:
        self.reload(select=cid)
        self.concepts_changed.emit()

    def add_concept(self, name: str = "", photo_id: int | None = None) -> ConceptDialog:
        dlg = ConceptDialog(self.lib, self.tasks, self.loader, name=name, photo_id=photo_id,
                            browser_selection=self.browser_selection, parent=self.window())
        dlg.created.connect(self._concept_changed)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.open()
        self._dialog = dlg
        return dlg

    def _add_ref(self, *, photo_id: int | None = None, file_path: str | None = None, box: Box | None = None):
        cid = self.current_id()
        if cid is None:
            return
        name = self.lib.concepts.get(cid).name
        if photo_id is not None:
            try:
                self.lib.concepts.add_ref(name, photo_id=photo_id, box=box)
            except (LibraryError, ConceptError) as exc:
                show_error(self.ref_error, str(exc))
                return
            self._concept_changed(cid)
            return
        path = self.lib.path

        def work(lib):
            from ...core.concepts import import_reference_file
            import_reference_file(lib, name, file_path, box=box)

        self.tasks.run(work, lambda _: self._concept_changed(cid), lambda m, d: show_error(self.ref_error, m), library=path)

    def add_ref_from_library(self) -> None:
        if self.current_id() is None:
            return
        dlg = PhotoPickerDialog(self.lib, self.tasks, self.loader, self.browser_selection, self)
        if dlg.exec() != QDialog.DialogCode.Accepted or dlg.photo_id() is None:
            return
        p = self.lib.photos.get(dlg.photo_id())
        box = self._ask_box(p.fs_path, (p.width, p.height))
        if box is not False:
            self._add_ref(photo_id=p.id, box=box)

    def add_ref_from_file(self) -> None:
        if self.current_id() is None:
            return
        pattern = " ".join(f"*{e}" for e in sorted(SUPPORTED_EXTENSIONS))
        path = choose_open_file(self, "Reference photo", os.path.expanduser("~"), f"Images ({pattern})",
                               library=self.lib)
        if not path:
            return
        box = self._ask_box(path, None)
        if box is not False:
            self._add_ref(file_path=path, box=box)

    def _ask_box(self, path: str, full_size) -> Box | None | bool:
        name = self.lib.concepts.get(self.current_id()).name
        dlg = BoxDialog(self.tasks, path, f"Where is {name}?", full_size, None, self)
        self._box_dialog = dlg
        return dlg.box if dlg.exec() == QDialog.DialogCode.Accepted else False

    def remove_ref(self) -> None:
        it = self.refs.currentItem()
        cid = self.current_id()
        if it is None or cid is None or it.data(Qt.ItemDataRole.UserRole) is None:
            return
        try:
            self.lib.concepts.remove_ref(it.data(Qt.ItemDataRole.UserRole))
        except LibraryError as exc:
            show_error(self.ref_error, str(exc))
            return
        self._concept_changed(cid)

    def make_primary_ref(self) -> None:
        """The selected reference becomes the one the model sees (position 0). Reference edits are not on
        the undo stack (adding/removing aren't either); choosing the old one again reverts it."""
        it = self.refs.currentItem()
        cid = self.current_id()
        if it is None or cid is None or it.data(Qt.ItemDataRole.UserRole) is None:
            return
        try:
            self.lib.concepts.set_primary_ref(it.data(Qt.ItemDataRole.UserRole))
        except LibraryError as exc:
            show_error(self.ref_error, str(exc))
            return
        self._concept_changed(cid)

    def merge(self) -> bool:
        cid = self.current_id()
        if cid is None:
            return False
        src = self.lib.concepts.get(cid)
        others = [c for c in self.lib.concepts.all() if c.id != cid]
        if not others:
            show_error(self.error, "there is no one else to merge with")
            return False
        dlg = QDialog(self)
        dlg.setWindowTitle(f"Merge <{src.name}>")
        lay = QVBoxLayout(dlg)
        lay.addWidget(QLabel(f"Merge <b>{html.escape(src.name)}</b> into:", textFormat=Qt.TextFormat.RichText))
        combo = QComboBox()
        for c in others:
            combo.addItem(f"{c.name}  ({KIND_LABELS.get(c.kind, c.kind).lower()})", c.id)
        lay.addWidget(combo)
        lay.addWidget(QLabel(f"Their reference photos, photo tags and regions move over and <{src.name}> "
                             "disappears. The other entry's name, kind and info are kept. This cannot be undone.",
                             wordWrap=True))
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        bb.button(QDialogButtonBox.StandardButton.Ok).setText("Merge")
        bb.accepted.connect(dlg.accept)
        bb.rejected.connect(dlg.reject)
        lay.addWidget(bb)
        self._merge_dialog = (dlg, combo)
        if dlg.exec() != QDialog.DialogCode.Accepted:
            return False
        target = self.lib.concepts.get(combo.currentData())
        try:
            merged = self.lib.concepts.merge(src.name, target.name)
        except LibraryError as exc:
            show_error(self.error, str(exc))
            return False
        self.undo.clear()  # earlier commands may refer to the merged-away entry
        self._concept_changed(merged.id)
        return True

    def delete(self) -> bool:
        cid = self.current_id()
        if cid is None:
            return False
        c = self.lib.concepts.get(cid)
        n_photos = self.lib.concepts.photo_count(cid)
        n_refs = len(self.lib.concepts.refs(cid))
        box = QMessageBox(QMessageBox.Icon.Warning, f"Delete <{c.name}>?",
                          f"Delete <b>{html.escape(c.name)}</b> from this library?",
                          QMessageBox.StandardButton.Cancel, self)
        box.setInformativeText(f"Their {count(n_refs, 'reference photo')} and the tags on {count(n_photos, 'photo')} are removed. "
                               "Captions already written keep their text. Your photo files are not touched. "
                               "This cannot be undone.")
        delete = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        self._confirm = box
        box.exec()
        if box.clickedButton() is not delete:
            return False
        try:
            self.lib.concepts.remove(c.name)
        except LibraryError as exc:
            show_error(self.error, str(exc))
            return False
        self.undo.clear()
        self.reload()
        self.concepts_changed.emit()
        return True

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
from dataclasses import dataclass

import shiboken6
from PySide6.QtCore import QAbstractListModel, QModelIndex, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPalette, QPen, QPixmap, QUndoCommand, QUndoStack
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QFrame, QHBoxLayout,
    QLabel, QLineEdit, QListView, QListWidget, QListWidgetItem, QMessageBox, QPushButton,
    QStackedWidget, QStyledItemDelegate, QVBoxLayout, QWidget,
)

from ...core.concepts import KINDS, MAX_INFO_LENGTH, ConceptError, validate_info, validate_name
from ...core.images import SUPPORTED_EXTENSIONS
from ...core.library import Box, Library, LibraryError, check_box
from ..dialogs.files import choose_open_file, choose_open_files
from .browser import EmptyState, PhotoFilter, PhotoGridView, PhotoListModel, query_photo_ids
from ..widgets.painting import begin_row, draw_round_pixmap
from ..tasks import TaskRunner
from ..widgets.images import load_image_scaled
from ..widgets.thumbnails import ThumbnailLoader
from .layout import heading, split_page
from ..wording import count

log = logging.getLogger(__name__)

KIND_LABELS = {"person": "Person", "pet": "Pet", "other": "Other"}
REF_THUMB = 112


def _error_label() -> QLabel:
    lab = QLabel(wordWrap=True)
    lab.setObjectName("inlineError")
    lab.setStyleSheet("QLabel#inlineError { color: #d64541; }")
    lab.hide()
    return lab


def _show_error(label: QLabel, text: str | None) -> None:
    label.setText(text or "")
    label.setVisible(bool(text))


# --------------------------------------------------------------------------------------------------
# Reference images: what a reference shows (library photo or copied file, optionally a box)
# --------------------------------------------------------------------------------------------------

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


def request_ref_thumb(loader: ThumbnailLoader, key, path: str, box: Box | None, side: int = REF_THUMB) -> None:
    def make():
        img, _, _ = load_image_scaled(path, side, box)
        return img
    loader.request(key, make)


# --------------------------------------------------------------------------------------------------
# Drawing a box on a photo
# --------------------------------------------------------------------------------------------------

class BoxCanvas(QWidget):
    """Shows an image; drag to draw a box. `box` is in pixels of the full-size displayed photo."""

    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.pixmap: QPixmap | None = None
        self.full = QSize()
        self.box: Box | None = None
        self._drag: QPointF | None = None
        self.message = "Loading…"
        self.setMinimumSize(480, 360)
        self.setCursor(Qt.CursorShape.CrossCursor)

    def set_image(self, pixmap: QPixmap | None, full: QSize, message: str = "") -> None:
        self.pixmap, self.full, self.message = pixmap, full, message
        self.update()

    def set_box(self, box: Box | None) -> None:
        self.box = box
        self.update()
        self.changed.emit()

    def image_rect(self) -> QRectF:
        if self.pixmap is None:
            return QRectF()
        s = self.pixmap.size().scaled(self.width() - 12, self.height() - 12, Qt.AspectRatioMode.KeepAspectRatio)
        return QRectF((self.width() - s.width()) / 2, (self.height() - s.height()) / 2, s.width(), s.height())

    def _to_full(self, p: QPointF) -> QPointF:
        r = self.image_rect()
        x = min(max(p.x(), r.left()), r.right())
        y = min(max(p.y(), r.top()), r.bottom())
        return QPointF((x - r.x()) * self.full.width() / r.width(), (y - r.y()) * self.full.height() / r.height())

    def mousePressEvent(self, e) -> None:
        if self.pixmap is not None and e.button() == Qt.MouseButton.LeftButton:
            self._drag = self._to_full(e.position())
            self.set_box(None)

    def mouseMoveEvent(self, e) -> None:
        if self._drag is not None:
            self._set_from(self._drag, self._to_full(e.position()))

    def mouseReleaseEvent(self, e) -> None:
        if self._drag is not None:
            self._set_from(self._drag, self._to_full(e.position()))
            self._drag = None
            if self.box is not None and (self.box.w < 4 or self.box.h < 4):
                self.set_box(None)

    def _set_from(self, a: QPointF, b: QPointF) -> None:
        x0, x1 = sorted((a.x(), b.x()))
        y0, y1 = sorted((a.y(), b.y()))
        x0, y0 = max(0, int(round(x0))), max(0, int(round(y0)))
        x1 = min(self.full.width(), int(round(x1)))
        y1 = min(self.full.height(), int(round(y1)))
        self.set_box(Box(x0, y0, max(0, x1 - x0), max(0, y1 - y0)))

    def paintEvent(self, e) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        if self.pixmap is None:
            p.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.message)
            return
        r = self.image_rect()
        p.drawPixmap(r.toRect(), self.pixmap)
        if self.box is not None and self.full.width():
            sx, sy = r.width() / self.full.width(), r.height() / self.full.height()
            br = QRectF(r.x() + self.box.x * sx, r.y() + self.box.y * sy, self.box.w * sx, self.box.h * sy)
            shade = QColor(0, 0, 0, 110)
            for part in (QRectF(r.left(), r.top(), r.width(), br.top() - r.top()),
                         QRectF(r.left(), br.bottom(), r.width(), r.bottom() - br.bottom()),
                         QRectF(r.left(), br.top(), br.left() - r.left(), br.height()),
                         QRectF(br.right(), br.top(), r.right() - br.right(), br.height())):
                p.fillRect(part, shade)
            p.setPen(QPen(QColor("white"), 2, Qt.PenStyle.DashLine))
            p.drawRect(br)


class BoxDialog(QDialog):
    """'Draw a box around the face': returns a Box (or None: use the whole photo)."""

    def __init__(self, tasks: TaskRunner, path: str, title: str, full_size: tuple[int, int] | None = None,
                 box: Box | None = None, parent=None, hint: str | None = None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(760, 620)
        lay = QVBoxLayout(self)
        hint = QLabel(hint or "Drag a box around the face (or the whole pet). The model sees this crop as the "
                      "reference. Leave it empty to use the whole photo.", wordWrap=True)
        self.canvas = BoxCanvas()
        self.canvas.box = box
        self.info = QLabel()
        self.info.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.error = _error_label()
        self.canvas.changed.connect(self._changed)
        bb = QDialogButtonBox()
        self.ok = bb.addButton("Use box", QDialogButtonBox.ButtonRole.AcceptRole)
        self.whole = bb.addButton("Use whole photo", QDialogButtonBox.ButtonRole.AcceptRole)
        bb.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.whole.clicked.connect(lambda: self.canvas.set_box(None))
        for b in (self.ok, self.whole):
            b.setAutoDefault(False)
        bb.accepted.connect(self.accept)
        bb.rejected.connect(self.reject)
        lay.addWidget(hint)
        lay.addWidget(self.canvas, 1)
        lay.addWidget(self.info)
        lay.addWidget(self.error)
        lay.addWidget(bb)
        self._changed()

        def work():
            return load_image_scaled(path, 1400, full_size=full_size)

        def done(result):
            if not shiboken6.isValid(self):  # closed (and deleted) before the photo was decoded
                return
            img, w, h = result
            self.canvas.set_image(QPixmap.fromImage(img), QSize(w, h))
            self._changed()

        def failed(message, details):
            if not shiboken6.isValid(self):
                return
            self.canvas.set_image(None, QSize(), f"Cannot show this photo:\n{message}")
            _show_error(self.error, message)
            self.ok.setEnabled(False)

        tasks.run(work, done, failed)

    @property
    def box(self) -> Box | None:
        return self.canvas.box

    def _changed(self) -> None:
        b = self.canvas.box
        self.ok.setEnabled(b is not None)
        # Enter takes what is on screen: the drawn box, or the whole photo when there is none (two accept
        # buttons: Qt would otherwise make the first enabled one the default, and with a box drawn Enter
        # could throw it away)
        self.ok.setDefault(b is not None)
        self.whole.setDefault(b is None)
        if b is None:
            self.info.setText("No box: the whole photo is used.")
            _show_error(self.error, None)
            return
        self.info.setText(f"Box: {b.w} × {b.h} pixels at ({b.x}, {b.y})")
        try:
            check_box(b, self.canvas.full.width() or None, self.canvas.full.height() or None)
            _show_error(self.error, None)
        except LibraryError as exc:
            _show_error(self.error, str(exc))
            self.ok.setEnabled(False)


# --------------------------------------------------------------------------------------------------
# Choosing a library photo
# --------------------------------------------------------------------------------------------------

class PhotoPickerDialog(QDialog):
    """Pick one photo from the library (search by caption); the browser's selection is shown first."""

    def __init__(self, library: Library, tasks: TaskRunner, loader: ThumbnailLoader,
                 preselect: list[int] | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Choose a reference photo from the library")
        self.resize(820, 600)
        self.lib, self.tasks = library, tasks
        self._gen = 0
        lay = QVBoxLayout(self)
        self.search = QLineEdit(placeholderText="Search captions…", clearButtonEnabled=True)
        self.search.textChanged.connect(self._reload)
        self.model = PhotoListModel(library, loader, self)
        self.view = PhotoGridView()
        self.view.set_thumb_size(120)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setModel(self.model)
        self.view.doubleClicked.connect(lambda _: self.accept())
        self.empty = QLabel("No photos in the library yet: import a folder first, or add a reference from a file.",
                            alignment=Qt.AlignmentFlag.AlignCenter, wordWrap=True)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.view)
        self.stack.addWidget(self.empty)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok = bb.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setText("Use this photo")
        bb.accepted.connect(self.accept)
        bb.rejected.connect(self.reject)
        lay.addWidget(self.search)
        lay.addWidget(self.stack, 1)
        lay.addWidget(bb)
        self._preselect = list(preselect or [])
        self.view.selectionModel().selectionChanged.connect(lambda *_: self.ok.setEnabled(self.photo_id() is not None))
        self.ok.setEnabled(False)
        self._reload()

    def _reload(self) -> None:
        self._gen += 1
        gen = self._gen
        text = self.search.text()
        path = self.lib.path

        def work(lib):
            f = PhotoFilter(search=text)
            try:
                return query_photo_ids(lib, f)
            except LibraryError:  # "empty search" while typing spaces
                return query_photo_ids(lib, PhotoFilter())

        def done(ids):
            if gen != self._gen:
                return
            from array import array
            if self._preselect and not text:
                pre = [i for i in self._preselect if i in set(ids)]
                rest = [i for i in ids if i not in set(pre)]
                ids = array("q", pre + rest)
            self.model.set_ids(ids)
            self.stack.setCurrentWidget(self.view if len(ids) else self.empty)
            if len(ids) and self._preselect and not text:
                self.view.setCurrentIndex(self.model.index(0))

        self.tasks.run(work, done, library=path)

    def photo_id(self) -> int | None:
        idx = self.view.currentIndex()
        if not idx.isValid() or not self.view.selectionModel().isSelected(idx):
            return None
        return self.model.photo_id(idx.row())


# --------------------------------------------------------------------------------------------------
# Add a person or pet
# --------------------------------------------------------------------------------------------------

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
        self.error = _error_label()
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
                _show_error(self.error, problem if self.info.text() else None)
                return False
        if problem is None and not self.refs:
            self.ok.setToolTip("Add at least one reference photo so the model knows who this is")
        else:
            self.ok.setToolTip("")
        _show_error(self.error, problem)
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
            _show_error(self.error, message)

        self.ok.setEnabled(False)
        self.ok.setText("Adding…")
        _show_error(self.error, None)
        self.tasks.run(work, done, failed, library=path)

    def done(self, r: int) -> None:
        try:
            self.loader.ready.disconnect(self._thumb_ready)
        except (RuntimeError, TypeError):
            pass
        super().done(r)


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

class ConceptListModel(QAbstractListModel):
    ConceptRole = Qt.ItemDataRole.UserRole + 1

    def __init__(self, library: Library, loader: ThumbnailLoader, parent=None):
        super().__init__(parent)
        self.lib, self.loader = library, loader
        self.rows: list[dict] = []
        self.icons: dict[int, QPixmap] = {}
        self.broken: set[int] = set()
        loader.ready.connect(self._ready)
        loader.failed.connect(self._failed)

    def reload(self) -> None:
        self.beginResetModel()
        from ...core.training_photos import PhotoCounts, photo_counts

        # the photos training learns from (not references): the count Personalize and the trainer show
        counts = photo_counts(self.lib)
        tagged = self.lib.concepts.photo_counts()
        self.rows = []
        for c in self.lib.concepts.all():
            refs = self.lib.concepts.refs(c.id)
            n = counts.get(c.id) or PhotoCounts(0, len(refs), 0)
            self.rows.append({"concept": c, "refs": refs, "photos": n.photos, "counts": n,
                              "tagged": tagged.get(c.id, 0)})
        self.icons.clear()
        self.broken.clear()
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def row_of(self, concept_id: int) -> int | None:
        for i, r in enumerate(self.rows):
            if r["concept"].id == concept_id:
                return i
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        c = r["concept"]
        if role == Qt.ItemDataRole.DisplayRole:
            return c.name
        if role == self.ConceptRole:
            return r
        if role == Qt.ItemDataRole.DecorationRole:
            pm = self.icons.get(c.id)
            if pm is None and r["refs"] and c.id not in self.broken:
                ref = r["refs"][0]
                try:
                    from ...core.concepts import reference_path
                    path = reference_path(self.lib, ref)
                except LibraryError:
                    self.broken.add(c.id)
                    return None
                request_ref_thumb(self.loader, ("concept", c.id, ref.id), path, ref.box, 96)
            return pm
        if role == Qt.ItemDataRole.ToolTipRole:
            return c.info or None
        return None

    def _ready(self, key, image) -> None:
        if isinstance(key, tuple) and key[0] == "concept":
            self.icons[key[1]] = QPixmap.fromImage(image)
            self._changed(key[1])

    def _failed(self, key, reason) -> None:
        if isinstance(key, tuple) and key[0] == "concept":
            self.broken.add(key[1])
            self._changed(key[1])

    def _changed(self, cid: int) -> None:
        row = self.row_of(cid)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx)


def concept_meta(row: dict) -> str:
    """'3 photos  ·  1 reference', or '0 photos (all 4 tagged photos are references)  ·  4 references'."""
    counts, n_refs = row["counts"], len(row["refs"])
    head = counts.text() if counts.reference_only else f"{counts.photos} photo{'s' if counts.photos != 1 else ''}"
    return f"{head}  ·  {n_refs} reference{'s' if n_refs != 1 else ''}"


class ConceptDelegate(QStyledItemDelegate):
    """A row: round reference thumbnail, name, kind · photos · references, info."""

    SIZE = 64

    def sizeHint(self, option, index) -> QSize:
        return QSize(260, self.SIZE + 16)

    def paint(self, p: QPainter, option, index) -> None:
        r = begin_row(p, option)
        pal = option.palette
        row = index.data(ConceptListModel.ConceptRole)
        c = row["concept"]
        icon_r = QRectF(r.x() + 8, r.y() + (r.height() - self.SIZE) / 2, self.SIZE, self.SIZE)
        pm = index.data(Qt.ItemDataRole.DecorationRole)
        if not draw_round_pixmap(p, icon_r, pm if isinstance(pm, QPixmap) else None, pal):
            f = p.font()
            f.setPointSizeF(f.pointSizeF() * 1.6)
            p.setFont(f)
            p.setPen(pal.color(QPalette.ColorRole.Text))
            p.drawText(icon_r, Qt.AlignmentFlag.AlignCenter, c.name[:1].upper())
        x = icon_r.right() + 12
        w = r.right() - x - 6
        f = option.font
        bold = type(f)(f)
        bold.setBold(True)
        bold.setPointSizeF(f.pointSizeF() * 1.05)
        p.setFont(bold)
        p.setPen(pal.color(QPalette.ColorRole.Text))
        fm = p.fontMetrics()
        y = r.y() + 10
        p.drawText(QRectF(x, y, w, fm.height()), Qt.AlignmentFlag.AlignLeft,
                   fm.elidedText(c.name, Qt.TextElideMode.ElideRight, int(w)))
        y += fm.height() + 1
        p.setFont(f)
        fm = p.fontMetrics()
        n_refs = len(row["refs"])
        meta = f"{KIND_LABELS.get(c.kind, c.kind)}  ·  {concept_meta(row)}"
        p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
        p.drawText(QRectF(x, y, w, fm.height()), Qt.AlignmentFlag.AlignLeft, meta)
        y += fm.height() + 1
        if c.info:
            p.drawText(QRectF(x, y, w, fm.height()), Qt.AlignmentFlag.AlignLeft,
                       fm.elidedText(c.info, Qt.TextElideMode.ElideRight, int(w)))
        elif not n_refs:
            p.setPen(QColor("#d68a00"))
            p.drawText(QRectF(x, y, w, fm.height()), Qt.AlignmentFlag.AlignLeft, "⚠ no reference photo yet")
        p.restore()


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
        self.error = _error_label()
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
        self.ref_error = _error_label()
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
        _show_error(self.error, None)
        _show_error(self.ref_error, None)
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
                _show_error(self.error, None)
            except ConceptError as exc:
                _show_error(self.error, str(exc))
                self.save_btn.setEnabled(False)
        else:
            _show_error(self.error, None)

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
            _show_error(self.error, str(exc))
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
                _show_error(self.ref_error, str(exc))
                return
            self._concept_changed(cid)
            return
        path = self.lib.path

        def work(lib):
            from ...core.concepts import import_reference_file
            import_reference_file(lib, name, file_path, box=box)

        self.tasks.run(work, lambda _: self._concept_changed(cid), lambda m, d: _show_error(self.ref_error, m), library=path)

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
            _show_error(self.ref_error, str(exc))
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
            _show_error(self.ref_error, str(exc))
            return
        self._concept_changed(cid)

    def merge(self) -> bool:
        cid = self.current_id()
        if cid is None:
            return False
        src = self.lib.concepts.get(cid)
        others = [c for c in self.lib.concepts.all() if c.id != cid]
        if not others:
            _show_error(self.error, "there is no one else to merge with")
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
            _show_error(self.error, str(exc))
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
            _show_error(self.error, str(exc))
            return False
        self.undo.clear()
        self.reload()
        self.concepts_changed.emit()
        return True

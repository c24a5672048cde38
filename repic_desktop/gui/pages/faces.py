"""Unknown Faces: the groups of faces the matcher found but could not name, so each person is named once.

Why it is shaped like this:
- `face_clusters()` groups every unnamed face in the library (a numpy pass over all their vectors), so
  the list is computed on the task pool with its own Library; the worker returns plain rows (cluster,
  faces with their photo paths and boxes) and the GUI thread hands them to the model in one reset.
- Face thumbnails are crops of full photos: `FaceThumbs` asks the thumbnail pool for them only when a
  row or a face is painted (newest request first, like the photo grid), and keeps the results.
- Naming a cluster tags every photo in it and may create a person: a few hundred row writes, done on
  the task pool too, after which the page, the People page and the photo panel reload.
- "Ignore" (a whole cluster) and "Not a face / ignore" (one face, context menu) dismiss detections for
  good; they run on the pool like naming. Nothing is lost: "Show ignored faces" lists them as one more
  row, from which they can be brought back.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPalette, QPixmap, QUndoStack
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QCompleter, QFrame, QHBoxLayout, QLabel, QLineEdit, QListView, QMenu,
    QPushButton, QStackedWidget, QStyledItemDelegate, QVBoxLayout, QWidget,
)

from ...core.concepts import ConceptError, validate_name
from ...core.library import Box, Library
from ..widgets.banner import EmptyState
from ..captioning.index_controller import IndexController, service_or_none
from ..widgets.painting import begin_row, draw_round_pixmap
from .people_model import KIND_LABELS
from ..tasks import TaskRunner
from ..widgets.images import load_image_scaled
from ..widgets.thumbnails import ThumbnailLoader
from .layout import heading, split_page
from ..wording import count
from .faces_undo import IgnoreFacesCommand, NameClusterCommand, ignore_recorded, name_recorded

log = logging.getLogger(__name__)

FACE_THUMB = 96          # decoded size of a face crop (drawn at 40-96 px)
ROW_FACES = 5            # faces shown in a cluster's row
DETAIL_LIMIT = 200       # faces shown for the selected cluster (a huge cluster is named by its best faces)
MARGIN = 0.25            # context around a detector box, as a fraction of its size: a bare box looks cut off


@dataclass(frozen=True)
class Face:
    crop_id: int
    photo_id: int
    path: str
    filename: str
    box: Box
    score: float


IGNORED_ROW = -1          # the id of the "Ignored faces" row (cluster ids are positive)


@dataclass
class ClusterRow:
    id: int
    size: int
    photos: int
    faces: list[Face] = field(default_factory=list)
    ignored: bool = False     # the "Ignored faces" row, not a cluster


def padded(box: Box, width: int | None, height: int | None, margin: float = MARGIN) -> Box:
    """`box` grown by `margin` on each side, kept inside the photo when its size is known."""
    dx, dy = int(box.w * margin), int(box.h * margin)
    x0, y0, x1, y1 = box.x - dx, box.y - dy, box.x + box.w + dx, box.y + box.h + dy
    if width and height:
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    return Box(x0, y0, max(1, x1 - x0), max(1, y1 - y0))


def load_clusters(lib: Library, service, min_size: int = 1, show_ignored: bool = False) -> list[ClusterRow]:
    """Worker side: the service's clusters with what painting them needs (paths, padded boxes); with
    show_ignored, the dismissed faces as a last row."""
    photos: dict[int, object] = {}

    def faces_of(members) -> list[Face]:
        faces = []
        for m in members:
            p = photos.get(m.photo_id)
            if p is None:
                p = photos[m.photo_id] = lib.photos.get(m.photo_id)
            faces.append(Face(m.crop_id, m.photo_id, p.fs_path, p.filename, padded(m.box, p.width, p.height),
                              m.score))
        return faces

    rows = []
    for c in service.face_clusters(lib, min_size=min_size):
        faces = faces_of(c.members)
        rows.append(ClusterRow(c.id, c.size, len({f.photo_id for f in faces}), faces))
    if show_ignored:
        faces = faces_of(service.ignored_faces(lib))
        if faces:
            rows.append(ClusterRow(IGNORED_ROW, len(faces), len({f.photo_id for f in faces}), faces, ignored=True))
    return rows


def face_key(face: Face) -> tuple:
    # SQLite may give a re-indexed photo's new crop the id of a deleted one: the id alone is not the pixels
    return face.crop_id, face.path, face.box


class FaceThumbs(QObject):
    """Face crops, made on the thumbnail pool when first asked for."""

    ready = Signal(int)      # crop id

    def __init__(self, loader: ThumbnailLoader, parent=None):
        super().__init__(parent)
        self.loader = loader
        self.pixmaps: dict[tuple, QPixmap] = {}      # face_key -> crop
        self.broken: set[tuple] = set()
        loader.ready.connect(self._ready)
        loader.failed.connect(self._failed)

    def get(self, face: Face) -> QPixmap | None:
        key = face_key(face)
        pm = self.pixmaps.get(key)
        if pm is None and key not in self.broken:
            path, box = face.path, face.box

            def make():
                img, _, _ = load_image_scaled(path, FACE_THUMB, box)
                return img

            self.loader.request(("face",) + key, make)
        return pm

    def keep_only(self, faces) -> None:
        """Forget the crops no cluster shows any more."""
        keys = {face_key(f) for f in faces}
        self.pixmaps = {k: v for k, v in self.pixmaps.items() if k in keys}
        self.broken &= keys

    def _ready(self, key, image) -> None:
        if isinstance(key, tuple) and key[0] == "face":
            self.pixmaps[key[1:]] = QPixmap.fromImage(image)
            self.ready.emit(key[1])

    def _failed(self, key, reason) -> None:
        if isinstance(key, tuple) and key[0] == "face":
            log.info("cannot show face %s: %s", key[1], reason)
            self.broken.add(key[1:])
            self.ready.emit(key[1])


class ClusterListModel(QAbstractListModel):
    """One row per unknown-face cluster, largest first (the service's order)."""

    ClusterRole = Qt.ItemDataRole.UserRole + 1

    def __init__(self, thumbs: FaceThumbs, parent=None):
        super().__init__(parent)
        self.thumbs = thumbs
        self.rows: list[ClusterRow] = []
        self._row_of_crop: dict[int, int] = {}
        thumbs.ready.connect(self._face_ready)

    def set_rows(self, rows: list[ClusterRow]) -> None:
        self.beginResetModel()
        self.rows = rows
        # only the faces a row paints can change it
        self._row_of_crop = {f.crop_id: i for i, r in enumerate(rows) for f in r.faces[:ROW_FACES]}
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def row_of(self, cluster_id: int) -> int | None:
        return next((i for i, r in enumerate(self.rows) if r.id == cluster_id), None)

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{r.size} ignored face{'s' if r.size != 1 else ''}" if r.ignored else \
                f"{r.size} face{'s' if r.size != 1 else ''}"
        if role == self.ClusterRole:
            return r
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{count(r.size, 'face')} in {count(r.photos, 'photo')}"
        return None

    def _face_ready(self, crop_id: int) -> None:
        row = self._row_of_crop.get(crop_id)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx)


class FaceGridModel(QAbstractListModel):
    """The faces of the selected cluster (icons come from FaceThumbs as they are painted)."""

    def __init__(self, thumbs: FaceThumbs, parent=None):
        super().__init__(parent)
        self.thumbs = thumbs
        self.faces: list[Face] = []
        self._row_of_crop: dict[int, int] = {}
        self._placeholder: QPixmap | None = None
        thumbs.ready.connect(self._face_ready)

    def placeholder(self) -> QPixmap:
        """Shown until a crop is decoded: an item without a picture has no size, so the view would lay
        the grid out empty and never ask for the faces."""
        if self._placeholder is None:
            pm = QPixmap(FACE_THUMB, FACE_THUMB)
            pm.fill(QColor(128, 128, 128, 40))
            self._placeholder = pm
        return self._placeholder

    def set_faces(self, faces: list[Face]) -> None:
        self.beginResetModel()
        self.faces = faces[:DETAIL_LIMIT]
        self._row_of_crop = {f.crop_id: i for i, f in enumerate(self.faces)}
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.faces)

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        f = self.faces[index.row()]
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbs.get(f) or self.placeholder()
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{f.filename} (face found with confidence {f.score:.2f})"
        if role == Qt.ItemDataRole.UserRole:
            return f.photo_id
        return None

    def _face_ready(self, crop_id: int) -> None:
        row = self._row_of_crop.get(crop_id)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])


def _draw_face(p: QPainter, rect: QRectF, pm: QPixmap | None, pal: QPalette) -> None:
    draw_round_pixmap(p, rect, pm, pal)
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.setPen(pal.color(QPalette.ColorRole.Window))  # a thin ring separates the overlapping faces
    p.drawEllipse(rect)


class ClusterDelegate(QStyledItemDelegate):
    """A row: up to five overlapping round faces, then '7 faces · 5 photos'."""

    FACE = 52

    def __init__(self, thumbs: FaceThumbs, parent=None):
        super().__init__(parent)
        self.thumbs = thumbs

    def sizeHint(self, option, index) -> QSize:
        return QSize(300, self.FACE + 16)

    def paint(self, p: QPainter, option, index) -> None:
        r = begin_row(p, option)
        pal = option.palette
        row: ClusterRow = index.data(ClusterListModel.ClusterRole)
        step = self.FACE * 0.72
        y = r.y() + (r.height() - self.FACE) / 2
        x = r.x() + 8
        for f in row.faces[:ROW_FACES]:
            _draw_face(p, QRectF(x, y, self.FACE, self.FACE), self.thumbs.get(f), pal)
            x += step
        x = r.x() + 8 + step * (min(ROW_FACES, len(row.faces)) - 1) + self.FACE + 14
        w = r.right() - x - 6
        f = option.font
        bold = type(f)(f)
        bold.setBold(True)
        p.setFont(bold)
        p.setPen(pal.color(QPalette.ColorRole.Text))
        fm = p.fontMetrics()
        ty = r.y() + (r.height() - 2 * fm.height()) / 2
        p.drawText(QRectF(x, ty, w, fm.height()), Qt.AlignmentFlag.AlignLeft, index.data())
        p.setFont(f)
        p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
        p.drawText(QRectF(x, ty + fm.height(), w, fm.height()), Qt.AlignmentFlag.AlignLeft,
                   f"in {row.photos} photo{'s' if row.photos != 1 else ''}")
        p.restore()


class FacesPage(QWidget):
    """Clusters of unknown faces on the left; the chosen one's faces and "Name…" on the right."""

    concepts_changed = Signal()     # a cluster was named (a person may have been created, photos tagged)
    index_requested = Signal()      # the empty state's "Index Faces in Library"
    photo_activated = Signal(int)   # double-click on a face: show its photo
    ignored_changed = Signal()      # faces were ignored or brought back (and the page reloads)

    def __init__(self, library: Library, tasks: TaskRunner, loader: ThumbnailLoader, parent=None, *,
                 service=None, index: IndexController | None = None, undo: QUndoStack | None = None):
        super().__init__(parent)
        self.lib, self.tasks, self.loader = library, tasks, loader
        self.undo = undo if undo is not None else QUndoStack(self)   # the window's, so Ctrl+Z takes it back
        self._service = service
        self.index = index
        self._gen = 0
        self._concepts: dict[str, str] = {}       # casefolded name -> name, for the completer and "add to"
        self.loaded_once = False
        self.thumbs = FaceThumbs(loader, self)
        self.model = ClusterListModel(self.thumbs, self)

        # left: clusters
        title = heading("Unknown Faces", 1.3)
        self.summary = QLabel(wordWrap=True)
        self.summary.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.list = QListView()
        self.list.setModel(self.model)
        self.list.setItemDelegate(ClusterDelegate(self.thumbs, self.list))
        self.list.setUniformItemSizes(True)
        self.list.setFrameShape(QFrame.Shape.NoFrame)
        self.list.selectionModel().currentChanged.connect(lambda cur, _: self._show(cur))
        self.index_btn = QPushButton("Index faces in library")
        self.index_btn.setToolTip("Find the faces in every photo (new and changed photos only; runs in the background)")
        self.index_btn.clicked.connect(self.index_requested.emit)
        self.show_ignored = QCheckBox("Show ignored faces")
        self.show_ignored.setToolTip("List the faces you dismissed as one more group, so you can bring them back")
        self.show_ignored.toggled.connect(lambda _: self.reload())
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(8, 8, 4, 8)
        ll.addWidget(title)
        ll.addWidget(self.summary)
        ll.addWidget(self.list, 1)
        ll.addWidget(self.show_ignored)
        ll.addWidget(self.index_btn)

        # right: the selected cluster
        self.detail = QWidget()
        dl = QVBoxLayout(self.detail)
        dl.setContentsMargins(16, 12, 16, 12)
        self.header = heading("", 1.4)
        dl.addWidget(self.header)
        self.hint = QLabel(wordWrap=True)
        self.hint.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        dl.addWidget(self.hint)
        self.faces_model = FaceGridModel(self.thumbs, self)
        self.faces_view = QListView()
        self.faces_view.setViewMode(QListView.ViewMode.IconMode)
        self.faces_view.setIconSize(QSize(FACE_THUMB, FACE_THUMB))
        self.faces_view.setGridSize(QSize(FACE_THUMB + 12, FACE_THUMB + 12))
        self.faces_view.setMovement(QListView.Movement.Static)
        self.faces_view.setResizeMode(QListView.ResizeMode.Adjust)
        self.faces_view.setUniformItemSizes(True)
        self.faces_view.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.faces_view.setModel(self.faces_model)
        self.faces_view.doubleClicked.connect(
            lambda idx: self.photo_activated.emit(idx.data(Qt.ItemDataRole.UserRole)))
        self.faces_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.faces_view.customContextMenuRequested.connect(self._face_context_menu)
        dl.addWidget(self.faces_view, 1)
        self.form = QWidget()
        form = QHBoxLayout(self.form)
        form.setContentsMargins(0, 0, 0, 0)
        form.addWidget(QLabel("Name:"))
        self.name_edit = QLineEdit(placeholderText="A person or pet you have, or a new name")
        self.completer = QCompleter([], self)
        self.completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.name_edit.setCompleter(self.completer)
        self.name_edit.textChanged.connect(self._name_changed)
        self.name_edit.returnPressed.connect(self.name_selected)
        self.kind = QComboBox()
        for k in ("person", "pet", "other"):
            self.kind.addItem(KIND_LABELS[k], k)
        self.kind.setToolTip("Kind of a new entry (an existing person or pet keeps theirs)")
        self.name_btn = QPushButton("Name…")
        self.name_btn.setDefault(True)
        self.name_btn.clicked.connect(self.name_selected)
        form.addWidget(self.name_edit, 1)
        form.addWidget(self.kind)
        form.addWidget(self.name_btn)
        actions = QHBoxLayout()
        actions.addWidget(self.form, 1)
        self.ignore_btn = QPushButton("Ignore")
        self.ignore_btn.clicked.connect(self.ignore_selected)
        actions.addWidget(self.ignore_btn)
        dl.addLayout(actions)
        self.name_info = QLabel(wordWrap=True)
        self.name_info.setObjectName("inlineError")
        dl.addWidget(self.name_info)

        self.empty = EmptyState()
        self.right = QStackedWidget()
        self.right.addWidget(self.detail)
        self.right.addWidget(self.empty)
        self.splitter = split_page(self, left, self.right, (380, 660))
        if index is not None:
            index.changed.connect(self._index_changed)
        self._show_empty()

    # ------------------------------------------------------------------ data
    @property
    def service(self):
        return service_or_none(self._service)

    def reload(self) -> None:
        """Re-read the clusters in the background; the current one stays selected if it still exists."""
        svc = self.service
        self._gen += 1
        gen, path = self._gen, self.lib.path
        self._refresh_completer()
        if svc is None:
            self.model.set_rows([])
            self._show_empty()
            return

        show_ignored = self.show_ignored.isChecked()

        def work(lib):
            return load_clusters(lib, svc, show_ignored=show_ignored)

        def done(rows):
            if gen == self._gen:
                self._set_rows(rows)

        def failed(message, details):
            if gen == self._gen:
                log.error("cannot list unknown faces: %s\n%s", message, details)
                self.summary.setText(f"Cannot list unknown faces: {message}")

        self.summary.setText("Looking for unknown faces…")
        self.tasks.run(work, done, failed, library=path)

    def _set_rows(self, rows: list[ClusterRow]) -> None:
        keep = self.current_cluster()
        self.loaded_once = True
        self.thumbs.keep_only(f for r in rows for f in r.faces)
        self.model.set_rows(rows)
        groups = [r for r in rows if not r.ignored]
        n_faces = sum(r.size for r in groups)
        self.summary.setText(f"{count(len(groups), 'group')} of faces ({count(n_faces, 'face')}) that "
                             "match no one you have named, largest first." if groups else "")
        if rows:
            row = self.model.row_of(keep.id) if keep is not None else None
            self.list.setCurrentIndex(self.model.index(row if row is not None else 0))
            self._show(self.list.currentIndex())
        else:
            self._show_empty()

    def _refresh_completer(self) -> None:
        names = [c.name for c in self.lib.concepts.all()]
        self.completer.model().setStringList(names)
        self._concepts = {n.casefold(): n for n in names}

    def current_cluster(self) -> ClusterRow | None:
        idx = self.list.currentIndex()
        return idx.data(ClusterListModel.ClusterRole) if idx.isValid() else None

    # ------------------------------------------------------------------ showing
    def _show_empty(self) -> None:
        self.right.setCurrentWidget(self.empty)
        if self.service is None:
            self.empty.set("Face suggestions are not available",
                           "This build of RePIC Desktop has no face matcher (the retrieval package is missing).")
            self.index_btn.setEnabled(False)
            return
        if self.index is not None and self.index.active:
            self.empty.set("Indexing faces…",
                           "RePIC is finding the faces in your photos (progress in the Captioning dock). Faces it "
                           "cannot name will appear here, grouped by person.")
            return
        self.empty.set("No unknown faces",
                       "Run “Index faces” first: RePIC finds the faces in your photos and groups the ones it "
                       "cannot name yet, so you can name each person once.\n\nIf you have indexed already, every "
                       "face found belongs to someone you have named, or you ignored it (“Show ignored faces” "
                       "lists those).",
                       [("Index Faces in Library", self.index_requested.emit)])

    def _show(self, index: QModelIndex) -> None:
        row: ClusterRow | None = index.data(ClusterListModel.ClusterRole) if index.isValid() else None
        if row is None:
            self._show_empty()
            return
        self.right.setCurrentWidget(self.detail)
        faces = f"{row.size} face{'s' if row.size != 1 else ''} in {row.photos} photo{'s' if row.photos != 1 else ''}"
        self.form.setVisible(not row.ignored)
        if row.ignored:
            self.header.setText(f"Ignored · {faces}")
            self.hint.setText("Faces you dismissed: they are never suggested or grouped. Right-click one to bring "
                              "it back, or bring them all back.")
            self.ignore_btn.setText("Unignore all")
            self.ignore_btn.setToolTip("Make these unknown faces again (they are grouped with the others)")
        else:
            self.header.setText(f"Unknown person · {faces}")
            self.hint.setText("Who is this? Name them once and every photo in this group is tagged; new photos of "
                              "them are then suggested by name. Not a face, or a stranger? Ignore them (right-click "
                              "a face to ignore only that one).")
            self.ignore_btn.setText("Ignore")
            self.ignore_btn.setToolTip("Not a face, or no one you want to name (a stranger in the background): "
                                       "hide these faces for good. “Show ignored faces” brings them back.")
        self.ignore_btn.setEnabled(True)
        self.faces_model.set_faces(row.faces)
        self.name_edit.clear()
        self.name_info.clear()
        self._name_changed("")

    def _index_changed(self) -> None:
        self.index_btn.setEnabled(self.service is not None and not self.index.active)
        if self.right.currentWidget() is self.empty:
            self._show_empty()

    def _name_changed(self, text: str) -> None:
        name = text.strip()
        existing = self._concepts.get(name.casefold())
        self.kind.setEnabled(bool(name) and existing is None)
        self.name_btn.setEnabled(bool(name) and self.current_cluster() is not None)
        if existing:
            self._info(f"These faces will be added to {existing}.")
        elif name:
            try:
                validate_name(name)
            except ConceptError as exc:
                self._info(str(exc), error=True)
                self.name_btn.setEnabled(False)
                return
            self._info(f"A new {self.kind.currentText().lower()} “{name}” will be created.")
        else:
            self._info("")

    def _info(self, text: str, error: bool = False) -> None:
        self.name_info.setText(text)
        self.name_info.setStyleSheet("QLabel#inlineError { color: #d64541; }" if error else "")

    # ------------------------------------------------------------------ naming
    def name_selected(self) -> bool:
        """Name the selected cluster with the typed name (an existing person or pet, or a new one)."""
        row, svc = self.current_cluster(), self.service
        name = self.name_edit.text().strip()
        if row is None or row.ignored or svc is None or not name or not self.name_btn.isEnabled():
            return False
        existing = self._concepts.get(name.casefold())
        kind = self.kind.currentData()
        if existing:
            name = existing
        path, cid = self.lib.path, row.id
        self.name_btn.setEnabled(False)
        self._info(f"Naming {count(row.size, 'face')} {name}…")

        def work(lib):
            return name_recorded(lib, svc, cid, name, kind)

        def done(result):
            _concept, rec = result
            self._info("")
            self.name_edit.clear()
            self.undo.push(NameClusterCommand(self.lib, svc, rec, self._named_or_unnamed))
            self._named_or_unnamed()

        def failed(message, details):
            log.info("naming a face cluster failed: %s\n%s", message, details)
            self._info(message, error=True)
            self.name_btn.setEnabled(True)

        self.tasks.run(work, done, failed, library=path)
        return True

    def _named_or_unnamed(self) -> None:
        self.concepts_changed.emit()
        self.reload()

    def _ignored_or_back(self) -> None:
        self.ignored_changed.emit()
        self.reload()

    # ------------------------------------------------------------------ ignoring
    def ignore_selected(self) -> bool:
        """Ignore the selected cluster (or, on the "Ignored faces" row, bring all of them back)."""
        row = self.current_cluster()
        if row is None or self.service is None:
            return False
        if row.ignored:
            return self._run_ignore([f.crop_id for f in row.faces], ignore=False)
        return self._run_ignore([f.crop_id for f in row.faces], ignore=True, cluster_id=row.id)

    def face_menu(self, index: QModelIndex) -> QMenu | None:
        """The context menu of one face in the grid (built apart from showing it, so it can be tested)."""
        row = self.current_cluster()
        if row is None or not index.isValid() or self.service is None:
            return None
        face = self.faces_model.faces[index.row()]
        menu = QMenu(self)
        if row.ignored:
            menu.addAction("Unignore this face", lambda: self._run_ignore([face.crop_id], ignore=False))
        else:
            menu.addAction("Not a face / ignore", lambda: self._run_ignore([face.crop_id], ignore=True))
        menu.addAction("Show photo", lambda: self.photo_activated.emit(face.photo_id))
        return menu

    def _face_context_menu(self, pos) -> None:
        menu = self.face_menu(self.faces_view.indexAt(pos))
        if menu is not None:
            menu.exec(self.faces_view.viewport().mapToGlobal(pos))
            menu.deleteLater()

    def _run_ignore(self, crop_ids: list[int], *, ignore: bool, cluster_id: int | None = None) -> bool:
        path = self.lib.path
        self.ignore_btn.setEnabled(False)

        def work(lib):
            return ignore_recorded(lib, crop_ids, ignore, cluster_id)

        def done(changed):
            self.undo.push(IgnoreFacesCommand(self.lib, changed, ignore, self._ignored_or_back))
            self._ignored_or_back()

        def failed(message, details):
            log.info("ignoring faces failed: %s\n%s", message, details)
            self._info(message, error=True)
            self.ignore_btn.setEnabled(True)

        self.tasks.run(work, done, failed, library=path)
        return True

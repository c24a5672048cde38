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

from PySide6.QtCore import QModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QPalette, QUndoStack
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QCompleter, QFrame, QHBoxLayout, QLabel, QLineEdit, QListView,
    QMenu, QPushButton, QStackedWidget, QVBoxLayout, QWidget,
)

from ...core.concepts import ConceptError, validate_name
from ...core.library import Library
from ..widgets.banner import EmptyState
from ..captioning.index_controller import IndexController, service_or_none
from .people_model import KIND_LABELS
from ..tasks import TaskRunner
from ..widgets.thumbnails import ThumbnailLoader
from .layout import heading, split_page
from ..wording import count
from .faces_undo import IgnoreFacesCommand, NameClusterCommand, ignore_recorded, name_recorded
from .faces_model import (
    ClusterDelegate, ClusterListModel, ClusterRow, FACE_THUMB, FaceGridModel, FaceThumbs, load_clusters,
)

log = logging.getLogger(__name__)


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

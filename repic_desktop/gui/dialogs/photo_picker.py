"""The photo picker: choose reference photos for a person or pet from the library's own photos."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView, QDialog, QDialogButtonBox, QLabel, QLineEdit, QStackedWidget, QVBoxLayout,
)

from ...core.library import Library, LibraryError
from ...core.photo_queries import PhotoFilter, query_photo_ids
from ..pages.photo_model import PhotoListModel
from ..widgets.photo_grid import PhotoGridView
from ..tasks import TaskRunner
from ..widgets.thumbnails import ThumbnailLoader


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

"""Album browser: folder tree + thumbnail grid with filters, search, import (drag and drop) and rescan.

Why it is shaped like this (it must stay smooth on 100,000 photos):
- The grid's model holds only the *ids* of the photos that match the filter (an array of ints, queried
  in a worker with its own Library connection). Row data (file name, caption status, names) is fetched
  on demand in pages of PAGE_SIZE rows by primary key (a ~1 ms read) and kept in a small LRU of pages;
  nothing is created per photo, no widget per photo.
- The view is a QListView in wrapping list mode with uniform item sizes, so Qt lays out by arithmetic
  and only asks `data()` for rows it paints; thumbnails are requested from there (visible rows only)
  and made on the ThumbnailLoader's pool, a grey placeholder is painted until they arrive.
- Filter/search queries and the folder tree's counts run in workers; a newer query supersedes older
  ones (generation counter), so typing in the search field never queues up stale results.
- Imports run scan_folder in a worker with its own Library; progress arrives by signal, throttled.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QPalette, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView, QButtonGroup, QComboBox, QFrame, QHBoxLayout, QLabel, QLineEdit, QMenu, QSlider,
    QStackedWidget, QToolButton, QTreeView, QVBoxLayout, QWidget,
)

from ...core.library import Library, LibraryError, fts_query
from ...core.photo_queries import PhotoFilter, query_photo_ids
from .layout import split_page
from ..tasks import TaskRunner
from ..widgets.thumbnails import ThumbnailLoader
from ..wording import count
from .folder_tree import FolderNode, folder_tree, import_roots
from .photo_model import PhotoListModel, esc
from ..widgets.photo_grid import PhotoGridView
from ..widgets.banner import Banner, EmptyState
from ..dialogs.import_report import ImportReportDialog

log = logging.getLogger(__name__)

STATUS_FILTERS = (("all", "All"), ("uncaptioned", "Uncaptioned"), ("draft", "Needs review"),
                  ("accepted", "Accepted"))
SEGMENT_STYLE = """
QToolButton#segment { padding: 3px 8px; border: 1px solid palette(mid); background: palette(button);
                      margin-left: -1px; }
QToolButton#segment[edge="first"] { border-top-left-radius: 5px; border-bottom-left-radius: 5px; margin-left: 0; }
QToolButton#segment[edge="last"] { border-top-right-radius: 5px; border-bottom-right-radius: 5px; }
QToolButton#segment:hover { background: palette(midlight); }
QToolButton#segment:checked { background: palette(highlight); color: palette(highlighted-text);
                              border-color: palette(highlight); }
"""
SUGGESTED = "suggested"       # the person filter's "Suggested" item (photos with suggestions waiting)
FolderRole = Qt.ItemDataRole.UserRole + 3
STATUS_LABELS = {"draft": "Review", "accepted": "Accepted", "exported": "Exported"}


# --------------------------------------------------------------------------------------------------
# The browser page
# --------------------------------------------------------------------------------------------------

class Browser(QWidget):
    """Folder tree | filter bar + grid. Owns the photo model and the import/rescan flow."""

    current_photo_changed = Signal(object)     # photo id or None
    selection_changed = Signal(list)           # photo ids
    library_changed = Signal()                 # photos were imported/rescanned (counts may differ)
    loaded = Signal()                          # first query finished (used by --screenshot and tests)
    photos_loaded = Signal()                   # every query finished (the grid shows the current filter)
    context_menu_requested = Signal(QMenu, list)   # the main window adds its actions

    def __init__(self, library: Library, tasks: TaskRunner, loader: ThumbnailLoader, parent=None):
        super().__init__(parent)
        self.lib = library
        self.library_path = library.path
        self.tasks = tasks
        self.loader = loader
        self.filter = PhotoFilter()
        self._generation = 0
        self._folder_generation = 0
        self._first_load_done = False
        self._importing: threading.Event | None = None
        self._import_reports: list[dict] = []
        self.import_queue: list[str] = []
        self._last_reload = 0.0
        self._after_load: list = []

        # folder tree
        self.folder_model = QStandardItemModel(self)
        self.tree = QTreeView()
        self.tree.setModel(self.folder_model)
        self.tree.setHeaderHidden(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.setFrameShape(QFrame.Shape.NoFrame)
        self.tree.selectionModel().currentChanged.connect(self._folder_chosen)
        tree_box = QWidget()
        tl = QVBoxLayout(tree_box)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.setSpacing(0)
        hdr = QLabel("  Folders")
        hdr.setObjectName("sectionHeader")
        hf = hdr.font()
        hf.setBold(True)
        hdr.setFont(hf)
        hdr.setContentsMargins(4, 8, 4, 6)
        tl.addWidget(hdr)
        tl.addWidget(self.tree, 1)
        tree_box.setMinimumWidth(150)

        # filter bar
        bar = QWidget()
        bl = QHBoxLayout(bar)
        bl.setContentsMargins(8, 6, 8, 6)
        bl.setSpacing(6)
        self.status_group = QButtonGroup(self)
        self.status_buttons: dict[str, QToolButton] = {}
        seg = QHBoxLayout()
        seg.setSpacing(0)
        for i, (key, label) in enumerate(STATUS_FILTERS):
            b = QToolButton(text=label, checkable=True)
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            b.setProperty("filterKey", key)
            b.setObjectName("segment")
            b.setProperty("edge", "first" if i == 0 else "last" if i == len(STATUS_FILTERS) - 1 else "mid")
            b.setCursor(Qt.CursorShape.PointingHandCursor)
            self.status_group.addButton(b)
            self.status_buttons[key] = b
            seg.addWidget(b)
        self.status_buttons["all"].setChecked(True)
        bar.setStyleSheet(SEGMENT_STYLE)
        self.status_group.buttonClicked.connect(lambda b: self.set_filter(status=b.property("filterKey")))
        bl.addLayout(seg)
        bl.addSpacing(8)
        self.person_combo = QComboBox()
        self.person_combo.setMinimumContentsLength(12)
        self.person_combo.setToolTip("Only photos with this person or pet")
        self.person_combo.currentIndexChanged.connect(self._person_chosen)
        bl.addWidget(self.person_combo)
        self.search = QLineEdit(placeholderText="Search captions…", clearButtonEnabled=True)
        self.search.setMinimumWidth(140)
        self.search.textChanged.connect(lambda _: self._search_timer.start())
        self._search_timer = QTimer(self, singleShot=True, interval=250)
        self._search_timer.timeout.connect(lambda: self.set_filter(search=self.search.text()))
        bl.addWidget(self.search, 1)
        self.size_slider = QSlider(Qt.Orientation.Horizontal, minimum=90, maximum=280, value=150)
        self.size_slider.setFixedWidth(90)
        self.size_slider.setToolTip("Thumbnail size")
        self.size_slider.valueChanged.connect(self._thumb_size_changed)
        bl.addWidget(self.size_slider)

        # grid + empty states
        self.model = PhotoListModel(library, loader, self)
        self.view = PhotoGridView()
        self.view.setModel(self.model)
        self.view.selectionModel().selectionChanged.connect(self._selection_changed)
        self.view.selectionModel().currentChanged.connect(self._current_changed)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.empty = EmptyState()
        self.stack = QStackedWidget()
        self.stack.addWidget(self.view)
        self.stack.addWidget(self.empty)
        self.banner = Banner()
        self.count_label = QLabel()
        self.count_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.count_label.setContentsMargins(10, 2, 10, 4)

        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.setSpacing(0)
        rl.addWidget(bar)
        rl.addWidget(self.banner)
        rl.addWidget(self.stack, 1)
        rl.addWidget(self.count_label)

        self.splitter = split_page(self, tree_box, right, (220, 800))

        self.add_folder_handler = None    # set by the main window: opens the folder chooser
        self.reload_concepts()
        self.reload()

    # ------------------------------------------------------------------ filters
    def set_filter(self, **changes) -> bool:
        """Change filters; returns False when nothing changed (no new query)."""
        # one combo shows both: a person, or the photos with suggestions waiting (never the two at once)
        if changes.get("concept_id") is not None:
            changes.setdefault("suggested", False)
        if changes.get("suggested"):
            changes.setdefault("concept_id", None)
        new = replace(self.filter, **changes)
        if new == self.filter:
            return False
        self.filter = new
        if "status" in changes:
            btn = self.status_buttons.get(new.status)
            if btn is not None and not btn.isChecked():
                btn.setChecked(True)
        if "concept_id" in changes or "suggested" in changes:
            i = self.person_combo.findData(SUGGESTED if new.suggested else new.concept_id)
            if i >= 0 and i != self.person_combo.currentIndex():
                self.person_combo.blockSignals(True)
                self.person_combo.setCurrentIndex(i)
                self.person_combo.blockSignals(False)
        if "search" in changes and self.search.text() != new.search:
            self.search.blockSignals(True)
            self.search.setText(new.search)
            self.search.blockSignals(False)
        self.reload_photos()
        return True

    def clear_filters(self) -> None:
        self.tree.setCurrentIndex(self.folder_model.index(0, 0))
        self.set_filter(status="all", concept_id=None, search="", folder=None, suggested=False)

    def _person_chosen(self, i: int) -> None:
        data = self.person_combo.itemData(i)
        if data == SUGGESTED:
            self.set_filter(concept_id=None, suggested=True)
        else:
            self.set_filter(concept_id=data, suggested=False)

    def _folder_chosen(self, current: QModelIndex, _prev=None) -> None:
        self.set_filter(folder=current.data(FolderRole) if current.isValid() else None)

    def reload_concepts(self) -> None:
        """Refill the person/pet filter (after concepts were added, renamed or removed)."""
        keep = self.filter.concept_id
        self.person_combo.blockSignals(True)
        self.person_combo.clear()
        self.person_combo.addItem("Everyone", None)
        # Not a person but "whose suggestions wait": in this combo, the filter bar gets no wider (a wider
        # bar squeezed the photo panel on a 1280-pixel screen)
        self.person_combo.addItem("Suggested", SUGGESTED)
        self.person_combo.setItemData(1, "Photos where RePIC suggests who is in them and waits for you to "
                                      "confirm or reject (after Index Faces in Library)", Qt.ItemDataRole.ToolTipRole)
        self.person_combo.insertSeparator(2)
        for c in self.lib.concepts.all():
            self.person_combo.addItem(c.name, c.id)
        i = self.person_combo.findData(SUGGESTED if self.filter.suggested else keep)
        self.person_combo.setCurrentIndex(max(0, i))
        self.person_combo.blockSignals(False)
        if keep is not None and i < 0:
            self.set_filter(concept_id=None)

    # ------------------------------------------------------------------ loading
    def reload(self) -> None:
        self.reload_photos()
        self.reload_folders()

    def reload_photos(self, keep_selection: bool = True) -> None:
        self._generation += 1
        gen = self._generation
        f = self.filter
        path = self.library_path
        if f.search.strip():
            try:
                fts_query(f.search)
            except LibraryError:
                f = replace(f, search="")

        def work(lib):
            ids = query_photo_ids(lib, f)
            total = lib.photos.count()
            return ids, {pid: i for i, pid in enumerate(ids)}, total

        selected = self.selected_ids() if keep_selection else []
        current = self.current_id() if keep_selection else None
        self._last_reload = time.monotonic()
        self.tasks.run(work, lambda r: self._photos_loaded(gen, r, selected, current),
                       lambda m, d: self._query_failed(gen, m, d), library=path)

    def _photos_loaded(self, gen: int, result, selected: list[int], current: int | None) -> None:
        if gen != self._generation:
            return
        ids, row_of, total = result
        self.model.set_ids(ids, row_of)
        self._library_total = total
        sel = self.view.selectionModel()
        if selected or current is not None:
            for pid in selected:
                row = row_of.get(pid)
                if row is not None:
                    sel.select(self.model.index(row), QItemSelectionModel.SelectionFlag.Select)
            if current is not None and current in row_of:
                sel.setCurrentIndex(self.model.index(row_of[current]), QItemSelectionModel.SelectionFlag.NoUpdate)
                self.view.scroll_to_row(row_of[current])
        if not self.view.currentIndex().isValid() and len(ids):
            sel.setCurrentIndex(self.model.index(0), QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self._update_empty(len(ids), total)
        self._selection_changed()
        after, self._after_load = self._after_load, []
        for fn in after:
            fn()
        if not self._first_load_done:
            self._first_load_done = True
            self.loaded.emit()
        self.photos_loaded.emit()

    def loaded_once_then(self, fn) -> None:
        """Run fn after the next photo query lands (e.g. select a photo once a new filter is shown)."""
        self._after_load.append(fn)

    def _query_failed(self, gen: int, message: str, details: str) -> None:
        if gen != self._generation:
            return
        log.error("photo query failed: %s\n%s", message, details)
        self.banner.show_message(f"Cannot list photos: {message}")

    def _update_empty(self, n: int, total: int) -> None:
        if n:
            self.stack.setCurrentWidget(self.view)
        elif total == 0:
            self.empty.set("No photos yet",
                           "Drop a folder of photos onto this window, or choose one. Your files stay where they "
                           "are: RePIC Desktop only reads them.",
                           [("Add a photo folder…", self._ask_folder)], self.window().windowIcon())
            self.stack.setCurrentWidget(self.empty)
        else:
            self.empty.set("No photos match", "Try another filter or search, or show everything.",
                           [("Clear filters", self.clear_filters)])
            self.stack.setCurrentWidget(self.empty)
        self._update_count(n, total)

    def _update_count(self, n: int | None = None, total: int | None = None) -> None:
        n = self.model.rowCount() if n is None else n
        total = getattr(self, "_library_total", n) if total is None else total
        sel = len(self.view.selectionModel().selectedIndexes())
        text = f"{n:,} photo{'s' if n != 1 else ''}"
        if n != total:
            text += f" of {total:,}"
        if sel > 1:
            text += f"  ·  {sel:,} selected"
        self.count_label.setText(text)

    def _ask_folder(self) -> None:
        if self.add_folder_handler is not None:
            self.add_folder_handler()

    def reload_folders(self) -> None:
        self._folder_generation += 1
        gen = self._folder_generation
        path = self.library_path

        def work(lib):
            return folder_tree(lib)

        self.tasks.run(work, lambda r: self._folders_loaded(gen, r), library=path)

    def _folders_loaded(self, gen: int, result) -> None:
        if gen != self._folder_generation:
            return
        total, tops = result
        keep = self.filter.folder
        self.tree.selectionModel().blockSignals(True)
        self.folder_model.clear()
        all_item = QStandardItem(f"All photos  ({total:,})")
        all_item.setData(None, FolderRole)
        f = all_item.font()
        f.setBold(True)
        all_item.setFont(f)
        self.folder_model.appendRow(all_item)
        found = None

        def add(parent: QStandardItem, node: FolderNode):
            nonlocal found
            it = QStandardItem(f"{node.label}  ({node.total:,})")
            it.setData(node.path, FolderRole)
            it.setToolTip(node.path)
            parent.appendRow(it)
            if node.path == keep:
                found = it
            for c in node.children:
                add(it, c)

        root = self.folder_model.invisibleRootItem()
        for t in tops:
            add(root, t)
        self.tree.expandToDepth(0)
        target = found.index() if found is not None else self.folder_model.index(0, 0)
        self.tree.setCurrentIndex(target)
        self.tree.selectionModel().blockSignals(False)
        if found is None and keep is not None:
            self.set_filter(folder=None)

    # ------------------------------------------------------------------ selection
    def selected_ids(self) -> list[int]:
        rows = sorted(i.row() for i in self.view.selectionModel().selectedIndexes())
        return [self.model.photo_id(r) for r in rows]

    def current_id(self) -> int | None:
        idx = self.view.currentIndex()
        return self.model.photo_id(idx.row()) if idx.isValid() else None

    def select_photo(self, photo_id: int) -> bool:
        row = self.model.row_of(photo_id)
        if row is None:
            return False
        idx = self.model.index(row)
        self.view.selectionModel().setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.view.scroll_to_row(row)
        return True

    def step(self, delta: int) -> None:
        """Next (+1) / previous (-1) photo in the grid."""
        n = self.model.rowCount()
        if n == 0:
            return
        cur = self.view.currentIndex()
        row = (cur.row() + delta) if cur.isValid() else 0
        row = max(0, min(n - 1, row))
        idx = self.model.index(row)
        self.view.selectionModel().setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.view.scroll_to_row(row)

    def _current_changed(self, current: QModelIndex, _prev) -> None:
        self.current_photo_changed.emit(self.model.photo_id(current.row()) if current.isValid() else None)

    def _selection_changed(self, *_):
        self._update_count()
        self.selection_changed.emit(self.selected_ids())

    def _context_menu(self, pos: QPoint) -> None:
        ids = self.selected_ids()
        if not ids:
            return
        menu = QMenu(self)
        self.context_menu_requested.emit(menu, ids)
        if not menu.isEmpty():
            menu.exec(self.view.viewport().mapToGlobal(pos))

    def _thumb_size_changed(self, v: int) -> None:
        self.view.set_thumb_size(v)
        self.loader.display_size = max(96, v)
        self.model.forget_thumbnails()
        self.loader.clear()

    def refresh_photo(self, photo_id: int) -> None:
        self.model.refresh_photo(photo_id)

    # ------------------------------------------------------------------ import / rescan
    @property
    def importing(self) -> bool:
        return self._importing is not None

    def import_folders(self, folders: list[str]) -> None:
        """Import (or rescan) folders one after the other in a worker; progress in the banner."""
        folders = [os.path.abspath(f) for f in folders]
        self.import_queue.extend(folders)
        if self._importing is None:
            self._import_reports = []
            self._next_import()

    def rescan(self) -> None:
        """Rescan the folder chosen in the tree, or every imported top folder."""
        if self.filter.folder is not None:
            self.import_folders([self.filter.folder])
            return
        path = self.library_path

        def work(lib):
            return import_roots(lib)

        def done(roots: list[str]) -> None:
            if roots:
                self.import_folders(roots)
            else:
                self.banner.show_message("Nothing to rescan yet: add a photo folder first.")

        self.tasks.run(work, done, library=path)

    def cancel_import(self) -> None:
        if self._importing is not None:
            self._importing.set()
            self.import_queue.clear()

    def _next_import(self) -> None:
        if not self.import_queue:
            self._importing = None
            self._import_finished()
            return
        folder = self.import_queue.pop(0)
        cancel = threading.Event()
        self._importing = cancel
        path = self.library_path
        name = os.path.basename(folder.rstrip("/")) or folder

        def work(lib, progress):
            from ...core.scanner import scan_folder
            last = [0.0]

            def on_progress(done: int, total: int, p: str) -> None:
                t = time.monotonic()
                if done == total or t - last[0] > 0.1:
                    last[0] = t
                    progress((done, total))

            progress((0, 0))
            return scan_folder(lib, folder, progress=on_progress, cancel=cancel.is_set).as_dict()

        def on_progress(value) -> None:
            done, total = value
            self.banner.show_message(f"Importing <b>{esc(name)}</b>…", (done, total), "Cancel",
                                     self.cancel_import, closable=False)
            if time.monotonic() - self._last_reload > 2.0:  # let photos appear while a big import runs
                self.reload_photos()

        def on_error(message: str, details: str) -> None:
            log.warning("import of %s failed: %s", folder, message)
            self._import_reports.append({"root": folder, "error": message, "added": 0,
                                         "skipped": [{"path": folder, "reason": message}]})
            self._next_import()

        def on_done(report: dict) -> None:
            self._import_reports.append(report)
            self._next_import()

        self.banner.show_message(f"Importing <b>{esc(name)}</b>…", (0, 0), "Cancel", self.cancel_import,
                                 closable=False)
        self.tasks.run(work, on_done, on_error, on_progress, library=path)

    def _import_finished(self) -> None:
        reports = self._import_reports
        added = sum(r.get("added", 0) for r in reports)
        skipped = sum(len(r.get("skipped", [])) for r in reports)
        cancelled = any(r.get("cancelled") for r in reports)
        other = sum(r.get(k, 0) for r in reports for k in ("updated", "moved", "missing", "restored"))
        text = f"Import {'cancelled' if cancelled else 'finished'}: {count(added, 'photo')} added"
        if other:
            text += f", {other:,} updated/moved/missing"
        if skipped:
            text += f", <b>{count(skipped, 'file')} skipped</b>"
        self.banner.show_message(text + ".", None, "Details…", self.show_import_report)
        self.reload()
        self.library_changed.emit()

    def show_import_report(self) -> ImportReportDialog:
        dlg = ImportReportDialog(self._import_reports, self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.show()
        self._report_dialog = dlg
        return dlg

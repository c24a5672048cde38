"""The main window: Photos page (folders | grid | photo panel) and People & Pets page, menus, toolbar,
shortcuts, drag-and-drop import, the captioning controller's queue dock, the log dock, and layout memory.

The captioning side (model worker, caption dialog, queue dock, settings, welcome) belongs to
`captioning.controller.CaptioningController`; it is imported lazily so the rest of the app works (with
the captioning actions disabled and saying why) when it is missing or fails to start.

The actions, menus and toolbar are `window_actions.py`'s and the layout memory `window_layout.py`'s
(mixins of MainWindow). What stays here (a little over 600 lines) is one class: the window's wiring
between the pages, the library, the controller and the docks, whose slots call each other.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QUndoStack
from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QMenu, QSplitter, QStackedWidget

from .. import APP_NAME
from ..core.library import Library, LibraryError
from ..core.temp_files import cleanup_library_folders
from ..core.photo_queries import PhotoFilter, query_photo_ids
from .pages.browser import Browser
from .dialogs.about import AboutDialog
from .dialogs.errors import show_error
from .pages.faces import FacesPage
from .dialogs.files import choose_folder, choose_new_file, choose_open_file
from .captioning.index_controller import IndexController
from .pages.people import PeopleManager
from .pages.personalize import PersonalizePage
from .widgets.caption_commands import TagCommand
from .widgets.photo_panel import PhotoPanel
from .tasks import TaskRunner
from .widgets.log_view import LogView, log_handler
from .widgets.thumbnails import ThumbnailLoader
from .wording import count, people_and_pets
from .library_watch import LibraryWatcher
from .library_switch import LIBRARY_FILTER, remember_library, same_file, with_library_suffix
from .window_actions import WindowActions
from .window_layout import LayoutMemory

log = logging.getLogger(__name__)


def window_title(library_path: Path) -> str:
    """"lib — RePIC Desktop": ending with the app's display name, Qt adds it no second time (it appends
    the display name to every title that does not end with it)."""
    name = library_path.stem if library_path.name != "library.sqlite" else "Library"
    return f"{name} — {APP_NAME}"


def _controller_factory_default(library_path: Path, parent):
    from .captioning.controller import CaptioningController  # part of the app, but optional at run time
    return CaptioningController(library_path, parent)


class MainWindow(LayoutMemory, WindowActions, QMainWindow):
    ready = Signal()      # the library is shown and the first thumbnails are painted (for --screenshot)

    def __init__(self, library: Library, *, controller_factory: Callable | None = _controller_factory_default,
                 startup_prompts: bool = True, thumbnail_cache=None, parent=None):
        super().__init__(parent)
        self.lib = library
        self.library_path = library.path
        self.startup_prompts = startup_prompts
        self._controller_factory = controller_factory
        self._thumbnail_cache = thumbnail_cache
        MainWindow.latest = self
        self.setWindowTitle(window_title(library.path))
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self._shown_once = False
        self._closing = False

        self.tasks = TaskRunner(self, threads=3)
        self.loader = ThumbnailLoader(thumbnail_cache, parent=self)
        self.undo = QUndoStack(self)
        self.log_handler = log_handler()

        # pages
        self.browser = Browser(library, self.tasks, self.loader)
        self.browser.add_folder_handler = self.add_folder
        self.panel = PhotoPanel(library, self.tasks, self.undo)
        self.photos_page = QSplitter(Qt.Orientation.Horizontal)
        self.photos_page.addWidget(self.browser)
        self.photos_page.addWidget(self.panel)
        self.photos_page.setStretchFactor(0, 3)
        self.photos_page.setStretchFactor(1, 2)
        self.photos_page.setSizes([900, 480])
        self.photos_page.setChildrenCollapsible(False)
        self.people = PeopleManager(library, self.tasks, self.loader, self.undo)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.photos_page)
        self.pages.addWidget(self.people)
        self.index = IndexController(library.path, parent=self)    # "Index Faces in Library" (issue #7)
        self.faces = FacesPage(library, self.tasks, self.loader, index=self.index, undo=self.undo)
        self.pages.addWidget(self.faces)
        self.personalize = PersonalizePage(library)
        self.pages.addWidget(self.personalize)
        self.setCentralWidget(self.pages)

        # docks
        self.log_view = LogView(self.log_handler)
        self.log_dock = QDockWidget("Log", self)
        self.log_dock.setObjectName("logDock")
        self.log_dock.setWidget(self.log_view)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.log_dock)
        self.log_dock.hide()

        # captioning (part B)
        self.controller = None
        self.controller_error = ""
        self.queue_dock: QDockWidget | None = None
        if controller_factory is not None:
            try:
                self.controller = controller_factory(self.library_path, self)
            except ModuleNotFoundError as exc:
                self.controller_error = f"Captioning is not available in this build ({exc.name} is missing)."
                log.warning("%s", self.controller_error)
            except Exception as exc:  # never let captioning take the album down
                from ..core.errors import user_message
                self.controller_error = f"Captioning could not start: {user_message(exc)}"
                log.exception("captioning controller failed to start")
        else:
            self.controller_error = "Captioning is turned off."
        if self.controller is not None:
            self.personalize.set_controller(self.controller)
            self.queue_dock = self.controller.queue_dock()
            if self.queue_dock.objectName() == "":
                self.queue_dock.setObjectName("queueDock")
            self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.queue_dock)
            self.tabifyDockWidget(self.queue_dock, self.log_dock)
            self.queue_dock.raise_()
            self.controller.caption_finished.connect(self._caption_finished)
            self.controller.job_changed.connect(lambda _job: self._update_counts_later())
        self.index_dock = None
        if self.queue_dock is not None:
            self.queue_dock.add_index_controller(self.index)
        else:  # no captioning dock: the face-index job gets a dock of its own
            from .captioning.queue_dock import IndexDock
            self.index_dock = IndexDock(self.index, self)
            self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.index_dock)
            self.index_dock.hide()

        self._make_actions()
        self._make_menus()
        self._make_toolbar()
        self._wire()
        self.status_counts = QLabel()
        self.statusBar().addPermanentWidget(self.status_counts)
        self.statusBar().setSizeGripEnabled(True)
        if self.controller is None:
            self.statusBar().showMessage(self.controller_error, 15000)
        self.resize(1400, 880)
        self.restore_layout()
        self._update_actions()
        self._update_counts()
        self.browser.loaded.connect(self._check_ready)
        self.watcher = LibraryWatcher(library.conn, busy=self._busy_writing, parent=self)
        self.watcher.changed.connect(self.library_changed_elsewhere)

    def _wire(self) -> None:
        b, p = self.browser, self.panel
        b.current_photo_changed.connect(p.set_photo)
        b.selection_changed.connect(self._selection_changed)
        b.library_changed.connect(self._update_counts_later)
        b.context_menu_requested.connect(self._grid_menu)
        b.view.doubleClicked.connect(lambda _: p.editor.setFocus())
        p.photo_changed.connect(self._photo_changed)
        p.regenerate_requested.connect(self.regenerate)
        p.new_concept_requested.connect(self._new_concept_for_photo)
        self.people.concepts_changed.connect(self._concepts_changed)
        self.people.show_photos.connect(self._show_concept_photos)
        self.people.photo_activated.connect(self._show_concept_photo)
        self.personalize.adapter_activated.connect(
            lambda _path: self.controller is not None and self.controller.settings_changed.emit())
        self.faces.concepts_changed.connect(self._concepts_changed)
        self.faces.index_requested.connect(self.index_faces)
        self.faces.photo_activated.connect(self._show_face_photo)
        # an ignored face may have been the evidence for a chip the panel shows
        self.faces.ignored_changed.connect(self.panel.refresh_suggestions)
        self.index.finished.connect(self._faces_indexed)
        self.index.show_suggested.connect(self.show_suggested_photos)
        self.index.photo_indexed.connect(lambda pid: pid == p.photo_id and p.refresh_suggestions())
        self.index.changed.connect(lambda: self.act_index_faces.setEnabled(not self.index.active))
        self.undo.indexChanged.connect(lambda _: self._update_actions())

    # ------------------------------------------------------------------ pages
    def show_page(self, page: str) -> None:
        if page == "queue":
            self.show_page("browser")
            if self.queue_dock is not None:
                self.queue_dock.show()
                self.queue_dock.raise_()
            return
        if page == "people":
            if self.pages.currentWidget() is not self.people:
                self.people.reload()          # photo counts and "Photos with ..." may have changed
            self.pages.setCurrentWidget(self.people)
            self.act_page_people.setChecked(True)
        elif page == "faces":
            if self.pages.currentWidget() is not self.faces or not self.faces.loaded_once:
                self.faces.reload()           # naming or indexing elsewhere may have changed the clusters
            self.pages.setCurrentWidget(self.faces)
            self.act_page_faces.setChecked(True)
        elif page == "personalize":
            if self.pages.currentWidget() is not self.personalize:
                self.personalize.reload()     # concepts, photo counts and adapters may have changed
            self.pages.setCurrentWidget(self.personalize)
            self.act_page_personalize.setChecked(True)
        else:
            self.pages.setCurrentWidget(self.photos_page)
            self.act_page_photos.setChecked(True)
        self._update_actions()

    def current_page(self) -> str:
        if self.pages.currentWidget() is self.faces:
            return "faces"
        if self.pages.currentWidget() is self.personalize:
            return "personalize"
        return "people" if self.pages.currentWidget() is self.people else "browser"

    def _focus_search(self) -> None:
        self.show_page("browser")
        self.browser.search.setFocus()
        self.browser.search.selectAll()

    # ------------------------------------------------------------------ state
    def _selection_changed(self, ids: list[int]) -> None:
        self.people.browser_selection = ids
        self._update_actions()

    def _update_counts(self) -> None:
        path = self.library_path

        def work(lib):
            return lib.counts()

        self.tasks.run(work, self._show_counts, library=path)

    def _update_counts_later(self) -> None:
        if not hasattr(self, "_counts_timer"):
            self._counts_timer = QTimer(self, singleShot=True, interval=500)
            self._counts_timer.timeout.connect(self._update_counts)
        self._counts_timer.start()

    def _show_counts(self, c: dict) -> None:
        review = c["captioned"] - c["accepted"]
        text = (f"{c['photos']:,} photos  ·  {c['captioned']:,} captioned  ·  {review:,} to review  ·  "
                f"{c['accepted']:,} accepted  ·  {people_and_pets(c['people'], c['pets'])}")
        self.status_counts.setText(text + "  ")
        self.counts = c

    # ------------------------------------------------------------------ library changes
    def _busy_writing(self) -> bool:
        """The window's own workers are writing: refresh once they are done, not after every commit."""
        jobs = getattr(self.controller, "jobs", None) or {}
        return (self.browser.importing or self.index.active
                or any(getattr(v, "active", False) for v in jobs.values()))

    def library_changed_elsewhere(self) -> None:
        """Another program (a `repic` command, a second window) changed the library: show its changes.
        Every part re-reads what it shows; the caption being edited is left alone."""
        if self._closing:
            return
        self.browser.reload_concepts()
        self.browser.reload()                   # ids, counts and folders; the selection is kept
        self.browser.model.refresh_all()        # names and caption states of the rows shown
        editor = getattr(self.panel, "editor", None)
        if editor is None or editor.toPlainText() == getattr(self.panel, "_loaded_caption_text", ""):
            self.panel.refresh()
        page = self.current_page()
        if page == "people":
            self.people.reload()
        elif page == "faces":
            self.faces.reload()
        elif page == "personalize" and not self.personalize.is_running():
            self.personalize.reload()
        self._update_counts_later()

    def _photo_changed(self, photo_id: int) -> None:
        self.browser.refresh_photo(photo_id)
        self._update_counts_later()
        self._update_actions()

    def _caption_finished(self, photo_id: int, caption_id: int) -> None:
        """One main-thread update per finished caption: that grid cell and, if shown, the panel."""
        self.browser.refresh_photo(photo_id)
        if self.panel.photo_id == photo_id:
            self.panel.refresh()
        self._update_counts_later()

    def _concepts_changed(self) -> None:
        self.browser.reload_concepts()
        self.browser.model.refresh_all()
        self.panel.refresh()
        self._update_counts_later()

    def _show_concept_photos(self, concept_id: int) -> bool:
        self.show_page("browser")
        return self.browser.set_filter(status="all", search="", folder=None, concept_id=concept_id, suggested=False)

    def _show_concept_photo(self, concept_id: int, photo_id: int) -> None:
        if self._show_concept_photos(concept_id):
            self.browser.loaded_once_then(lambda: self.browser.select_photo(photo_id))
        else:
            self.browser.select_photo(photo_id)

    def _new_concept_for_photo(self, photo_id: int, name: str) -> None:
        dlg = self.people.add_concept(name, photo_id=photo_id)
        dlg.created.connect(lambda _cid: self._photo_changed(photo_id))
        dlg.created.connect(lambda _cid: self.panel.refresh())

    def _grid_menu(self, menu: QMenu, ids: list[int]) -> None:
        menu.addAction(self.act_caption_selected)
        concepts = self.lib.concepts.all()
        tag = menu.addMenu(f"Say Who Is in {'These Photos' if len(ids) > 1 else 'This Photo'}")
        for c in concepts:
            tag.addAction(c.name, lambda cid=c.id: self.tag_photos(ids, cid))
        if not concepts:
            tag.addAction("No people or pets yet").setEnabled(False)
        if len(ids) == 1:
            ref = menu.addMenu("Use as Reference Photo for")
            for c in concepts:
                ref.addAction(c.name, lambda cid=c.id: self._use_as_reference(ids[0], cid))
            ref.addSeparator()
            ref.addAction("New Person or Pet…", lambda: self._new_concept_for_photo(ids[0], ""))
        menu.addSeparator()
        menu.addAction(self.act_select_all)

    def tag_photos(self, ids: list[int], concept_id: int) -> None:
        name = self.lib.concepts.get(concept_id).name
        self.undo.beginMacro(f"Add <{name}> to {count(len(ids), 'photo')}")
        try:
            for pid in ids:
                self.undo.push(TagCommand(self.lib, pid, self.panel._notify, concept_id, add=True))
        finally:
            self.undo.endMacro()
        self.people.reload()

    def _use_as_reference(self, photo_id: int, concept_id: int) -> None:
        self.show_page("people")
        self.people.select(concept_id)
        p = self.lib.photos.get(photo_id)
        box = self.people._ask_box(p.fs_path, (p.width, p.height))
        if box is not False:
            self.people._add_ref(photo_id=photo_id, box=box)

    # ------------------------------------------------------------------ libraries
    def open_library_dialog(self) -> "MainWindow | None":
        path = choose_open_file(self, "Open a library", str(self.library_path.parent), LIBRARY_FILTER,
                                library=None)
        return self.open_library(path) if path else None

    def new_library_dialog(self) -> "MainWindow | None":
        picked = choose_new_file(self, "New library", str(self.library_path.parent / "New library.sqlite"),
                                 LIBRARY_FILTER)
        if not picked:
            return None
        path = with_library_suffix(picked)
        if path.exists():
            show_error(self, "Cannot create the library",
                       f"{path} already exists: open it with File → Open Library…, or choose another name.")
            return None
        return self.open_library(path, create=True)

    def open_library(self, path, *, create: bool = False) -> "MainWindow | None":
        """Show another library in a new window that replaces this one; returns it (self when `path` is
        the library already open, None when it could not be opened or this window must stay)."""
        path = Path(path).expanduser()
        if same_file(path, self.library_path):
            self.statusBar().showMessage("That library is already open.", 5000)
            return self
        if not create and not path.is_file():
            show_error(self, "Cannot open the library", f"{path} does not exist.")
            return None
        import sqlite3
        try:
            lib = Library(path)
        except (LibraryError, sqlite3.DatabaseError, OSError) as exc:
            show_error(self, "Cannot open the library", f"{path} is not a library RePIC can open: {exc}")
            return None
        self.save_layout()
        win = MainWindow(lib, controller_factory=self._controller_factory, startup_prompts=self.startup_prompts,
                         thumbnail_cache=self._thumbnail_cache)
        # Deleted when closed, and its library closed only then: no timer or slot of a closed window can
        # reach a closed connection. (The first window's library is closed by run_gui when the app ends.)
        win.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        win.destroyed.connect(lambda *_: lib.close())
        win.show()
        if not self.close():                  # training runs and the user chose to keep it
            win.close()
            MainWindow.latest = self
            return None
        remember_library(path)
        return win

    # ------------------------------------------------------------------ import
    def add_folder(self) -> None:
        start = QSettings().value("lastImportFolder", os.path.expanduser("~"))
        folder = choose_folder(self, "Add a photo folder", str(start))
        if folder:
            QSettings().setValue("lastImportFolder", folder)
            self.show_page("browser")
            self.browser.import_folders([folder])

    def import_folder_dialog(self) -> None:
        """For the welcome dialog (part B): choose a folder and import it."""
        self.add_folder()

    def show_people(self) -> None:
        """For the welcome dialog (part B): the People & Pets page, with the Add dialog when it is empty."""
        self.show_page("people")
        if not self.lib.concepts.all():
            self.people.add_concept()

    def index_faces(self) -> None:
        """Find and match the faces in every photo on a worker thread (progress in the queue dock)."""
        if not self.index.available:
            show_error(self, "Cannot index faces", "Face suggestions are not part of this build.", modal=False)
        elif not self.index.start():
            self.statusBar().showMessage("Faces are being indexed already.", 4000)

    def _show_face_photo(self, photo_id: int) -> None:
        self.show_page("browser")
        if not self.browser.select_photo(photo_id):     # hidden by a filter: show all photos, then select
            if self.browser.set_filter(status="all", search="", folder=None, concept_id=None, suggested=False):
                self.browser.loaded_once_then(lambda: self.browser.select_photo(photo_id))

    def show_suggested_photos(self) -> None:
        """The grid with only the photos whose suggestions wait for review (the index card's button)."""
        self.show_page("browser")
        self.browser.set_filter(status="all", search="", folder=None, concept_id=None, suggested=True)

    def _faces_indexed(self, summary: dict) -> None:
        self.panel.refresh_suggestions()
        if self.faces.loaded_once or self.pages.currentWidget() is self.faces:
            self.faces.reload()
        self.statusBar().showMessage(f"Face indexing {'stopped' if summary.get('cancelled') else 'finished'}: "
                                     f"{self.index.message}.", 8000)

    @staticmethod
    def _dropped_folders(mime) -> tuple[list[str], list[str]]:
        folders, others = [], []
        for url in mime.urls() if mime.hasUrls() else []:
            if not url.isLocalFile():
                others.append(url.toString())
                continue
            p = url.toLocalFile()
            (folders if os.path.isdir(p) else others).append(p)
        return folders, others

    def dragEnterEvent(self, e) -> None:
        folders, others = self._dropped_folders(e.mimeData())
        if folders or others:
            e.acceptProposedAction()
            self.statusBar().showMessage("Drop to import this folder" if folders else
                                         "Only folders can be dropped here", 3000)

    def dragMoveEvent(self, e) -> None:
        e.acceptProposedAction()

    def dropEvent(self, e) -> None:
        folders, others = self._dropped_folders(e.mimeData())
        if folders:
            e.acceptProposedAction()
            self.show_page("browser")
            self.browser.import_folders(folders)
        elif others:
            self.statusBar().showMessage("Drop folders to import them (single files are imported with their folder).",
                                         6000)
            parents = sorted({os.path.dirname(p) for p in others if os.path.isfile(p)})
            if parents:
                self.show_page("browser")
                self.browser.import_folders(parents)

    # ------------------------------------------------------------------ captioning
    def caption_selected(self) -> None:
        ids = self.browser.selected_ids()
        if self.controller is None or not ids:
            return
        self.panel.save_edit()
        self.controller.caption_photos(ids, self)

    def caption_all_uncaptioned(self) -> None:
        if self.controller is None:
            return
        path = self.library_path

        def work(lib):
            return list(query_photo_ids(lib, PhotoFilter(status="uncaptioned")))

        def done(ids):
            if not ids:
                self.statusBar().showMessage("Every photo already has a caption.", 5000)
                return
            self.controller.caption_photos(ids, self)

        self.tasks.run(work, done, lambda m, d: show_error(self, "Cannot list photos", m, d), library=path)

    def regenerate(self, photo_id: int | None = None) -> None:
        pid = photo_id if isinstance(photo_id, int) else self.panel.photo_id
        if self.controller is not None and pid is not None:
            self.controller.regenerate(pid, self)

    def write_to_files(self):
        """Preview and write library metadata into the selected photos' files (or all accepted ones)."""
        from .dialogs.export import ExportDialog

        self.panel.save_edit()
        dlg = ExportDialog(self.library_path, self.tasks, self.browser.selected_ids(), self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.written.connect(self._photos_written)
        dlg.open()
        self._export_dialog = dlg
        return dlg

    def _photos_written(self, ids: list) -> None:
        for pid in ids:
            self.browser.refresh_photo(pid)
        if self.panel.photo_id in ids:
            self.panel.refresh()
        self._update_counts_later()

    def open_settings(self) -> None:
        if self.controller is not None:
            self.controller.open_settings(self)

    def unload_model(self) -> None:
        if self.controller is not None:
            self.controller.unload_model()
            self.statusBar().showMessage("Model unloaded: its memory is free again.", 5000)

    def show_about(self) -> AboutDialog:
        gpu = None
        if self.controller is not None:
            try:
                gpu = self.controller.gpu_summary()
            except Exception as exc:
                gpu = f"unknown ({exc})"
        dlg = AboutDialog(self, gpu=gpu, tasks=self.tasks, library_path=self.library_path)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.open()
        self._about = dlg
        return dlg

    # ------------------------------------------------------------------ start-up, ready, close
    def showEvent(self, e) -> None:
        super().showEvent(e)
        if not self._shown_once:
            self._shown_once = True
            self._remove_leftover_temps()
            if getattr(self, "_first_run_layout", False):  # first run: a slim queue dock under the photos
                docks = [d for d in (self.queue_dock, self.log_dock) if d is not None]
                # as small as the queue dock allows (model row + a line of jobs), never a third of the window
                h = self.queue_dock.minimumSizeHint().height() + 8 if self.queue_dock is not None else 160
                self.resizeDocks(docks, [h] * len(docks), Qt.Orientation.Vertical)
            if self.startup_prompts:
                QTimer.singleShot(0, self._startup_prompts)

    def _remove_leftover_temps(self) -> None:
        """A killed export leaves a hidden full copy of a photo beside it (`.~repic-…`): the app removes
        those of dead processes in every photo folder once at start, in the background."""
        path = self.library_path

        def work(lib) -> int:
            return cleanup_library_folders(lib.photos.folders())

        def done(n: int) -> None:
            if n:
                log.info("removed %s of a killed export", count(n, "leftover temp file"))

        self.tasks.run(work, done, lambda m, d: log.warning("leftover temp files not checked: %s", m), library=path)

    def _startup_prompts(self) -> None:
        try:
            from .dialogs.welcome import maybe_show_welcome
        except ImportError:
            maybe_show_welcome = None
        if maybe_show_welcome is not None and self.controller is not None:
            try:
                maybe_show_welcome(self, self.controller)
            except Exception:
                log.exception("welcome screen failed")
        if self.controller is not None:
            try:
                self.controller.resume_unfinished(self)
            except Exception as exc:
                from ..core.errors import user_message
                log.exception("resuming unfinished jobs failed")
                show_error(self, "Cannot resume captioning", user_message(exc), modal=False)

    def _check_ready(self) -> None:
        """Emit `ready` once the grid shows its first thumbnails (or after a timeout)."""
        if getattr(self, "_ready_emitted", False):
            return
        if not hasattr(self, "_ready_timer"):
            self._ready_deadline = 0
            self._ready_timer = QTimer(self, interval=50)
            self._ready_timer.timeout.connect(self._check_ready)
            self._ready_timer.start()
        self._ready_deadline += 1
        busy = not self.loader.idle or self.tasks.busy
        if (not busy and self._ready_deadline > 2) or self._ready_deadline > 200:  # 10 s at most
            self._ready_timer.stop()
            self._ready_emitted = True
            self.ready.emit()

    def closeEvent(self, e: QCloseEvent) -> None:
        if self._closing:
            e.accept()
            return
        if not self.personalize.confirm_close(self):   # the user chose to keep training
            e.ignore()
            return
        self._closing = True
        self.watcher.stop()
        try:
            self.panel.save_edit()
        except LibraryError as exc:
            log.warning("could not save the caption edit: %s", exc)
        self.save_layout()
        try:
            self.undo.indexChanged.disconnect()
        except (RuntimeError, TypeError):
            pass
        self.browser.cancel_import()
        self.index.shutdown()
        if self.controller is not None:
            try:
                self.controller.shutdown()
            except Exception:
                log.exception("captioning shutdown failed")
        self.loader.clear()
        self.loader.wait(10_000)
        self.tasks.wait(30_000)
        e.accept()

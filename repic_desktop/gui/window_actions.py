"""The main window's actions (shortcuts, tooltips), menus and toolbar, and which actions are enabled for the
current selection. A mixin of MainWindow (main_window.py), split off by size: the actions trigger the
window's own methods.
"""
from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QSizePolicy, QToolBar, QWidget

from .. import APP_NAME


class WindowActions:
    """The main window's actions, menus and toolbar, and when each action is enabled."""

    # ------------------------------------------------------------------ actions
    def _action(self, text: str, slot, shortcut=None, tip: str = "", checkable: bool = False) -> QAction:
        a = QAction(text, self)
        if shortcut:
            keys = shortcut if isinstance(shortcut, (list, tuple)) else [shortcut]
            a.setShortcuts([QKeySequence(k) for k in keys])
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if tip:
            a.setStatusTip(tip)
            a.setToolTip(tip + (f" ({a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)})" if shortcut else ""))
        a.setCheckable(checkable)
        if slot is not None:
            a.triggered.connect(slot)
        self.addAction(a)
        return a

    def _make_actions(self) -> None:
        self.act_add_folder = self._action("&Add Photo Folder…", self.add_folder, QKeySequence.StandardKey.Open,
                                           "Import a folder of photos (they stay where they are)")
        self.act_open_library = self._action("&Open Library…", self.open_library_dialog, "Ctrl+Shift+O",
                                             "Open another library file (its photos, people and captions)")
        self.act_new_library = self._action("Ne&w Library…", self.new_library_dialog, None,
                                            "Start an empty library in a new file")
        self.act_rescan = self._action("&Rescan", lambda: self.browser.rescan(), "F5",
                                       "Look for new, changed, moved and deleted photos")
        self.act_quit = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit)
        self.act_undo = self.undo.createUndoAction(self, "&Undo")
        self.act_undo.setShortcut(QKeySequence.StandardKey.Undo)
        self.act_redo = self.undo.createRedoAction(self, "&Redo")
        self.act_redo.setShortcuts([QKeySequence(QKeySequence.StandardKey.Redo), QKeySequence("Ctrl+Shift+Z")])
        for a in (self.act_undo, self.act_redo):
            self.addAction(a)
        self.act_select_all = self._action("Select &All Photos", lambda: self.browser.view.selectAll(), None)
        self.act_find = self._action("&Find in Captions", self._focus_search, QKeySequence.StandardKey.Find)

        self.page_group = QActionGroup(self)
        self.act_page_photos = self._action("Photos", lambda: self.show_page("browser"), "Ctrl+1",
                                            "Browse, review and caption photos", checkable=True)
        self.act_page_people = self._action("People && Pets", lambda: self.show_page("people"), "Ctrl+2",
                                            "Who RePIC should name in captions", checkable=True)
        for a in (self.act_page_photos, self.act_page_people):
            self.page_group.addAction(a)
        self.act_page_faces = self._action("Unknown Faces", lambda: self.show_page("faces"), None,
                                           "Name the faces RePIC found but could not name", checkable=True)
        self.page_group.addAction(self.act_page_faces)
        self.act_page_personalize = self._action("Personalize", lambda: self.show_page("personalize"), None,
                                                 "Train the model on your own people and pets", checkable=True)
        self.page_group.addAction(self.act_page_personalize)
        self.act_personalize = self._action("&Personalize…", lambda: self.show_page("personalize"), None,
                                            "Train the model on your own people and pets")
        self.act_index_faces = self._action("Index Faces in Library", self.index_faces, None,
                                            "Find the faces in every photo and suggest who they are (in the background)")
        self.act_page_photos.setChecked(True)

        self.act_next = self._action("&Next Photo", lambda: self.browser.step(+1), ["Alt+Right", "Alt+Down"])
        self.act_prev = self._action("&Previous Photo", lambda: self.browser.step(-1), ["Alt+Left", "Alt+Up"])
        self.act_accept = self._action("&Accept Caption", self.panel.accept_caption, ["Ctrl+Return", "Ctrl+Enter"],
                                       "Accept the caption of the current photo")
        self.act_regenerate = self._action("Re&generate Caption", self.panel.regenerate, "Ctrl+R",
                                           "Caption the current photo again")
        self.act_save_edit = self._action("&Save Caption Edit", self.panel.save_edit, QKeySequence.StandardKey.Save)
        self.act_add_person = self._action("Add Person or Pet to Photo…", self.panel.open_picker, "Ctrl+T")
        self.act_caption_selected = self._action("&Caption Selected", self.caption_selected, "Ctrl+Shift+C",
                                                 "Caption the selected photos")
        self.act_caption_uncaptioned = self._action("Caption All &Uncaptioned", self.caption_all_uncaptioned, None,
                                                    "Caption every photo that has no caption yet")
        self.act_write_files = self._action("Write to Files…", self.write_to_files, None,
                                            "Write captions, people and regions into the selected (or all "
                                            "accepted) photos' files, after a preview")
        self.act_new_concept = self._action("&New Person or Pet…", lambda: self.people.add_concept(), "Ctrl+N")
        self.act_settings = self._action("&Settings…", self.open_settings, QKeySequence.StandardKey.Preferences,
                                         "Model, device, quantization, batch size…")
        self.act_unload = self._action("&Unload Model", self.unload_model, None, "Free the GPU memory the model uses")
        self.act_about = self._action(f"&About {APP_NAME}", self.show_about)
        self.act_log = self.log_dock.toggleViewAction()
        self.act_log.setText("&Log")
        self.act_log.setShortcut(QKeySequence("Ctrl+L"))
        self.addAction(self.act_log)

    def _make_menus(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        m.addActions([self.act_open_library, self.act_new_library])
        m.addSeparator()
        m.addActions([self.act_add_folder, self.act_rescan])
        m.addSeparator()
        m.addAction(self.act_quit)
        m = mb.addMenu("&Edit")
        m.addActions([self.act_undo, self.act_redo])
        m.addSeparator()
        m.addActions([self.act_select_all, self.act_find])
        m = mb.addMenu("&View")
        m.addActions([self.act_page_photos, self.act_page_people])
        m.addAction(self.act_page_faces)
        m.addAction(self.act_page_personalize)
        m.addSeparator()
        if self.queue_dock is not None:
            qa = self.queue_dock.toggleViewAction()
            qa.setText("Caption &Queue")
            m.addAction(qa)
        m.addAction(self.act_log)
        m = mb.addMenu("&Photo")
        m.addActions([self.act_next, self.act_prev])
        m.addSeparator()
        m.addActions([self.act_accept, self.act_save_edit, self.act_regenerate, self.act_add_person])
        m.addSeparator()
        m.addActions([self.act_caption_selected, self.act_caption_uncaptioned])
        m.addSeparator()
        m.addAction(self.act_write_files)
        m = mb.addMenu("P&eople && Pets")
        m.addAction(self.act_new_concept)
        m.addActions([self.act_page_faces, self.act_index_faces])
        m = mb.addMenu("&Model")
        m.addActions([self.act_settings, self.act_unload])
        m.addAction(self.act_personalize)
        m = mb.addMenu("&Help")
        m.addAction(self.act_about)

    def _make_toolbar(self) -> None:
        tb = QToolBar("Main toolbar")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        tb.setIconSize(QSize(18, 18))
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb)
        tb.addAction(self.act_page_photos)
        tb.addAction(self.act_page_people)
        tb.addAction(self.act_page_faces)
        tb.addAction(self.act_page_personalize)
        tb.addSeparator()
        tb.addAction(self.act_add_folder)
        tb.addAction(self.act_rescan)
        tb.addSeparator()
        tb.addAction(self.act_caption_selected)
        tb.addAction(self.act_caption_uncaptioned)
        tb.addAction(self.act_write_files)
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        tb.addWidget(spacer)
        tb.addAction(self.act_settings)
        self.toolbar = tb
        for a in (self.act_page_photos, self.act_page_people, self.act_page_faces, self.act_page_personalize):
            w = tb.widgetForAction(a)
            if w is not None:
                f = w.font()
                f.setBold(True)
                w.setFont(f)

    def _update_actions(self) -> None:
        if self._closing:  # the undo stack emits while it is destroyed; the library may be closed by then
            return
        on_photos = self.current_page() == "browser"
        has_ctrl = self.controller is not None
        sel = self.browser.selected_ids() if on_photos else []
        cur = self.panel.photo_id
        why = "" if has_ctrl else self.controller_error
        n = len(sel)
        self.act_caption_selected.setText(f"Caption {n} Selected" if n > 1 else "Caption Selected")
        for a, ok in ((self.act_caption_selected, has_ctrl and n > 0),
                      (self.act_caption_uncaptioned, has_ctrl),
                      (self.act_regenerate, has_ctrl and cur is not None),
                      (self.act_settings, has_ctrl), (self.act_unload, has_ctrl)):
            a.setEnabled(ok)
            if why:
                a.setToolTip(why)
        self.panel.set_regenerate_available(has_ctrl, "" if has_ctrl else why)
        for a in (self.act_accept, self.act_save_edit, self.act_add_person, self.act_next, self.act_prev,
                  self.act_write_files):
            a.setEnabled(on_photos)

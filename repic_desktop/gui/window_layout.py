"""The main window's layout memory: geometry, docks, splitters, thumbnail size and page, kept in QSettings
under a version number (a new version starts from the default layout). A mixin of MainWindow
(main_window.py).
"""
from __future__ import annotations

from PySide6.QtCore import QByteArray, QSettings


PAGES = ("browser", "people", "faces", "personalize")
SETTINGS_VERSION = 1


class LayoutMemory:
    """Saving and restoring the main window's layout in QSettings."""

    # ------------------------------------------------------------------ layout memory
    def save_layout(self) -> None:
        s = QSettings()
        s.beginGroup("mainWindow")
        s.setValue("version", SETTINGS_VERSION)
        s.setValue("geometry", self.saveGeometry())
        s.setValue("state", self.saveState(SETTINGS_VERSION))
        s.setValue("photosSplitter", self.photos_page.saveState())
        s.setValue("browserSplitter", self.browser.splitter.saveState())
        s.setValue("panelSplitter", self.panel.splitter.saveState())
        s.setValue("peopleSplitter", self.people.splitter.saveState())
        s.setValue("thumbSize", self.browser.size_slider.value())
        s.setValue("page", self.current_page())
        s.endGroup()
        s.sync()

    def restore_layout(self) -> None:
        s = QSettings()
        s.beginGroup("mainWindow")
        try:
            if int(s.value("version", 0) or 0) != SETTINGS_VERSION:
                self._first_run_layout = True
                return
            geo = s.value("geometry")
            if isinstance(geo, QByteArray):
                self.restoreGeometry(geo)
            state = s.value("state")
            if isinstance(state, QByteArray):
                self.restoreState(state, SETTINGS_VERSION)
            for key, splitter in (("photosSplitter", self.photos_page), ("browserSplitter", self.browser.splitter),
                                  ("panelSplitter", self.panel.splitter), ("peopleSplitter", self.people.splitter)):
                v = s.value(key)
                if isinstance(v, QByteArray):
                    splitter.restoreState(v)
            size = int(s.value("thumbSize", 0) or 0)
            if size:
                self.browser.size_slider.setValue(size)
            page = s.value("page", "browser")
            if page in PAGES:
                self.show_page(page)
        finally:
            s.endGroup()

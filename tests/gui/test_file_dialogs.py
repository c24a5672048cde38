"""File → Add Photo Folder… must not break the library it lists (issue #13, item 1).

Qt's stock icon provider asked QMimeDatabase for each listed file's type, which opened library.sqlite,
-wal and -shm to sniff them; that close() dropped the GUI process's SQLite locks, and the next `repic`
command deleted the WAL under the GUI. The test opens the real dialog of the real window on the library's
folder, waits until Qt has listed it, cancels, and then lets other processes write (tests/lock_harness.py).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication, QFileDialog, QFileSystemModel

from repic_desktop.gui.dialogs.files import choose_open_file, choose_open_files
from tests.lock_harness import Holder, holds_db_lock


pytestmark = [pytest.mark.usefixtures("gui_app"),
              pytest.mark.skipif(sys.platform == "win32", reason="POSIX advisory locks")]


def test_add_photo_folder_dialog_listing_the_library_keeps_it_shared(tmp_path, make_window):
    folder = tmp_path / "RePIC Desktop"
    holder = Holder(folder / "library.sqlite")
    try:
        win = make_window(holder.lib)
        QSettings().setValue("lastImportFolder", str(tmp_path))
        listed: list[str] = []

        def in_dialog() -> None:
            dlg = next(w for w in QApplication.topLevelWidgets() if isinstance(w, QFileDialog) and w.isVisible())
            model = dlg.findChild(QFileSystemModel)

            def loaded(path: str) -> None:
                if Path(path) == folder:   # Qt has listed the library's folder (and typed each file)
                    listed.append(path)
                    dlg.reject()

            model.directoryLoaded.connect(loaded)
            dlg.setDirectory(str(folder))   # the user goes to the folder that holds the library
            QTimer.singleShot(15_000, dlg.reject)   # never hang the suite if Qt does not list it

        QTimer.singleShot(0, in_dialog)  # runs inside the dialog's modal loop
        win.add_folder()
        assert listed, "the dialog never listed the library's folder"
        problems = holder.shared_problems()
    finally:
        holder.close()
    assert problems == []


def test_every_file_dialog_of_the_app_goes_through_file_dialogs():
    """A stock QFileDialog (static helpers, a native dialog) would sniff file contents again."""
    gui = Path(__file__).resolve().parents[2] / "repic_desktop" / "gui"
    modules = list(gui.rglob("*.py"))
    assert len(modules) > 20  # the whole GUI package, subpackages included
    offenders = [str(p.relative_to(gui)) for p in modules
                 if p.relative_to(gui).as_posix() != "dialogs/files.py" and re.search(r"\bQFileDialog\b", p.read_text(encoding="utf-8"))]
    assert offenders == []


def _accept_in_dialog(path: Path) -> None:
    """Inside the next modal file dialog: pick `path` (as a user typing its name would) and accept."""
    def pick() -> None:
        dlg = next(w for w in QApplication.topLevelWidgets() if isinstance(w, QFileDialog) and w.isVisible())
        dlg.selectFile(str(path))
        dlg.accept()
    QTimer.singleShot(0, pick)


def test_a_reference_photo_picker_refuses_the_library_file_without_opening_it(tmp_path):
    holder = Holder(tmp_path / "library.sqlite")
    photo = tmp_path / "me.jpg"
    photo.write_bytes(b"not opened either")
    try:
        _accept_in_dialog(holder.path)
        single = choose_open_file(None, "Reference photo", str(tmp_path), "Images (*.jpg)", library=holder.lib)
        _accept_in_dialog(holder.path)
        several = choose_open_files(None, "Reference photos", str(tmp_path), "Images (*.jpg)", library=holder.lib)
        _accept_in_dialog(photo)
        other = choose_open_file(None, "Reference photo", str(tmp_path), "Images (*.jpg)", library=holder.lib)
        assert holds_db_lock(holder.path) is not False
    finally:
        holder.close()
    assert (single, several, other) == ("", [], str(photo))

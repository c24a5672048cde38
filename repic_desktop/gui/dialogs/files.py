"""File and folder pickers that never open the files they list.

Why this module exists: SQLite's POSIX locks belong to the process, not to a file descriptor, and any
close() of *any* descriptor on the library's inode drops *all* of them (the classic SQLite pitfall). Qt's
file dialog asks its icon provider for each listed file's type, and the stock provider answers through
QMimeDatabase::mimeTypeForFile(), which opens the file to sniff its content when the name alone does not
decide (`library.sqlite-wal`, `-shm`). So merely listing the folder that holds the library dropped the GUI's
locks on it; the next `repic` command (or the Personalize page's child process) then believed it was the
last user, checkpointed and deleted the -wal and -shm files the GUI still had open, and from then on the
two processes wrote to different WALs until the library was malformed (issue #13, item 1).

The rules here:
- `SafeIconProvider` answers from the file *name* only (and stat: folder or file); it never reads content.
- Dialogs are Qt's own (DontUseNativeDialog): a native dialog (GTK's, KDE's) runs inside our process with
  its own content sniffing that we cannot switch off; Qt's widget dialog uses our icon provider.
- DontUseCustomDirectoryIcons: no reading of per-folder icon files either.
- Every file dialog of the app goes through `choose_folder` / `choose_open_file(s)`;
  tests/gui/test_file_dialogs.py checks both the provider and that a listed library keeps its locks.
"""
from __future__ import annotations

import os

from PySide6.QtCore import QFileInfo, QMimeDatabase
from PySide6.QtGui import QAbstractFileIconProvider, QIcon
from PySide6.QtWidgets import QDialog, QFileDialog, QFileIconProvider, QWidget

_Opt = QFileDialog.Option


class SafeIconProvider(QFileIconProvider):
    """Icons and type names from the file name alone, never from the file's bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.setOptions(QAbstractFileIconProvider.Option.DontUseCustomDirectoryIcons)

    @staticmethod
    def _mime(info: QFileInfo):
        # mimeTypesForFileName matches globs on the name only; mimeTypeForFile() would open the file.
        found = QMimeDatabase().mimeTypesForFileName(info.fileName())
        return found[0] if found else None

    def icon(self, what):  # noqa: D401 - both C++ overloads land here
        if not isinstance(what, QFileInfo):
            return super().icon(what)
        kind = QAbstractFileIconProvider.IconType
        if what.isDir():
            return super().icon(kind.Folder)
        mime = self._mime(what)
        themed = QIcon.fromTheme(mime.iconName()) if mime is not None else QIcon()
        return themed if not themed.isNull() else super().icon(kind.File)

    def type(self, info: QFileInfo) -> str:
        if info.isDir():
            return "Folder"
        mime = self._mime(info)
        return mime.comment() if mime is not None else "File"


_provider: SafeIconProvider | None = None


def safe_icon_provider() -> SafeIconProvider:
    """One provider for every dialog (QFileDialog does not own it, so it must outlive them)."""
    global _provider
    if _provider is None:
        _provider = SafeIconProvider()
    return _provider


def file_dialog(parent: QWidget | None, title: str, start: str, *, folders: bool = False,
                multiple: bool = False, name_filter: str | None = None) -> QFileDialog:
    """A configured, not yet shown dialog (tests drive it directly)."""
    dlg = QFileDialog(parent, title, start)
    dlg.setOption(_Opt.DontUseNativeDialog, True)
    dlg.setOption(_Opt.DontUseCustomDirectoryIcons, True)
    dlg.setIconProvider(safe_icon_provider())
    if folders:
        dlg.setFileMode(QFileDialog.FileMode.Directory)
        dlg.setOption(_Opt.ShowDirsOnly, True)
    else:
        dlg.setFileMode(QFileDialog.FileMode.ExistingFiles if multiple else QFileDialog.FileMode.ExistingFile)
        if name_filter:
            dlg.setNameFilter(name_filter)
    return dlg


def _run(dlg: QFileDialog) -> list[str]:
    try:
        return dlg.selectedFiles() if dlg.exec() == QDialog.DialogCode.Accepted else []
    finally:
        dlg.deleteLater()


def choose_folder(parent: QWidget | None, title: str, start: str) -> str:
    """Like QFileDialog.getExistingDirectory; '' when cancelled."""
    picked = _run(file_dialog(parent, title, start, folders=True))
    return picked[0] if picked else ""


def _not_the_library(parent: QWidget | None, paths: list[str], library) -> list[str]:
    """Drop the library's own database files (a typed name passes any filter): the caller would open them
    to read a photo, and that close() alone breaks the library (see the module docstring)."""
    if library is None:
        return paths
    own = library.own_file_keys()
    keep = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            keep.append(p)
            continue
        if (st.st_dev, st.st_ino) in own:
            from .errors import show_error

            show_error(parent, "Not a photo", f"{p} is this library's own database file, not a photo.")
        else:
            keep.append(p)
    return keep


def choose_open_file(parent: QWidget | None, title: str, start: str, name_filter: str | None = None, *,
                     library=None) -> str:
    """Like QFileDialog.getOpenFileName (path only); '' when cancelled. With `library`, its own database
    files are refused without being opened."""
    picked = _not_the_library(parent, _run(file_dialog(parent, title, start, name_filter=name_filter)), library)
    return picked[0] if picked else ""


def choose_open_files(parent: QWidget | None, title: str, start: str,
                      name_filter: str | None = None, *, library=None) -> list[str]:
    """Like QFileDialog.getOpenFileNames (paths only); [] when cancelled. `library` as in choose_open_file."""
    return _not_the_library(parent, _run(file_dialog(parent, title, start, multiple=True,
                                                     name_filter=name_filter)), library)


def choose_new_file(parent: QWidget | None, title: str, start: str, name_filter: str | None = None) -> str:
    """Like QFileDialog.getSaveFileName (path only, no overwrite question: the caller refuses an existing
    file itself); '' when cancelled."""
    dlg = file_dialog(parent, title, start, name_filter=name_filter)
    dlg.setFileMode(QFileDialog.FileMode.AnyFile)
    dlg.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
    dlg.setOption(_Opt.DontConfirmOverwrite, True)
    picked = _run(dlg)
    return picked[0] if picked else ""

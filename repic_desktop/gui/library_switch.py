"""File → Open Library… / New Library…: which file, and which library the app opens at the next start.

The window itself is rebuilt for the other library (MainWindow.open_library): every page, worker and
the captioning controller hold the library they were made with, and a fresh window is simpler and safer
than re-pointing each of them.
"""
from __future__ import annotations

import os
from pathlib import Path

LAST_KEY = "library/last"
LIBRARY_FILTER = "RePIC libraries (*.sqlite *.db);;All files (*)"
SUFFIXES = (".sqlite", ".db")


def with_library_suffix(path: str | os.PathLike) -> Path:
    """A typed name without an extension gets .sqlite (the file then shows in the Open filter)."""
    p = Path(path).expanduser()
    return p if p.suffix.lower() in SUFFIXES else p.with_name(p.name + ".sqlite")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def remember_library(path: str | os.PathLike) -> None:
    from PySide6.QtCore import QSettings

    QSettings().setValue(LAST_KEY, str(Path(path).resolve()))


def remembered_library() -> Path | None:
    """The library last opened with File → Open/New Library, if it still exists."""
    from PySide6.QtCore import QSettings

    value = QSettings().value(LAST_KEY, "")
    if value and Path(str(value)).is_file():
        return Path(str(value))
    return None


def startup_library(explicit: str | os.PathLike | None) -> Path:
    """--library / REPIC_LIBRARY (explicit) beat the remembered library, which beats the default."""
    from ..core import paths

    if explicit:
        return Path(explicit).expanduser()
    return remembered_library() or paths.default_library_path()

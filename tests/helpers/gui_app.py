"""Shared set-up for the desktop-app tests: generated photos, a library, an isolated QSettings, a window.

(Not a conftest.py: test modules import the fixtures they use, by name.)
"""
from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

PALETTES = [((255, 190, 120), (120, 170, 230)), ((250, 230, 180), (90, 150, 110)),
            ((200, 220, 255), (60, 90, 160)), ((255, 210, 200), (180, 110, 140)),
            ((230, 240, 210), (120, 160, 80)), ((255, 240, 220), (200, 140, 80))]


def make_scene(seed: int, size=(480, 360)) -> Image.Image:
    """A small, pleasant, distinct picture (sky gradient, sun, hills, one or two figures)."""
    rnd = random.Random(seed)
    w, h = size
    top, bottom = PALETTES[seed % len(PALETTES)]
    im = Image.new("RGB", size)
    d = ImageDraw.Draw(im)
    for y in range(h):
        t = y / h
        d.line([(0, y), (w, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    sx, sy, sr = rnd.randint(40, w - 40), rnd.randint(30, h // 3), rnd.randint(18, 36)
    d.ellipse([sx - sr, sy - sr, sx + sr, sy + sr], fill=(255, 245, 200))
    base = rnd.randint(h * 2 // 3, h * 4 // 5)
    pts = [(0, h)] + [(x, base + int(18 * math.sin(x / 50 + seed))) for x in range(0, w + 1, 20)] + [(w, h)]
    d.polygon(pts, fill=tuple(max(0, c - 60) for c in bottom))
    for _ in range(rnd.randint(1, 2)):
        fx = rnd.randint(60, w - 60)
        col = rnd.choice([(230, 120, 90), (90, 120, 200), (240, 200, 80), (150, 90, 160)])
        d.ellipse([fx - 16, base - 86, fx + 16, base - 54], fill=(240, 200, 170))
        d.rounded_rectangle([fx - 24, base - 54, fx + 24, base + 6], radius=12, fill=col)
    return im


def make_album(root: Path, n: int = 12, *, subfolders=("Summer 2023", "Birthday"), broken: bool = True) -> Path:
    """JPEGs spread over a few subfolders, one with an EXIF rotation, plus one broken file."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        folder = root / subfolders[i % len(subfolders)] if subfolders else root
        folder.mkdir(exist_ok=True)
        im = make_scene(i)
        if i == 1:  # stored sideways, EXIF says rotate: the app must show it upright
            exif = Image.Exif()
            exif[0x0112] = 6
            im.rotate(90, expand=True).save(folder / f"IMG_{1000 + i}.jpg", quality=85, exif=exif)
        else:
            im.save(folder / f"IMG_{1000 + i}.jpg", quality=85)
    if broken:
        (root / subfolders[0] if subfolders else root).joinpath("notes.jpg").write_text("not really a photo")
    return root


@pytest.fixture
def qsettings_tmp(tmp_path, monkeypatch):
    """QSettings for the app land in tmp_path (never the developer's real settings)."""
    from PySide6.QtCore import QSettings

    d = tmp_path / "qsettings"
    d.mkdir()
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(d))
    return d


@pytest.fixture
def gui_app(qapp, qsettings_tmp):
    from repic_desktop.gui.app import configure_app

    configure_app(qapp)
    return qapp


@pytest.fixture
def album(tmp_path):
    return make_album(tmp_path / "album")


@pytest.fixture
def thumb_cache(tmp_path):
    from repic_desktop.core.thumbnails import ThumbnailCache

    return ThumbnailCache(tmp_path / "thumbs")


@pytest.fixture
def gui_library(tmp_path):
    from repic_desktop.core.library import Library

    lib = Library(tmp_path / "lib.sqlite")
    yield lib
    lib.close()


@pytest.fixture
def imported_library(gui_library, album):
    from repic_desktop.core.scanner import scan_folder

    scan_folder(gui_library, album)
    return gui_library


@pytest.fixture
def make_window(gui_app, qtbot, thumb_cache):
    """Factory: a MainWindow on a library (no captioning controller unless given), shown and loaded."""
    from repic_desktop.gui.main_window import MainWindow

    made = []

    def make(library, controller_factory=None, show=True):
        win = MainWindow(library, controller_factory=controller_factory, startup_prompts=False,
                         thumbnail_cache=thumb_cache)
        qtbot.addWidget(win)
        made.append(win)
        if show:
            with qtbot.waitSignal(win.browser.loaded, timeout=10_000):
                win.show()
        return win

    yield make
    import shiboken6

    for w in made:
        if shiboken6.isValid(w):     # File → Open Library deletes the window it replaces
            w.close()

"""The first hour in the app (issue 17, item 4): what a new user meets, checked offscreen.

Each test drives the real widgets; the CLI-while-open test runs the real `repic` command in a child
process against the library the window has open.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ._app_fixtures import (  # noqa: F401 - fixtures
    album, gui_app, gui_library, imported_library, make_album, make_window, qsettings_tmp, thumb_cache,
)

REPO = Path(__file__).resolve().parents[2]


def run_repic(library_path, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "repic_desktop", "--library", str(library_path), *args],
                          env=env, capture_output=True, text=True, timeout=120, check=True)


# ---------------------------------------------------------------------------------------------- wording

def test_counted_nouns():
    from repic_desktop.gui.wording import count, people_and_pets

    assert people_and_pets(1, 1) == "1 person, 1 pet"
    assert people_and_pets(2, 0) == "2 people, 0 pets"
    assert count(1, "photo") == "1 photo" and count(1200, "photo") == "1,200 photos"


def test_no_maybe_plurals_in_the_gui():
    """No "photo(s)" anywhere in the GUI's strings (calls like f(s) are code, not text)."""
    import io
    import tokenize

    hits = []
    for p in (REPO / "repic_desktop" / "gui").rglob("*.py"):
        for tok in tokenize.generate_tokens(io.StringIO(p.read_text(encoding="utf-8")).readline):
            if tok.type == tokenize.STRING and re.search(r"(?<![\w.])[A-Za-z]+\(s\)", tok.string):
                hits.append(f"{p.name}:{tok.start[0]}: {tok.string}")
    assert not hits, hits


def test_status_bar_counts_say_person_and_pet(imported_library, make_window, qtbot):
    lib = imported_library
    lib.add_concept("Anya", "person")
    lib.add_concept("Rex", "pet")
    win = make_window(lib)
    win._update_counts()
    qtbot.waitUntil(lambda: "1 person, 1 pet" in win.status_counts.text(), timeout=10_000)


def test_window_title_names_the_app_once(imported_library, make_window):
    from repic_desktop import APP_NAME

    win = make_window(imported_library)
    title = win.windowTitle()
    assert title.count(APP_NAME) == 1
    # Qt appends the display name to a title unless the title ends with it
    assert title.endswith(APP_NAME) and title.startswith("lib")


# ---------------------------------------------------------------------------------------------- welcome

def test_welcome_skipped_for_a_library_with_photos(imported_library, qtbot, isolated_env):
    from PySide6.QtWidgets import QWidget

    from repic_desktop.gui.dialogs.welcome import maybe_show_welcome

    class Main(QWidget):
        lib = imported_library

    main = Main()
    qtbot.addWidget(main)
    assert maybe_show_welcome(main, controller=None) is None


# ---------------------------------------------------------------------------------------------- CLI while open

def test_window_shows_what_a_repic_command_changed(imported_library, make_window, qtbot, tmp_path):
    lib = imported_library
    win = make_window(lib)
    n_before = win.browser.model.rowCount()
    assert win.browser.person_combo.findText("Zed") < 0

    run_repic(lib.path, "concept", "add", "Zed", "--kind", "person")
    qtbot.waitUntil(lambda: win.browser.person_combo.findText("Zed") >= 0, timeout=10_000)

    extra = make_album(tmp_path / "more", n=2, subfolders=(), broken=False)
    run_repic(lib.path, "import", str(extra))
    qtbot.waitUntil(lambda: win.browser.model.rowCount() == n_before + 2, timeout=10_000)
    qtbot.waitUntil(lambda: win.counts["photos"] == n_before + 2, timeout=10_000)


def test_own_edits_do_not_trigger_the_watcher(imported_library, make_window, qtbot):
    win = make_window(imported_library)
    win.watcher.timer.stop()
    win.lib.add_concept("Own", "person")          # the window's own connection
    assert not win.watcher.poll()


def test_watcher_waits_while_the_window_itself_writes(imported_library, make_window, qtbot):
    from repic_desktop.core.library import Library

    win = make_window(imported_library)
    win.watcher.timer.stop()
    busy = {"on": True}
    win.watcher.busy = lambda: busy["on"]
    with Library(imported_library.path) as other:
        other.add_concept("Other", "person")
    assert not win.watcher.poll()                 # seen, but held back while busy
    busy["on"] = False
    with qtbot.waitSignal(win.watcher.changed, timeout=1000):
        assert win.watcher.poll()

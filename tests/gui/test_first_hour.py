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

from tests.helpers.gui_app import make_album

from tests.helpers.square_faces import service

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
    lib.concepts.add("Anya", "person")
    lib.concepts.add("Rex", "pet")
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
    win.lib.concepts.add("Own", "person")          # the window's own connection
    assert not win.watcher.poll()


def test_watcher_waits_while_the_window_itself_writes(imported_library, make_window, qtbot):
    from repic_desktop.core.library import Library

    win = make_window(imported_library)
    win.watcher.timer.stop()
    busy = {"on": True}
    win.watcher.busy = lambda: busy["on"]
    with Library(imported_library.path) as other:
        other.concepts.add("Other", "person")
    assert not win.watcher.poll()                 # seen, but held back while busy
    busy["on"] = False
    with qtbot.waitSignal(win.watcher.changed, timeout=1000):
        assert win.watcher.poll()


# ---------------------------------------------------------------------------------------------- libraries

def _library_with_photos(tmp_path, name: str, n: int):
    from repic_desktop.core.library import Library
    from repic_desktop.core.scanner import scan_folder

    lib = Library(tmp_path / f"{name}.sqlite")
    scan_folder(lib, make_album(tmp_path / f"{name}-photos", n=n, subfolders=(), broken=False))
    lib.close()
    return tmp_path / f"{name}.sqlite"


def test_file_menu_opens_another_library(imported_library, make_window, qtbot, tmp_path, monkeypatch):
    from PySide6.QtCore import QSettings

    from repic_desktop.gui import main_window as mw
    from repic_desktop.gui.library_switch import remembered_library, startup_library

    other = _library_with_photos(tmp_path, "grandma", 3)
    win = make_window(imported_library)
    file_menu = next(a.menu() for a in win.menuBar().actions() if a.text().replace("&", "") == "File")
    assert {win.act_open_library, win.act_new_library} <= set(file_menu.actions())
    monkeypatch.setattr(mw, "choose_open_file", lambda *a, **k: str(other))
    win.act_open_library.trigger()
    new = mw.MainWindow.latest
    assert new is not win and new.library_path == other
    assert new.windowTitle().startswith("grandma — ")
    qtbot.waitUntil(lambda: new.browser.model.rowCount() == 3, timeout=10_000)
    import shiboken6
    assert not shiboken6.isValid(win) or not win.isVisible()     # closed (and deleted soon after)
    assert remembered_library() == other.resolve()
    assert startup_library(None) == other.resolve()            # the next start opens it again
    assert startup_library(tmp_path / "x.sqlite") == tmp_path / "x.sqlite"   # --library still wins
    QSettings().remove("library/last")
    new.close()


def test_file_menu_new_library(imported_library, make_window, qtbot, tmp_path, monkeypatch):
    from repic_desktop.gui import main_window as mw

    win = make_window(imported_library)
    errors = []
    monkeypatch.setattr(mw, "show_error", lambda _w, title, text, *a, **k: errors.append(text))
    monkeypatch.setattr(mw, "choose_new_file", lambda *a, **k: str(imported_library.path))
    assert win.new_library_dialog() is None and "already exists" in errors[0]   # never over a library
    monkeypatch.setattr(mw, "choose_new_file", lambda *a, **k: str(tmp_path / "Fresh start"))
    new = win.new_library_dialog()
    assert new.library_path == tmp_path / "Fresh start.sqlite" and new.library_path.is_file()
    assert new.lib.photos.count() == 0
    new.close()


# ---------------------------------------------------------------------------------------------- theme

def _dark(app) -> bool:
    from PySide6.QtGui import QPalette
    return app.palette().color(QPalette.ColorRole.Window).lightness() < 110


def test_theme_switch_repaints_widgets_with_a_style_sheet(gui_app, qtbot):
    from PySide6.QtWidgets import QPushButton

    from repic_desktop.gui.theme import set_theme

    set_theme(gui_app, "light", save=False)
    b = QPushButton("Remove")
    b.setStyleSheet("QPushButton { padding: 1px 10px; }")      # as the queue dock's compact buttons
    qtbot.addWidget(b)
    b.show()
    set_theme(gui_app, "dark", save=False)
    try:
        assert b.grab().toImage().pixelColor(4, b.height() // 2).lightness() < 110
    finally:
        set_theme(gui_app, "system", save=False)


def test_theme_switch_previews_keeps_and_puts_back(gui_app, qtbot, monkeypatch):
    from PySide6.QtWidgets import QDialog

    from repic_desktop.gui.dialogs.appearance import AppearanceTab
    from repic_desktop.gui.theme import saved_theme

    monkeypatch.delenv("REPIC_THEME", raising=False)
    dlg = QDialog()
    qtbot.addWidget(dlg)
    tab = AppearanceTab(dlg, dlg)
    assert tab.choice() == "system" and saved_theme() == "system"
    tab.buttons["light"].click()
    assert not _dark(gui_app)
    tab.buttons["dark"].click()
    assert _dark(gui_app)                        # shown at once
    dlg.reject()
    assert saved_theme() == "system"             # Cancel: nothing kept
    dlg2 = QDialog()
    qtbot.addWidget(dlg2)
    tab2 = AppearanceTab(dlg2, dlg2)
    tab2.buttons["dark"].click()
    dlg2.accept()
    assert saved_theme() == "dark" and _dark(gui_app)
    from repic_desktop.gui.app import apply_color_scheme
    apply_color_scheme(gui_app)                  # what the next start does
    assert _dark(gui_app)
    tab3 = AppearanceTab(QDialog(), None)
    tab3.buttons["light"].click()
    assert not _dark(gui_app)
    from repic_desktop.gui.theme import set_theme
    set_theme(gui_app, "system")


# ---------------------------------------------------------------------------------------------- suggestions

def test_after_indexing_the_dock_counts_suggestions_and_the_grid_filters_them(make_window, qtbot, squares):
    lib, ids, _matcher = squares
    win = make_window(lib)
    with qtbot.waitSignal(win.index.finished, timeout=15_000):
        win.act_index_faces.trigger()
    n, photos = lib.retrieval.pending_suggestion_count()
    assert n >= 2 and photos >= 1
    card = win.index_dock.index_card
    assert f"{n} suggestions to review on {photos} photo" in card.message.text()
    assert card.show_photos.isVisible()
    with qtbot.waitSignal(win.browser.photos_loaded, timeout=10_000):
        card.show_photos.click()
    combo = win.browser.person_combo
    assert combo.currentText() == "Suggested" and win.browser.filter.suggested
    shown = {win.browser.model.photo_id(r) for r in range(win.browser.model.rowCount())}
    waiting = {r[0] for r in lib.conn.execute("SELECT DISTINCT photo_id FROM suggestions WHERE status = 'pending'")}
    assert shown == waiting and ids["party"] in shown and ids["green1"] not in shown
    with qtbot.waitSignal(win.browser.photos_loaded, timeout=10_000):
        combo.setCurrentIndex(combo.findText("Everyone"))      # off again: every photo
    assert win.browser.model.rowCount() == len(ids)


# ---------------------------------------------------------------------------------------------- personalize

HUB_BASE = "Qwen/Qwen2.5-VL-7B-Instruct"


@pytest.fixture
def personalize_env(tmp_path, monkeypatch):
    from repic_desktop.core.settings import Settings

    monkeypatch.setenv("REPIC_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    s = Settings()
    s.model.source = HUB_BASE
    s.save()
    return tmp_path


def _page(qtbot, lib, size=(1300, 820)):
    from repic_desktop.gui.pages.personalize import PersonalizePage

    page = PersonalizePage(lib, trainer_command=[sys.executable, "-c", "pass"])
    qtbot.addWidget(page, before_close_func=lambda p: p._drop_summary_proc())
    page.resize(*size)
    page.show()
    return page


def test_personalize_offers_the_demo_model_chosen_in_the_welcome(imported_library, personalize_env, qtbot,
                                                                 demo_model_dir):
    from repic_desktop.core.settings import Settings
    from repic_desktop.app.caption_jobs import demo_model_dir as app_demo_dir

    page = _page(qtbot, imported_library)
    assert page.base_combo.currentText() == HUB_BASE
    target = app_demo_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(demo_model_dir, target_is_directory=True)      # what the welcome builds
    s = Settings.load()
    s.model.source = str(target)                                     # ... and chooses
    s.save()
    page.reload()                                                    # (the window does this on showing the page)
    assert page.base_combo.currentText() == str(target)
    assert not page.base_status.isVisible()                          # a folder: nothing to download
    s.model.source = HUB_BASE
    s.save()
    page.reload()
    assert page.base_combo.currentText() == HUB_BASE
    assert page.base_combo.findText(str(target)) >= 0                # still offered


def test_personalize_downloads_a_missing_base_model(imported_library, personalize_env, qtbot, monkeypatch):

    from repic_desktop.captioning import model_manager as mm

    lib = imported_library
    lib.concepts.add("Anya", "person")
    for p in lib.photos.list()[:3]:
        lib.concepts.tag(p.id, "Anya")
    page = _page(qtbot, lib)
    st = page.base_status
    assert st.missing and "Not downloaded yet" in st.label.text()
    assert not page.start_btn.isEnabled() and "Download it" in page.setup_error.text()
    assert not st.button.isVisible()                                 # no controller: nothing to download with

    from repic_desktop.gui.captioning.controller import CaptioningController
    ctrl = CaptioningController(lib.path)
    try:
        page.set_controller(ctrl)
        assert st.button.isVisible()
        # offline here (HF_HUB_OFFLINE=1): the real download refuses at once, and the page says why
        st.button.click()
        qtbot.waitUntil(lambda: "Download failed" in st.label.text(), timeout=10_000)
        assert "offline" in st.label.text() and st.button.isVisible()

        # a download that works: progress on the page, then the model is here and Start is possible
        fetched = {"done": False}

        def fake_download(repo_id, revision=None, cache_dir=None, progress=None, allow_patterns=None):
            for n in (0, 5_000_000, 10_000_000):
                progress("Downloading bytes", n, 10_000_000)
            fetched["done"] = True
            return personalize_env

        real_resolve = mm.resolve_local
        monkeypatch.setattr(mm, "download_model", fake_download)
        monkeypatch.setattr(mm, "resolve_local", lambda source, **kw: (personalize_env, None)
                            if source == HUB_BASE and fetched["done"] else real_resolve(source, **kw))
        st.button.click()
        qtbot.waitUntil(lambda: not st.missing, timeout=10_000)
        assert not st.isVisible() and page.start_btn.isEnabled()
    finally:
        ctrl.shutdown()


def test_personalize_start_button_is_never_scrolled_away(imported_library, personalize_env, qtbot):
    page = _page(qtbot, imported_library, size=(900, 420))
    page.adv_toggle.setChecked(True)
    qtbot.wait(50)
    assert not page.setup_scroll.isAncestorOf(page.start_btn)
    assert page.start_btn.isVisible() and not page.start_btn.visibleRegion().isEmpty()
    assert page.setup_scroll.verticalScrollBar().maximum() > 0      # the form itself scrolls


def test_wheel_over_the_personalize_form_scrolls_it_and_never_changes_a_combo(imported_library, personalize_env,
                                                                              qtbot):
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    page = _page(qtbot, imported_library, size=(900, 420))
    page.adv_toggle.setChecked(True)
    qtbot.wait(50)
    combo, spin, bar = page.base_combo, page.steps_spin, page.setup_scroll.verticalScrollBar()
    combo.setCurrentIndex(0)
    assert combo.count() > 1

    def wheel(w, dy=-120):
        pos = QPointF(w.width() / 2, w.height() / 2)
        ev = QWheelEvent(pos, QPointF(w.mapToGlobal(pos.toPoint())), QPoint(0, 0), QPoint(0, dy),
                         Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
        QApplication.sendEvent(w, ev)

    page.setFocus()
    before = bar.value()
    wheel(combo)
    wheel(spin)
    assert combo.currentIndex() == 0 and spin.value() == 0
    assert bar.value() > before                                      # the form scrolled instead
    combo.setFocus()
    qtbot.waitUntil(combo.hasFocus, timeout=2000)
    wheel(combo)
    assert combo.currentIndex() == 1                                 # focused: the wheel is the user's choice


# ---------------------------------------------------------------------------------------------- unknown faces

def _clusters_ready(page, qtbot, n):
    page.reload()
    qtbot.waitUntil(lambda: page.model.rowCount() == n, timeout=15_000)


def test_naming_unknown_faces_is_undoable(faces, qtbot):
    from repic_desktop.core.library import NotFound

    win, lib, ids, matcher = faces
    service.run_index_job(lib, matcher)
    page = win.faces
    _clusters_ready(page, qtbot, 2)
    page.name_edit.setText("Ben")
    with qtbot.waitSignal(page.concepts_changed, timeout=15_000):
        page.name_btn.click()
    assert lib.concepts.get("Ben") and win.undo.undoText() == "Name faces <Ben>"
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=15_000)
    win.act_undo.trigger()                                         # Ctrl+Z, as anywhere else
    with pytest.raises(NotFound):
        lib.concepts.get("Ben")                                         # the person it created is gone again
    for pid in (ids["green1"], ids["green2"]):
        assert lib.concepts.of_photo(pid) == [] and lib.concepts.regions(pid) == []
    qtbot.waitUntil(lambda: page.model.rowCount() == 2, timeout=15_000)   # the group is unknown again
    win.act_redo.trigger()
    assert {c.name for c in lib.concepts.of_photo(ids["green1"])} == {"Ben"}
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=15_000)


def test_naming_as_someone_known_undo_keeps_what_was_there(faces, qtbot):
    win, lib, ids, matcher = faces
    service.run_index_job(lib, matcher)
    page = win.faces
    lib.concepts.add("Ben", "person")
    lib.concepts.tag(ids["green1"], "Ben")                            # tagged by hand before, without a box
    refs_before = [r.id for r in lib.concepts.refs("Ben")]
    _clusters_ready(page, qtbot, 2)
    page.name_edit.setText("Ben")
    with qtbot.waitSignal(page.concepts_changed, timeout=15_000):
        page.name_btn.click()
    assert lib.concepts.regions(ids["green1"]) and len(lib.concepts.refs("Ben")) > len(refs_before)
    win.undo.undo()
    assert [r.id for r in lib.concepts.refs("Ben")] == refs_before
    assert [c.name for c in lib.concepts.of_photo(ids["green1"])] == ["Ben"] and lib.concepts.regions(ids["green1"]) == []
    assert lib.conn.execute("SELECT source FROM photo_concepts WHERE photo_id = ?",
                            (ids["green1"],)).fetchone()[0] == "manual"
    assert lib.concepts.of_photo(ids["green2"]) == []


def test_ignoring_unknown_faces_is_undoable(faces, qtbot):
    win, lib, ids, matcher = faces
    service.run_index_job(lib, matcher)
    page = win.faces
    _clusters_ready(page, qtbot, 2)
    with qtbot.waitSignal(page.ignored_changed, timeout=15_000):
        page.ignore_btn.click()
    assert {f.photo_id for f in service.ignored_faces(lib)} == {ids["green1"], ids["green2"]}
    assert win.undo.undoText() == "Ignore 2 faces"
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=15_000)
    with qtbot.waitSignal(page.ignored_changed, timeout=15_000):
        win.act_undo.trigger()
    assert service.ignored_faces(lib) == []
    qtbot.waitUntil(lambda: page.model.rowCount() == 2, timeout=15_000)
    win.act_redo.trigger()
    assert len(service.ignored_faces(lib)) == 2


# ---------------------------------------------------------------------------------------------- people page

def test_box_dialog_enter_keeps_the_drawn_box(gui_app, qtbot, tmp_path):
    from PIL import Image
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QDialog

    from repic_desktop.core.library import Box
    from repic_desktop.gui.dialogs.box import BoxDialog
    from repic_desktop.gui.tasks import TaskRunner

    img = tmp_path / "face.jpg"
    Image.new("RGB", (400, 300), (200, 150, 120)).save(img)
    tasks = TaskRunner(threads=1)
    dlg = BoxDialog(tasks, str(img), "Where is Anya?", (400, 300))
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.waitUntil(lambda: dlg.canvas.pixmap is not None, timeout=10_000)
    assert dlg.whole.isDefault() and not dlg.ok.isEnabled()        # nothing drawn: Enter = whole photo
    dlg.canvas.set_box(Box(50, 40, 120, 120))                      # what a drag leaves
    assert dlg.ok.isDefault() and not dlg.whole.isDefault()
    qtbot.keyClick(dlg, Qt.Key.Key_Return)
    assert dlg.result() == QDialog.DialogCode.Accepted and dlg.box == Box(50, 40, 120, 120)
    tasks.wait()


def test_reference_from_a_file_is_shown_by_its_file_name(gui_library, tmp_path):
    from PIL import Image

    from repic_desktop.core.concepts import import_reference_file, reference_label, reference_path

    lib = gui_library
    lib.concepts.add("Anya", "person")
    src = tmp_path / "Anya at the beach.jpg"
    Image.new("RGB", (64, 64), (10, 20, 30)).save(src)
    ref = import_reference_file(lib, "Anya", src)
    path = reference_path(lib, ref)
    assert reference_label(path) == "Anya at the beach.jpg"
    again = tmp_path / "copy.jpg"
    again.write_bytes(src.read_bytes())
    assert reference_path(lib, import_reference_file(lib, "Anya", again)) == path   # one copy per content
    assert reference_label("/x/references/0123456789abcdef01234567.jpg") == "reference photo"   # older copies


def test_people_page_lists_a_file_reference_by_name(imported_library, make_window, qtbot, tmp_path):
    from PIL import Image

    from repic_desktop.core.concepts import import_reference_file

    lib = imported_library
    lib.concepts.add("Anya", "person")
    src = tmp_path / "anya-portrait.jpg"
    Image.new("RGB", (64, 64), (10, 20, 30)).save(src)
    import_reference_file(lib, "Anya", src)
    win = make_window(lib)
    win.show_page("people")
    win.people.select(lib.concepts.get("Anya").id)
    qtbot.waitUntil(lambda: win.people.refs.count() == 1 and "anya-portrait.jpg" in win.people.refs.item(0).text(),
                    timeout=10_000)


# ---------------------------------------------------------------------------------------------- caption dock

@pytest.fixture
def album_for_captions(tmp_path, monkeypatch, demo_model_dir):
    from PIL import Image

    from repic_desktop.core.library import Library
    from repic_desktop.core.settings import Settings

    monkeypatch.setenv("REPIC_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    d = tmp_path / "photos"
    d.mkdir()
    ids = []
    with Library(tmp_path / "lib.sqlite") as lib:
        for i in range(4):
            p = d / f"IMG_{i}.jpg"
            Image.new("RGB", (64, 48), (40 * i, 120, 90)).save(p)
            ids.append(lib.photos.add(p, size=p.stat().st_size, mtime_ns=1, content_hash=f"h{i}", format="JPEG",
                                      width=64, height=48))
    s = Settings()
    s.model.source = str(demo_model_dir)
    s.extra.update(batch_size=2, max_new_tokens=8)
    s.save()
    return {"path": tmp_path / "lib.sqlite", "ids": ids}


def test_job_card_keeps_pause_and_cancel_on_its_title_row(album_for_captions, make_controller, qtbot):
    """The dock often sits at its minimum height: the job's buttons share the title row, so they show as
    long as the job's title does."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QMainWindow

    from tests.helpers.gui_captioning import start_job

    ctrl = make_controller(album_for_captions["path"])
    win = QMainWindow()
    qtbot.addWidget(win)
    win.resize(900, 600)
    dock = ctrl.queue_dock()
    win.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    win.show()
    job = start_job(qtbot, ctrl, album_for_captions["ids"], win)
    qtbot.waitUntil(lambda: job in dock.cards, timeout=10_000)
    card = dock.cards[job]

    def on_title_row(b):
        # same row as the title, above the progress bar and the lines that may wrap
        return (b.geometry().bottom() < card.bar.geometry().top()
                and abs(b.geometry().center().y() - card.title.geometry().center().y()) <= card.title.height())

    card.refresh()
    qtbot.wait(50)
    assert ctrl.jobs[job].active, ctrl.jobs[job].status            # queued or running: Pause and Cancel
    assert card.pause.isVisibleTo(card) and card.cancel.isVisibleTo(card)
    assert on_title_row(card.pause) and on_title_row(card.cancel)
    qtbot.waitUntil(lambda: not ctrl.jobs[job].active, timeout=60_000)
    card.refresh()
    qtbot.wait(50)
    assert card.remove.isVisibleTo(card) and on_title_row(card.remove)

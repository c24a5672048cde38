"""Main window: captioning controller wiring (a stand-in for part B's controller), shortcuts, layout
memory, log view, About, readable errors, and `repic gui --screenshot`."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

import pytest
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QDockWidget, QLabel

from ._app_fixtures import make_album

pytestmark = pytest.mark.usefixtures("gui_app")


class FakeController(QObject):
    """The CaptioningController contract, recording calls."""
    caption_finished = Signal(int, int)
    job_changed = Signal(int)

    def __init__(self, library_path, parent=None):
        super().__init__(parent)
        self.library_path = library_path
        self.calls = []
        self.dock = QDockWidget("Caption queue")
        self.dock.setWidget(QLabel("no jobs"))

    def caption_photos(self, photo_ids, parent_widget):
        self.calls.append(("caption_photos", list(photo_ids)))

    def regenerate(self, photo_id, parent_widget):
        self.calls.append(("regenerate", photo_id))

    def resume_unfinished(self, parent_widget):
        self.calls.append(("resume_unfinished",))

    def queue_dock(self):
        return self.dock

    def open_settings(self, parent_widget):
        self.calls.append(("open_settings",))

    def unload_model(self):
        self.calls.append(("unload_model",))

    def gpu_summary(self):
        return "NVIDIA Test GPU (24 GB)"

    def shutdown(self):
        self.calls.append(("shutdown",))


@pytest.fixture
def fake_ctl():
    made = []

    def factory(path, parent):
        c = FakeController(path, parent)
        made.append(c)
        return c
    factory.made = made
    return factory


def test_captioning_actions_drive_the_controller(imported_library, make_window, fake_ctl, qtbot):
    lib = imported_library
    win = make_window(lib, controller_factory=fake_ctl)
    ctl = fake_ctl.made[0]
    assert ctl.library_path == lib.path
    assert win.queue_dock is ctl.dock and win.dockWidgetArea(ctl.dock) == Qt.DockWidgetArea.BottomDockWidgetArea
    b = win.browser
    b.view.selectAll()
    assert win.act_caption_selected.isEnabled() and win.act_caption_selected.text() == "Caption 12 Selected"
    win.act_caption_selected.trigger()
    assert ctl.calls[-1] == ("caption_photos", b.selected_ids())
    # all uncaptioned: queried in a worker
    lib.add_caption(lib.list_photos()[0].id, "done already")
    win.act_caption_uncaptioned.trigger()
    qtbot.waitUntil(lambda: ctl.calls[-1][0] == "caption_photos" and len(ctl.calls[-1][1]) == 11, timeout=5000)
    # regenerate with Ctrl+R, settings, unload
    b.select_photo(b.model.photo_id(2))
    win.activateWindow()
    QTest.keySequence(win, QKeySequence("Ctrl+R"))
    assert ctl.calls[-1] == ("regenerate", b.model.photo_id(2))
    win.panel.regen_btn.click()
    assert ctl.calls[-1] == ("regenerate", b.model.photo_id(2))
    win.act_settings.trigger()
    win.act_unload.trigger()
    assert ctl.calls[-2:] == [("open_settings",), ("unload_model",)]
    # a finished caption updates that grid cell and the panel
    pid = b.model.photo_id(2)
    cid = lib.add_caption(pid, "A new caption from the model.")
    ctl.caption_finished.emit(pid, cid)
    assert b.model.info(2).caption == "A new caption from the model."
    assert win.panel.editor.toPlainText() == "A new caption from the model."
    win.close()
    assert ctl.calls[-1] == ("shutdown",)


def test_resume_is_offered_once_after_show(imported_library, gui_app, qtbot, fake_ctl, thumb_cache):
    from repic_desktop.gui.main_window import MainWindow

    win = MainWindow(imported_library, controller_factory=fake_ctl, thumbnail_cache=thumb_cache)
    qtbot.addWidget(win)
    win.show()
    ctl = fake_ctl.made[0]
    qtbot.waitUntil(lambda: ("resume_unfinished",) in ctl.calls, timeout=5000)
    win.hide()
    win.show()
    qtbot.wait(50)
    assert ctl.calls.count(("resume_unfinished",)) == 1
    win.close()


def test_without_a_controller_captioning_is_disabled_with_a_reason(imported_library, make_window):
    def broken(path, parent):
        raise ModuleNotFoundError("No module named 'repic_desktop.gui.captioning.controller'",
                                  name="repic_desktop.gui.captioning.controller")

    win = make_window(imported_library, controller_factory=broken)
    win.browser.view.selectAll()
    assert not win.act_caption_selected.isEnabled() and not win.act_caption_uncaptioned.isEnabled()
    assert "not available" in win.act_caption_selected.toolTip()
    assert not win.panel.regen_btn.isEnabled()
    assert win.act_accept.isEnabled()          # reviewing still works


def test_real_controller_starts_and_stops_if_present(imported_library, make_window):
    pytest.importorskip("repic_desktop.gui.captioning.controller")
    from repic_desktop.gui.main_window import _controller_factory_default

    win = make_window(imported_library, controller_factory=_controller_factory_default)
    assert win.controller is not None, win.controller_error
    assert win.queue_dock is not None
    win.close()


def test_keyboard_next_previous_accept(imported_library, make_window, qtbot):
    lib = imported_library
    for p in lib.list_photos()[:3]:
        lib.add_caption(p.id, f"caption of {p.filename}")
    win = make_window(lib)
    b = win.browser
    win.activateWindow()
    b.view.setFocus()
    first = b.model.photo_id(0)
    assert win.panel.photo_id == first
    QTest.keyClick(b.view, Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier)
    assert win.panel.photo_id == b.model.photo_id(1)
    QTest.keyClick(b.view, Qt.Key.Key_Down, Qt.KeyboardModifier.AltModifier)
    assert win.panel.photo_id == b.model.photo_id(2)
    QTest.keyClick(b.view, Qt.Key.Key_Left, Qt.KeyboardModifier.AltModifier)
    pid = b.model.photo_id(1)
    assert win.panel.photo_id == pid
    QTest.keyClick(b.view, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert lib.current_caption(pid).status == "accepted"
    QTest.keySequence(b.view, QKeySequence(QKeySequence.StandardKey.Undo))
    assert lib.current_caption(pid).status == "draft"
    QTest.keySequence(win, QKeySequence("Ctrl+2"))
    assert win.current_page() == "people"
    QTest.keySequence(win, QKeySequence("Ctrl+1"))
    assert win.current_page() == "browser"


def test_window_layout_is_remembered(imported_library, make_window, qtbot, qsettings_tmp):
    win = make_window(imported_library)
    win.resize(1100, 700)
    win.browser.size_slider.setValue(200)
    win.photos_page.setSizes([500, 600])
    win.show_page("people")
    win.log_dock.show()
    win.close()
    assert any(qsettings_tmp.rglob("*.conf")) or any(qsettings_tmp.rglob("*.ini"))
    win2 = make_window(imported_library)
    assert win2.browser.size_slider.value() == 200
    assert win2.current_page() == "people"
    assert win2.size().width() < 1400           # the saved geometry (the offscreen screen may clamp it)
    assert win2.log_dock.isVisibleTo(win2)
    a, b = win2.photos_page.sizes()
    assert abs(a - 500) < 30


def test_log_view_shows_records_from_worker_threads(imported_library, make_window, qtbot):
    win = make_window(imported_library)
    win.act_log.trigger()
    assert win.log_dock.isVisible()
    t = threading.Thread(target=lambda: logging.getLogger("repic_desktop.test").warning("hello from a worker"))
    t.start()
    t.join()
    qtbot.waitUntil(lambda: "hello from a worker" in win.log_view.text.toPlainText(), timeout=3000)
    win.log_view.level.setCurrentIndex(3)          # errors only
    assert "hello from a worker" not in win.log_view.text.toPlainText()


def test_about_shows_versions_and_gpu(imported_library, make_window, fake_ctl):
    win = make_window(imported_library, controller_factory=fake_ctl)
    dlg = win.show_about()
    text = dlg.table.text()
    assert "RePIC Desktop" in text and "PySide6" in text and "torch" in text
    assert "NVIDIA Test GPU" in dlg.gpu.text()
    dlg.close()


def test_errors_are_readable_with_details_behind_a_button(gui_app):
    from repic_desktop.gui.dialogs.errors import show_error
    from repic_desktop.gui.widgets.thumbnails import user_message
    from repic_desktop.core.library import LibraryError

    box = show_error(None, "Cannot open the library", "the file is not a RePIC library", "Traceback ...")
    assert box.text() == "the file is not a RePIC library" and box.detailedText() == "Traceback ..."
    box.close()
    assert user_message(LibraryError("no photo with id 3")) == "no photo with id 3"
    assert user_message(PermissionError(13, "Permission denied", "/x")) == "permission denied: /x"
    assert "ZeroDivisionError" in user_message(ZeroDivisionError("division by zero"))


def test_screenshot_command(tmp_path):
    make_album(tmp_path / "album", 6)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", REPIC_CACHE_DIR=str(tmp_path / "cache"),
               XDG_CONFIG_HOME=str(tmp_path / "xdg"), REPIC_CONFIG_DIR=str(tmp_path / "cfg"))
    lib = str(tmp_path / "lib.sqlite")
    subprocess.run([sys.executable, "-m", "repic_desktop", "import", str(tmp_path / "album"), "--library", lib,
                    "--quiet"], check=True, env=env, capture_output=True)
    out = tmp_path / "shot.png"
    r = subprocess.run([sys.executable, "-m", "repic_desktop", "gui", "--library", lib, "--screenshot", str(out),
                        "--page", "people"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_a_killed_exports_leftover_temp_is_removed_when_the_app_starts(imported_library, make_window, qtbot):
    """issue 13: a killed export left a hidden full copy of a photo beside it for an hour or more."""
    from pathlib import Path

    from repic_desktop.core import temp_files

    folder = Path(imported_library.folders()[0])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a writer that was killed: its pid is no longer alive
    dead = folder / f"{temp_files.TEMP_PREFIX}{temp_files._host_tag()}-{gone.pid}-0123456789ab-photo.jpg"
    dead.write_bytes(b"a full copy of the photo")
    mine = folder / f"{temp_files.TEMP_PREFIX}{temp_files._host_tag()}-{os.getpid()}-0123456789ab-photo.jpg"
    mine.write_bytes(b"an export running in this very process")
    make_window(imported_library)
    qtbot.waitUntil(lambda: not dead.exists(), timeout=10_000)
    assert mine.exists()

"""Write to Files…: preview of the diff, the write in a worker with a summary, defaults saved to settings,
and the main window's action."""
from __future__ import annotations

from pathlib import Path

import pytest

from ._app_fixtures import make_album

pytest.importorskip("pyexiv2")
pytestmark = pytest.mark.usefixtures("gui_app")


@pytest.fixture
def small_library(gui_library, tmp_path):
    from repic_desktop.core.scanner import scan_folder

    root = make_album(tmp_path / "album", n=3, subfolders=(), broken=False)
    scan_folder(gui_library, root)
    lib = gui_library
    photos = sorted(lib.list_photos(), key=lambda p: p.path)
    lib.add_concept("Anya", "person")
    lib.tag_photo(photos[0].id, "Anya")
    lib.add_caption(photos[0].id, "<Anya> on a sunny hill", status="accepted")
    lib.add_caption(photos[1].id, "Two figures and the sun", status="accepted")
    lib.add_caption(photos[2].id, "a draft", status="draft")
    lib.photos = photos
    return lib


def _caption_change(top) -> tuple[str, str] | None:
    for i in range(top.childCount()):
        ch = top.child(i)
        if ch.text(0) == "XMP-dc:Description":
            return ch.text(1), ch.text(2)
    return None


def test_preview_write_summary_and_defaults(small_library, isolated_env, qtbot):
    from repic_desktop.core.settings import Settings
    from repic_desktop.gui.dialogs.export import ExportDialog
    from repic_desktop.gui.widgets.thumbnails import TaskRunner
    from repic_desktop.metadata.reader import read_file_metadata

    lib = small_library
    a, b, _draft = lib.photos
    tasks = TaskRunner(threads=2)
    dlg = ExportDialog(lib.path, tasks, [a.id, b.id], settings=None)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: dlg.preview_report is not None, timeout=10_000)
    assert dlg.rb_selected.isChecked()
    assert [dlg.field_boxes[k].isChecked() for k in ("caption", "people", "regions", "keywords")] == [True] * 4
    assert dlg.tree.topLevelItemCount() == 2
    tops = {dlg.tree.topLevelItem(i).text(0): dlg.tree.topLevelItem(i) for i in range(2)}
    assert _caption_change(tops[a.path]) == ("—", "Anya on a sunny hill")   # brackets stripped by default
    assert _caption_change(tops[b.path]) == ("—", "Two figures and the sun")
    assert tops[a.path].text(1) == "will change"
    assert "2 will change" in dlg.summary.text()
    assert dlg.btn_write.isEnabled()
    # the preview wrote nothing
    assert read_file_metadata(a.path).caption is None

    # an option change refreshes the preview: brackets kept
    with qtbot.waitSignal(dlg.preview_ready, timeout=10_000):
        dlg.cb_brackets.setChecked(True)
    tops = {dlg.tree.topLevelItem(i).text(0): dlg.tree.topLevelItem(i) for i in range(2)}
    assert _caption_change(tops[a.path]) == ("—", "<Anya> on a sunny hill")
    with qtbot.waitSignal(dlg.preview_ready, timeout=10_000):
        dlg.cb_brackets.setChecked(False)
    dlg.cb_pets.setChecked(False)
    qtbot.waitUntil(lambda: dlg.btn_write.isEnabled(), timeout=10_000)

    seen = []
    dlg.written.connect(seen.append)
    with qtbot.waitSignal(dlg.export_finished, timeout=10_000) as sig:
        dlg.btn_write.click()
    rep = sig.args[0]
    assert rep.counts == {"written": 2}
    assert sorted(seen[0]) == sorted([a.id, b.id])
    assert "Written: 2" in dlg.summary.text() and "failed: 0" in dlg.summary.text()
    assert dlg.tree.topLevelItem(0).text(1) == "written"
    assert read_file_metadata(a.path).caption == "Anya on a sunny hill"
    assert read_file_metadata(b.path).caption == "Two figures and the sun"
    assert lib.current_caption(a.id).status == "exported"

    # the defaults went to the settings file, in the keys `repic export` reads
    meta = Settings.load().extra["metadata"]
    assert meta["groups"] == ["caption", "people", "regions", "keywords"]
    assert meta["sidecar"] == "auto" and meta["keep_brackets"] is False and meta["pet_regions"] is False

    # a second dialog starts from them, and its preview says "unchanged"
    dlg2 = ExportDialog(lib.path, tasks, [a.id, b.id])
    qtbot.addWidget(dlg2)
    assert dlg2.cb_pets.isChecked() is False
    qtbot.waitUntil(lambda: dlg2.preview_report is not None, timeout=10_000)
    assert dlg2.preview_report.counts == {"unchanged": 2}
    assert "0 will change" in dlg2.summary.text()
    tasks.wait()


def test_all_accepted_scope_and_refusals(small_library, isolated_env, qtbot):
    from repic_desktop.gui.dialogs.export import ExportDialog
    from repic_desktop.gui.widgets.thumbnails import TaskRunner

    lib = small_library
    a, b, draft = lib.photos
    tasks = TaskRunner(threads=2)
    dlg = ExportDialog(lib.path, tasks, [draft.id])
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: dlg.preview_report is not None, timeout=10_000)
    assert dlg.preview_report.photos[0].status == "refused"
    assert "draft" in dlg.tree.topLevelItem(0).text(2)
    assert not dlg.btn_write.isEnabled()
    first = dlg.preview_report
    dlg.rb_accepted.setChecked(True)
    qtbot.waitUntil(lambda: dlg.preview_report is not first, timeout=10_000)
    assert sorted(p.photo_id for p in dlg.preview_report.photos) == sorted([a.id, b.id])
    # sidecar only: the originals stay as they were
    before = Path(a.path).read_bytes()
    dlg.cb_sidecar.setChecked(True)
    qtbot.waitUntil(lambda: dlg.btn_write.isEnabled() and dlg.preview_report.photos[0].result.target == "sidecar",
                    timeout=10_000)
    with qtbot.waitSignal(dlg.export_finished, timeout=10_000):
        dlg.btn_write.click()
    assert Path(a.path).read_bytes() == before
    assert Path(a.path + ".xmp").exists()
    tasks.wait()


def test_main_window_action_opens_the_dialog(small_library, isolated_env, make_window, qtbot):
    lib = small_library
    win = make_window(lib)
    photo_menu = next(a.menu() for a in win.menuBar().actions() if a.text().replace("&", "") == "Photo")
    assert win.act_write_files in photo_menu.actions()
    assert win.act_write_files.text() == "Write to Files…"
    win.browser.view.selectAll()
    win.act_write_files.trigger()
    dlg = win._export_dialog
    assert dlg.rb_selected.isChecked() and "(3)" in dlg.rb_selected.text()
    qtbot.waitUntil(lambda: dlg.preview_report is not None, timeout=10_000)
    assert len(dlg.preview_report.photos) == 3
    dlg.close()
    win.tasks.wait()

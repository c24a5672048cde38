"""Album browser: import (button, drag and drop), skipped-file report, filters, search, multi-select,
thumbnails off the GUI thread, and a big library staying lazy."""
from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QPixmap
from PySide6.QtWidgets import QApplication

from repic_desktop.core.library import Library


pytestmark = pytest.mark.usefixtures("gui_app")


def wait_import(qtbot, browser, timeout=20_000):
    qtbot.waitUntil(lambda: not browser.importing, timeout=timeout)
    qtbot.waitUntil(lambda: not browser.tasks.busy, timeout=timeout)


def test_empty_library_invites_an_import(make_window, gui_library):
    win = make_window(gui_library)
    b = win.browser
    assert b.stack.currentWidget() is b.empty
    assert "No photos yet" in b.empty.title.text()
    assert b.model.rowCount() == 0
    assert win.panel.photo_id is None


def test_import_folder_reports_skipped_files_and_fills_the_grid(make_window, gui_library, album, qtbot):
    win = make_window(gui_library)
    b = win.browser
    b.import_folders([str(album)])
    assert b.importing
    wait_import(qtbot, b)
    assert b.model.rowCount() == 12
    assert b.stack.currentWidget() is b.view
    assert "12 photo(s) added" in b.banner.label.text() and "1 file(s) skipped" in b.banner.label.text()
    dlg = b.show_import_report()
    assert dlg.table.rowCount() == 1
    assert dlg.table.item(0, 0).text().endswith("notes.jpg")
    assert "not an image" in dlg.table.item(0, 1).text()
    dlg.close()
    # folder tree: All photos + the album with its two subfolders, with counts
    top = b.folder_model.item(0)
    assert top.text().startswith("All photos") and "(12)" in top.text()
    album_item = b.folder_model.item(1)
    assert album_item.text().startswith("album") and album_item.rowCount() == 2
    # the first photo is shown in the panel
    assert win.panel.photo_id == b.model.photo_id(0)


def test_drop_a_folder_onto_the_window_imports_it(make_window, gui_library, album, qtbot):
    win = make_window(gui_library)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(album / "Birthday"))])
    ev = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                    Qt.KeyboardModifier.NoModifier)
    win.dropEvent(ev)
    wait_import(qtbot, win.browser)
    assert win.browser.model.rowCount() == 6
    assert all("Birthday" in win.browser.model.info(r).folder for r in range(6))


def test_rescan_finds_new_and_missing_photos(make_window, imported_library, album, qtbot):
    win = make_window(imported_library)
    b = win.browser
    assert b.model.rowCount() == 12
    (album / "Birthday" / "IMG_1001.jpg").unlink()
    from PIL import Image
    Image.new("RGB", (64, 48), "red").save(album / "Birthday" / "new.jpg")
    b.rescan()
    wait_import(qtbot, b)
    names = {b.model.info(r).filename for r in range(b.model.rowCount())}
    assert "new.jpg" in names and "IMG_1001.jpg" not in names
    assert b.model.rowCount() == 12


def _caption(lib, name, text, status="draft"):
    p = next(p for p in lib.list_photos() if p.filename == name)
    cid = lib.add_caption(p.id, text)
    if status != "draft":
        lib.set_caption_status(cid, status)
    return p


def test_filters_status_person_folder_and_search(make_window, imported_library, qtbot):
    lib = imported_library
    lib.add_concept("Anna", "person")
    lib.add_concept("Rex", "pet")
    p0 = _caption(lib, "IMG_1000.jpg", "<Anna> on the beach with a red kite")
    p1 = _caption(lib, "IMG_1002.jpg", "<Rex> asleep on the sofa", "accepted")
    lib.tag_photo(p0.id, "Anna")
    lib.tag_photo(p1.id, "Rex")
    win = make_window(lib)
    b = win.browser

    def shown():
        return {b.model.info(r).filename for r in range(b.model.rowCount())}

    def apply(fn):
        with qtbot.waitSignal(b.photos_loaded, timeout=5000):
            fn()

    apply(lambda: b.status_buttons["uncaptioned"].click())
    assert len(shown()) == 10 and "IMG_1000.jpg" not in shown()
    apply(lambda: b.status_buttons["draft"].click())
    assert shown() == {"IMG_1000.jpg"}
    apply(lambda: b.status_buttons["accepted"].click())
    assert shown() == {"IMG_1002.jpg"}
    apply(lambda: b.status_buttons["all"].click())
    assert len(shown()) == 12
    # by person or pet
    apply(lambda: b.person_combo.setCurrentIndex(b.person_combo.findText("Rex")))
    assert shown() == {"IMG_1002.jpg"}
    apply(lambda: b.person_combo.setCurrentIndex(0))
    # full-text search over captions (typed, debounced)
    apply(lambda: qtbot.keyClicks(b.search, "kite"))
    assert shown() == {"IMG_1000.jpg"}
    apply(lambda: b.search.clear())
    assert len(shown()) == 12
    apply(lambda: qtbot.keyClicks(b.search, "nothing-like-this"))
    assert b.stack.currentWidget() is b.empty and "No photos match" in b.empty.title.text()
    apply(lambda: b.clear_filters())
    assert len(shown()) == 12
    # folder tree: a subfolder shows only its photos
    album_item = b.folder_model.item(1)
    apply(lambda: b.tree.setCurrentIndex(album_item.child(0).index()))
    assert len(shown()) == 6
    assert b.count_label.text().startswith("6 photos of 12")


def test_multi_select_and_next_previous(make_window, imported_library, qtbot):
    win = make_window(imported_library)
    b = win.browser
    b.view.selectAll()
    assert len(b.selected_ids()) == 12
    assert "12 selected" in b.count_label.text()
    b.select_photo(b.model.photo_id(3))
    assert b.selected_ids() == [b.model.photo_id(3)]
    b.step(+1)
    assert win.panel.photo_id == b.model.photo_id(4)
    b.step(-1)
    b.step(-1)
    assert win.panel.photo_id == b.model.photo_id(2)


def test_thumbnails_load_in_the_pool_with_placeholder_first(make_window, imported_library, qtbot):
    win = make_window(imported_library, show=False)
    m = win.browser.model
    win.show()
    qtbot.waitUntil(lambda: m.rowCount() == 12, timeout=5000)
    pid = m.photo_id(0)
    first = m.data(m.index(0), Qt.ItemDataRole.DecorationRole)
    assert first is None or isinstance(first, QPixmap)   # placeholder (None) until the worker is done
    qtbot.waitUntil(lambda: isinstance(m.data(m.index(0), Qt.ItemDataRole.DecorationRole), QPixmap), timeout=10_000)
    pm = m.data(m.index(0), Qt.ItemDataRole.DecorationRole)
    assert max(pm.width(), pm.height()) <= win.loader.display_size
    # the EXIF-rotated photo (stored 360x480 sideways, orientation 6) comes out landscape
    row = next(r for r in range(12) if m.info(r).filename == "IMG_1001.jpg")
    m.data(m.index(row), Qt.ItemDataRole.DecorationRole)
    qtbot.waitUntil(lambda: isinstance(m.data(m.index(row), Qt.ItemDataRole.DecorationRole), QPixmap), timeout=10_000)
    pm = m.data(m.index(row), Qt.ItemDataRole.DecorationRole)
    assert pm.width() > pm.height()
    assert pid == m.photo_id(0)


def test_loader_drops_requests_that_scrolled_away(gui_app, qtbot, thumb_cache):
    from repic_desktop.gui.widgets.thumbnails import ThumbnailLoader
    from PySide6.QtGui import QImage

    loader = ThumbnailLoader(thumb_cache, threads=1)
    made = []
    import threading
    gate = threading.Event()

    def make(k):
        def f():
            gate.wait(5)
            made.append(k)
            return QImage(4, 4, QImage.Format.Format_RGB32)
        return f

    for k in range(20):
        loader.request(k, make(k))
    loader.retain({19, 18})
    gate.set()
    qtbot.waitUntil(lambda: loader.idle, timeout=5000)
    loader.wait()
    # at most the one already running when retain() was called, plus the two kept; newest first
    assert set(made) <= {0, 18, 19} | set(made[:1])
    assert made.index(19) < made.index(18)


def test_big_library_stays_lazy(make_window, tmp_path, qtbot):
    """20,000 photos: the grid holds ids only; rows are fetched a page at a time."""
    lib = Library(tmp_path / "big.sqlite")
    rows = [{"path": f"/photos/{i // 500:03d}/IMG_{i:06d}.jpg", "size": 1000, "mtime_ns": i,
             "content_hash": f"{i:064x}", "width": 640, "height": 480} for i in range(20_000)]
    lib.add_photos(rows)
    t0 = time.perf_counter()
    win = make_window(lib)
    opened = time.perf_counter() - t0
    m = win.browser.model
    assert m.rowCount() == 20_000
    assert len(m._pages) <= 8          # only pages for what was painted
    t0 = time.perf_counter()
    win.browser.view.scrollToBottom()
    QApplication.processEvents()
    info = m.info(19_999)
    assert info.filename == "IMG_019999.jpg"
    assert time.perf_counter() - t0 < 0.5
    assert opened < 5
    win.close()
    lib.close()

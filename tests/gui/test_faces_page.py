"""Unknown Faces page: empty state before indexing, clusters listed largest first with face crops made
off the GUI thread, naming a cluster (new person or an existing one, with a completer), validation, and
the page in the main window.

Uses the real retrieval service with test_suggestions' coloured-square matcher (green and blue squares
are two strangers; red is Anya, who is known)."""
from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from repic_desktop.gui.pages.faces import FACE_THUMB

from .test_suggestions import COLORS, WAIT, service

pytestmark = pytest.mark.usefixtures("gui_app")


@pytest.fixture
def faces(squares, make_window, qtbot):
    lib, ids, matcher = squares
    win = make_window(lib)
    win.show_page("faces")
    return win, lib, ids, matcher


def test_empty_state_says_to_index_first(faces, qtbot):
    win, lib, ids, matcher = faces
    page = win.faces
    assert win.current_page() == "faces" and win.act_page_faces.isChecked()
    qtbot.waitUntil(lambda: page.loaded_once, timeout=WAIT)
    assert page.model.rowCount() == 0 and page.right.currentWidget() is page.empty
    assert "Run “Index faces” first" in page.empty.text.text()
    # its button starts the index job; the page fills in when the job is done
    with qtbot.waitSignal(win.index.finished, timeout=WAIT):
        page.empty._buttons[0].click()
    qtbot.waitUntil(lambda: page.model.rowCount() == 2, timeout=WAIT)
    assert page.right.currentWidget() is page.detail


def test_clusters_are_listed_with_face_crops(faces, qtbot):
    win, lib, ids, matcher = faces
    service.run_index_job(lib, matcher)
    page = win.faces
    page.reload()
    qtbot.waitUntil(lambda: page.model.rowCount() == 2, timeout=WAIT)
    rows = page.model.rows
    assert [r.size for r in rows] == [2, 1]
    assert {f.photo_id for f in rows[0].faces} == {ids["green1"], ids["green2"]}
    assert [f.photo_id for f in rows[1].faces] == [ids["blue"]]
    assert page.list.currentIndex().row() == 0 and "2 faces in 2 photos" in page.header.text()
    assert "2 groups of faces (3 faces)" in page.summary.text()
    # crops are made on the pool when painted, and they show the face (with some context around it)
    page.list.viewport().repaint()
    page.faces_view.viewport().repaint()
    qtbot.waitUntil(lambda: all(page.thumbs.get(f) for r in rows for f in r.faces), timeout=WAIT)
    img = page.thumbs.get(rows[0].faces[0]).toImage()
    centre = img.pixelColor(img.width() // 2, img.height() // 2)
    assert abs(centre.green() - COLORS[1][1]) < 30 and centre.red() < 80
    corner = img.pixelColor(1, 1)
    assert corner.red() > 200 and corner.green() > 200          # the white around the face: padded crop
    # the selected cluster's faces are laid out in the grid at full size
    assert page.faces_model.rowCount() == 2
    for i in range(2):
        rect = page.faces_view.visualRect(page.faces_model.index(i))
        assert rect.width() >= FACE_THUMB and rect.height() >= FACE_THUMB


def test_name_a_cluster_as_a_new_person(faces, qtbot):
    win, lib, ids, matcher = faces
    service.run_index_job(lib, matcher)
    page = win.faces
    page.reload()
    qtbot.waitUntil(lambda: page.model.rowCount() == 2, timeout=WAIT)
    qtbot.keyClicks(page.name_edit, "<Ben>")
    assert not page.name_btn.isEnabled() and "cannot contain" in page.name_info.text()
    page.name_edit.clear()
    qtbot.keyClicks(page.name_edit, "Ben")
    assert page.kind.isEnabled() and "A new person “Ben” will be created." == page.name_info.text()
    with qtbot.waitSignal(page.concepts_changed, timeout=WAIT):
        QTest.keyClick(page.name_edit, Qt.Key.Key_Return)
    ben = lib.concept("Ben")
    assert ben.kind == "person"
    for pid in (ids["green1"], ids["green2"]):
        assert "Ben" in [c.name for c in lib.photo_concepts(pid)] and lib.regions(pid)
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=WAIT)
    assert page.model.rows[0].faces[0].photo_id == ids["blue"]
    # the rest of the window knows Ben now
    assert win.browser.person_combo.findText("Ben") > 0


def test_name_a_cluster_as_someone_known_with_the_completer(faces, qtbot):
    win, lib, ids, matcher = faces
    service.run_index_job(lib, matcher)
    page = win.faces
    page.reload()
    qtbot.waitUntil(lambda: page.model.rowCount() == 2, timeout=WAIT)
    page.list.setCurrentIndex(page.model.index(1))                 # the blue stranger
    assert "1 face in 1 photo" in page.header.text()
    qtbot.keyClicks(page.name_edit, "ny")
    popup = page.completer.popup()
    assert [popup.model().index(i, 0).data() for i in range(popup.model().rowCount())] == ["Anya"]
    page.name_edit.setText("anya")
    assert not page.kind.isEnabled() and page.name_info.text() == "These faces will be added to Anya."
    with qtbot.waitSignal(page.concepts_changed, timeout=WAIT):
        page.name_btn.click()
    assert [c.name for c in lib.concepts()] == ["Anya", "Tom"]
    assert [c.name for c in lib.photo_concepts(ids["blue"])] == ["Anya"]
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=WAIT)
    assert page.model.rows[0].size == 2


def test_clusters_are_computed_off_the_gui_thread(faces, qtbot, monkeypatch):
    win, lib, ids, matcher = faces
    service.run_index_job(lib, matcher)
    real, threads = service.face_clusters, []

    def spy(*a, **kw):
        threads.append(threading.get_ident())
        return real(*a, **kw)

    monkeypatch.setattr(service, "face_clusters", spy)
    win.faces.reload()
    qtbot.waitUntil(lambda: win.faces.model.rowCount() == 2, timeout=WAIT)
    assert threads and threading.get_ident() not in threads


def test_double_click_a_face_shows_its_photo_even_when_filtered_out(faces, qtbot):
    win, lib, ids, matcher = faces
    service.run_index_job(lib, matcher)
    lib.tag_photo(ids["party"], "Anya")
    win.show_page("browser")
    with qtbot.waitSignal(win.browser.photos_loaded, timeout=WAIT):
        win.browser.set_filter(concept_id=lib.concept("Anya").id)      # only the party photo is listed
    assert win.browser.model.row_of(ids["green1"]) is None
    win.show_page("faces")
    page = win.faces
    qtbot.waitUntil(lambda: page.model.rowCount() == 2, timeout=WAIT)
    idx = next(page.faces_model.index(i) for i in range(2) if page.faces_model.faces[i].photo_id == ids["green1"])
    page.faces_view.doubleClicked.emit(idx)
    assert win.current_page() == "browser"
    qtbot.waitUntil(lambda: win.panel.photo_id == ids["green1"], timeout=WAIT)
    assert win.browser.filter.concept_id is None


def test_ignore_a_cluster_then_bring_it_back(faces, qtbot):
    win, lib, ids, matcher = faces
    service.run_index_job(lib, matcher)
    page = win.faces
    page.reload()
    qtbot.waitUntil(lambda: page.model.rowCount() == 2, timeout=WAIT)
    green = page.current_cluster()
    assert green.size == 2 and page.ignore_btn.text() == "Ignore"
    with qtbot.waitSignal(page.ignored_changed, timeout=WAIT):
        page.ignore_btn.click()
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=WAIT)
    assert [f.photo_id for f in page.model.rows[0].faces] == [ids["blue"]]
    assert "1 group of faces (1 faces)" in page.summary.text()
    assert {f.photo_id for f in service.ignored_faces(lib)} == {ids["green1"], ids["green2"]}
    # indexing again does not bring them back
    service.run_index_job(lib, matcher)
    assert [c.size for c in service.face_clusters(lib)] == [1]
    # "Show ignored faces": one more row, from which they come back
    page.show_ignored.setChecked(True)
    qtbot.waitUntil(lambda: page.model.rowCount() == 2, timeout=WAIT)
    ignored = page.model.rows[1]
    assert ignored.ignored and ignored.size == 2 and page.model.index(1).data() == "2 ignored faces"
    assert "1 group of faces" in page.summary.text()
    page.list.setCurrentIndex(page.model.index(1))
    assert page.header.text().startswith("Ignored · 2 faces") and page.form.isHidden()
    assert page.ignore_btn.text() == "Unignore all"
    with qtbot.waitSignal(page.ignored_changed, timeout=WAIT):
        page.ignore_btn.click()
    qtbot.waitUntil(lambda: not any(r.ignored for r in page.model.rows), timeout=WAIT)
    assert [r.size for r in page.model.rows] == [2, 1] and service.ignored_faces(lib) == []


def test_ignore_a_single_face_from_its_context_menu(faces, qtbot):
    win, lib, ids, matcher = faces
    service.run_index_job(lib, matcher)
    page = win.faces
    page.show_ignored.setChecked(True)
    qtbot.waitUntil(lambda: page.model.rowCount() == 2, timeout=WAIT)
    idx = next(page.faces_model.index(i) for i in range(2) if page.faces_model.faces[i].photo_id == ids["green2"])
    menu = page.face_menu(idx)
    assert [a.text() for a in menu.actions()] == ["Not a face / ignore", "Show photo"]
    with qtbot.waitSignal(page.ignored_changed, timeout=WAIT):
        menu.actions()[0].trigger()
    qtbot.waitUntil(lambda: [r.size for r in page.model.rows] == [1, 1, 1], timeout=WAIT)
    assert page.model.rows[-1].ignored and page.model.rows[-1].faces[0].photo_id == ids["green2"]
    assert [f.photo_id for f in service.ignored_faces(lib)] == [ids["green2"]]
    assert all(f.photo_id != ids["green2"] for c in service.face_clusters(lib) for f in c.members)
    # from the ignored row, the same face comes back on its own
    page.list.setCurrentIndex(page.model.index(2))
    menu = page.face_menu(page.faces_model.index(0))
    assert menu.actions()[0].text() == "Unignore this face"
    with qtbot.waitSignal(page.ignored_changed, timeout=WAIT):
        menu.actions()[0].trigger()
    qtbot.waitUntil(lambda: [r.size for r in page.model.rows] == [2, 1], timeout=WAIT)


def test_ignoring_the_evidence_of_a_shown_chip_refreshes_the_photo_panel(faces, qtbot):
    """The faces page and the photo panel are wired: a chip whose only face was ignored disappears."""
    from .test_suggestions import show, sugg_chips

    win, lib, ids, matcher = faces
    service.run_index_job(lib, matcher)
    win.show_page("browser")
    show(win, qtbot, ids["party"])
    qtbot.waitUntil(lambda: any("Anya" in c.label.text() for c in sugg_chips(win.panel)), timeout=WAIT)
    red = [cid for cid, pid, x, y, w, h in lib.conn.execute(
        "SELECT id, photo_id, x, y, w, h FROM photo_crops") if pid == ids["party"] and (x, y) == (30, 50)]
    assert len(red) == 1
    with qtbot.waitSignal(win.faces.ignored_changed, timeout=WAIT):
        assert win.faces._run_ignore(red, ignore=True)
    qtbot.waitUntil(lambda: not any("Anya" in c.label.text() for c in sugg_chips(win.panel)), timeout=WAIT)

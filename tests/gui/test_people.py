"""People & Pets: add with a reference photo and a drawn box, inline validation from the library layer,
rename/edit with undo, references from files, merge and delete with confirmation, and the browser
filter by person."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from repic_desktop.core.library import Box
from repic_desktop.gui.dialogs.box import BoxDialog
from repic_desktop.gui.dialogs.concept import ConceptDialog, PendingRef


pytestmark = pytest.mark.usefixtures("gui_app")


def test_draw_a_box_on_a_photo(imported_library, make_window, qtbot):
    win = make_window(imported_library)
    photo = imported_library.photos.list()[0]
    dlg = BoxDialog(win.tasks, photo.fs_path, "Where is Anna?", (photo.width, photo.height))
    qtbot.addWidget(dlg)
    dlg.resize(800, 640)
    dlg.show()
    qtbot.waitUntil(lambda: dlg.canvas.pixmap is not None, timeout=10_000)
    assert not dlg.ok.isEnabled()                   # no box yet: only "whole photo"
    r = dlg.canvas.image_rect()
    a = QPoint(int(r.x() + r.width() * 0.25), int(r.y() + r.height() * 0.25))
    b = QPoint(int(r.x() + r.width() * 0.75), int(r.y() + r.height() * 0.75))
    QTest.mousePress(dlg.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    QTest.mouseMove(dlg.canvas, b)
    QTest.mouseRelease(dlg.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
    box = dlg.box
    assert box is not None
    assert abs(box.x - 120) <= 3 and abs(box.y - 90) <= 3 and abs(box.w - 240) <= 4 and abs(box.h - 180) <= 4
    assert dlg.ok.isEnabled()
    assert dlg.info.text().startswith(f"Box: {box.w} × {box.h} pixels")
    dlg.close()


def test_add_a_person_with_a_boxed_library_reference(imported_library, make_window, qtbot):
    lib = imported_library
    win = make_window(lib)
    win.show_page("people")
    people = win.people
    assert people.right.currentWidget() is people.empty           # friendly empty state first
    dlg = people.add_concept()
    qtbot.keyClicks(dlg.name, "Anna")
    dlg.kind.setCurrentIndex(dlg.kind.findData("person"))
    qtbot.keyClicks(dlg.info, "my daughter, 7, curly red hair")
    photo = lib.photos.list()[2]
    dlg.add_ref(PendingRef(photo_id=photo.id, label=photo.filename, full_size=(photo.width, photo.height)))
    dlg.refs[0].box = Box(100, 50, 120, 140)
    dlg._rebuild_refs()
    assert dlg.ok.isEnabled()
    with qtbot.waitSignal(dlg.created, timeout=10_000):
        dlg.ok.click()
    c = lib.concepts.get("Anna")
    assert (c.kind, c.info) == ("person", "my daughter, 7, curly red hair")
    refs = lib.concepts.refs("Anna")
    assert len(refs) == 1 and refs[0].photo_id == photo.id and refs[0].box == Box(100, 50, 120, 140)
    # listed, with the primary reference as its picture, and offered in the browser's person filter
    assert people.model.rowCount() == 1 and people.current_id() == c.id
    assert people.right.currentWidget() is people.detail
    qtbot.waitUntil(lambda: c.id in people.model.icons, timeout=10_000)
    assert win.browser.person_combo.findText("Anna") > 0


def test_validation_messages_from_the_library_are_shown_inline(imported_library, make_window, qtbot):
    lib = imported_library
    lib.concepts.add("Rex", "pet")
    win = make_window(lib)
    dlg = ConceptDialog(lib, win.tasks, win.loader)
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.keyClicks(dlg.name, "<Anna>")
    assert dlg.error.isVisible() and "cannot contain '<' or '>'" in dlg.error.text()
    assert not dlg.ok.isEnabled()
    dlg.name.setText("rex")
    assert "already used by <Rex>" in dlg.error.text() and not dlg.ok.isEnabled()
    dlg.name.setText("Anna <|im_start|>")
    assert dlg.error.isVisible() and not dlg.ok.isEnabled()
    dlg.name.setText("Anna")
    assert not dlg.error.isVisible() and dlg.ok.isEnabled()
    # a box outside the photo is refused by the library when saving: the message appears inline
    photo = lib.photos.list()[0]
    dlg.add_ref(PendingRef(photo_id=photo.id, label=photo.filename, box=Box(400, 300, 200, 200)))
    dlg.ok.click()
    qtbot.waitUntil(lambda: dlg.error.isVisible(), timeout=10_000)
    assert "outside the 480x360 photo" in dlg.error.text()
    assert [c.name for c in lib.concepts.all()] == ["Rex"]            # nothing half-made
    dlg.close()


def test_reference_from_a_file_is_copied_in(imported_library, make_window, album, qtbot):
    lib = imported_library
    lib.concepts.add("Rex", "pet")
    win = make_window(lib)
    dlg = ConceptDialog(lib, win.tasks, win.loader, name="Grandpa")
    qtbot.addWidget(dlg)
    src = album / "Summer 2023" / "IMG_1000.jpg"
    dlg.add_ref(PendingRef(file_path=str(src), label=src.name))
    with qtbot.waitSignal(dlg.created, timeout=10_000):
        dlg.ok.click()
    ref = lib.concepts.refs("Grandpa")[0]
    assert ref.file_path and ref.file_path.startswith(str(lib.data_dir))


def test_rename_and_edit_info_with_undo(imported_library, make_window, qtbot):
    lib = imported_library
    lib.concepts.add("Anna", "person", "daughter")
    win = make_window(lib)
    win.show_page("people")
    p = win.people
    assert p.name_edit.text() == "Anna" and not p.save_btn.isEnabled()
    p.name_edit.setText("Anna <x>")
    assert p.error.isVisible() and not p.save_btn.isEnabled()
    p.name_edit.setText("Annie")
    p.info_edit.setText("our daughter, 7")
    assert p.save_btn.isEnabled()
    p.save_btn.click()
    c = lib.concepts.get("Annie")
    assert c.info == "our daughter, 7"
    assert win.browser.person_combo.findText("Annie") > 0
    win.undo.undo()
    assert lib.concepts.get(c.id).name == "Anna" and lib.concepts.get(c.id).info == "daughter"
    assert p.name_edit.text() == "Anna"
    win.undo.redo()
    assert lib.concepts.get(c.id).name == "Annie"
    # a taken name is refused inline, nothing changes
    lib.concepts.add("Rex", "pet")
    p.reload(select=c.id)
    p.name_edit.setText("REX")
    p.save_btn.click()
    assert "already used by <Rex>" in p.error.text()
    assert lib.concepts.get(c.id).name == "Annie"


def _answer_next_modal(click):
    def go():
        w = QApplication.activeModalWidget()
        if w is None:
            QTimer.singleShot(20, go)
            return
        click(w)
    QTimer.singleShot(0, go)


def test_merge_and_delete_ask_first(imported_library, make_window, qtbot):
    lib = imported_library
    photos = lib.photos.list()
    for name in ("Anna", "Annie", "Rex"):
        lib.concepts.add(name, "person" if name != "Rex" else "pet")
    lib.concepts.tag(photos[0].id, "Annie")
    lib.concepts.add_ref("Annie", photo_id=photos[1].id)
    win = make_window(lib)
    p = win.people
    p.select(lib.concepts.get("Annie").id)

    def pick_anna_and_merge(w):
        combo = p._merge_dialog[1]
        combo.setCurrentIndex(combo.findData(lib.concepts.get("Anna").id))
        w.accept()

    _answer_next_modal(pick_anna_and_merge)
    assert p.merge()
    assert [c.name for c in lib.concepts.all()] == ["Anna", "Rex"]
    assert [c.name for c in lib.concepts.of_photo(photos[0].id)] == ["Anna"]
    assert len(lib.concepts.refs("Anna")) == 1
    # delete: Cancel keeps it, Delete removes it
    p.select(lib.concepts.get("Rex").id)
    _answer_next_modal(lambda w: w.reject())
    assert not p.delete()
    assert lib.concepts.get("Rex")
    _answer_next_modal(lambda w: next(b for b in w.buttons() if b.text() == "Delete").click())
    assert p.delete()
    assert [c.name for c in lib.concepts.all()] == ["Anna"]
    assert win.browser.person_combo.findText("Rex") < 0


def test_find_photos_by_person(imported_library, make_window, qtbot):
    lib = imported_library
    lib.concepts.add("Rex", "pet")
    win = make_window(lib)
    win.browser.view.clearSelection()
    for i in (1, 4):
        win.browser.view.selectionModel().select(win.browser.model.index(i),
                                                 win.browser.view.selectionModel().SelectionFlag.Select)
    ids = win.browser.selected_ids()
    win.tag_photos(ids, lib.concepts.get("Rex").id)
    assert {p.id for p in lib.photos.list(concept="Rex")} == set(ids)
    win.undo.undo()
    assert lib.photos.list(concept="Rex") == []
    win.undo.redo()
    win.show_page("people")
    p = win.people
    qtbot.waitUntil(lambda: p.photos_model.rowCount() == 2, timeout=5000)
    assert p.photos_btn.text() == "Show in Photos (2)"
    with qtbot.waitSignal(win.browser.photos_loaded, timeout=5000):
        p.photos_btn.click()
    assert win.current_page() == "browser"
    assert {win.browser.model.photo_id(r) for r in range(win.browser.model.rowCount())} == set(ids)
    assert win.browser.person_combo.currentText() == "Rex"


def test_make_another_reference_photo_primary(imported_library, make_window, qtbot):
    lib = imported_library
    lib.concepts.add("Anna", "person", "my daughter")
    photos = lib.photos.list()
    refs = [lib.concepts.add_ref("Anna", photo_id=p.id) for p in photos[:3]]
    win = make_window(lib)
    win.show_page("people")
    people = win.people
    people.reload()
    assert people.refs.count() == 3 and people.refs.item(0).text().startswith("★ ")
    people.refs.setCurrentRow(0)
    assert not people.ref_primary_btn.isEnabled()              # already the primary one
    people.refs.setCurrentRow(2)
    assert people.ref_primary_btn.isEnabled()
    qtbot.mouseClick(people.ref_primary_btn, Qt.MouseButton.LeftButton)
    assert [r.id for r in lib.concepts.refs("Anna")] == [refs[2].id, refs[0].id, refs[1].id]
    assert people.refs.item(0).data(Qt.ItemDataRole.UserRole) == refs[2].id   # list refreshed, star moved
    assert people.refs.item(0).text().startswith("★ ")
    assert not people.refs.item(1).text().startswith("★ ")

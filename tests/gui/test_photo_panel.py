"""Photo panel: preview off the GUI thread, people & pets chips with picker, caption highlighting and
missing-name flags, edit / accept / restore with undo and redo, history with provenance."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest


pytestmark = pytest.mark.usefixtures("gui_app")


@pytest.fixture
def setup(imported_library, make_window):
    lib = imported_library
    lib.add_concept("Anna", "person", "my daughter")
    lib.add_concept("Rex", "pet", "golden retriever")
    photo = next(p for p in lib.list_photos() if p.filename == "IMG_1001.jpg")   # the EXIF-rotated one
    lib.add_caption(photo.id, "<Anna> throws a ball for <Rex> in the park.", model_id="demo",
                    provenance={"demo": True, "seconds": 0.4})
    win = make_window(lib)
    win.browser.select_photo(photo.id)
    return win, lib, photo


def chip_names(panel):
    out = []
    for i in range(panel.chips.count()):
        w = panel.chips.itemAt(i).widget()
        if w is not None and w is not panel.add_btn:
            out.append(w.label.text())
    return out


def test_preview_is_upright_and_loaded_off_thread(setup, qtbot):
    win, lib, photo = setup
    panel = win.panel
    assert panel.photo_id == photo.id
    qtbot.waitUntil(lambda: panel.preview.pixmap is not None, timeout=10_000)
    pm = panel.preview.pixmap
    assert pm.width() > pm.height()                  # stored sideways, EXIF orientation 6
    assert panel.preview.full_size.width() == 480
    assert "480 × 360" in panel.subtitle.text()


def test_tags_are_highlighted_and_missing_names_flagged(setup, qtbot):
    win, lib, photo = setup
    panel = win.panel
    assert panel.editor.toPlainText().startswith("<Anna>")
    assert panel.highlighter.known.keys() == {"anna", "rex"}
    block = panel.editor.document().firstBlock()
    formats = block.layout().formats()
    assert any(f.start == 0 and f.length == len("<Anna>") for f in formats)
    # Anna is said to be in the photo, the caption names her: no warning; Bob is unknown
    lib.tag_photo(photo.id, "Anna")
    panel.refresh()
    assert not panel.warnings.isVisible()
    panel.editor.setPlainText("A dog in the park with <Bob>.")
    assert panel.warnings.isVisible()
    text = panel.warnings.text()
    assert "Not named in the caption" in text and "Anna" in text
    assert "Unknown name" in text and "Bob" in text


def test_add_and_remove_people_with_undo(setup, qtbot):
    win, lib, photo = setup
    panel = win.panel
    assert chip_names(panel) == []
    picker = panel.open_picker()
    qtbot.keyClicks(picker.search, "re")
    QTest.keyClick(picker.search, Qt.Key.Key_Return)
    assert [c.name for c in lib.photo_concepts(photo.id)] == ["Rex"]
    assert chip_names(panel) == ["Rex"]
    info = win.browser.model.info(win.browser.model.row_of(photo.id))
    assert info.names == "Rex"                               # the grid cell was refreshed
    win.undo.undo()
    assert lib.photo_concepts(photo.id) == [] and chip_names(panel) == []
    win.undo.redo()
    assert chip_names(panel) == ["Rex"]
    # removing restores its region on undo
    from repic_desktop.core.library import Box
    lib.tag_photo(photo.id, "Anna", box=Box(10, 10, 50, 60))
    panel.refresh()
    chip = next(panel.chips.itemAt(i).widget() for i in range(panel.chips.count())
                if panel.chips.itemAt(i).widget() is not panel.add_btn
                and panel.chips.itemAt(i).widget().label.text() == "Anna")
    chip.button.click()
    assert [c.name for c in lib.photo_concepts(photo.id)] == ["Rex"] and lib.regions(photo.id) == []
    win.undo.undo()
    assert [r.box for r in lib.regions(photo.id)] == [Box(10, 10, 50, 60)]
    assert panel.preview.regions and panel.preview.regions[0][0] == "Anna"


def test_edit_accept_undo_redo_and_history(setup, qtbot):
    win, lib, photo = setup
    panel = win.panel
    original = lib.current_caption(photo.id)
    assert panel.status_pill.text() == "needs review"
    assert panel.history.count() == 1 and "demo model" in panel.history.item(0).text()
    # edit in place and save
    panel.editor.selectAll()
    qtbot.keyClicks(panel.editor, "<Anna> and <Rex> play fetch.")
    assert panel.is_modified() and panel.save_btn.isEnabled()
    panel.save_btn.click()
    cur = lib.current_caption(photo.id)
    assert cur.text == "<Anna> and <Rex> play fetch." and cur.source == "user" and cur.parent_id == original.id
    assert cur.tags == ["Anna", "Rex"]
    assert panel.history.count() == 2 and "edited by you" in panel.history.item(0).text()
    # accept with Ctrl+Return from the editor
    panel.editor.setFocus()
    QTest.keyClick(panel.editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert lib.current_caption(photo.id).status == "accepted"
    assert panel.status_pill.text() == "accepted"
    info = win.browser.model.info(win.browser.model.row_of(photo.id))
    assert info.caption_status == "accepted"
    # undo: back to draft, then back to the model's caption; redo both
    win.undo.undo()
    assert lib.current_caption(photo.id).status == "draft"
    win.undo.undo()
    assert lib.current_caption(photo.id).id == original.id
    assert panel.editor.toPlainText() == original.text
    win.undo.redo()
    win.undo.redo()
    cur = lib.current_caption(photo.id)
    assert cur.text == "<Anna> and <Rex> play fetch." and cur.status == "accepted"
    assert len(lib.caption_history(photo.id)) == 2              # redo reuses the edited row
    # an edit + accept in one go is one undo step
    panel.editor.setPlainText("<Rex> naps.")
    panel.accept_btn.click()
    assert lib.current_caption(photo.id).text == "<Rex> naps." and lib.current_caption(photo.id).status == "accepted"
    win.undo.undo()
    assert lib.current_caption(photo.id).text == "<Anna> and <Rex> play fetch."
    # restore an earlier version from the history (double-click)
    item = next(panel.history.item(i) for i in range(panel.history.count())
                if panel.history.item(i).data(Qt.ItemDataRole.UserRole) == original.id)
    panel.history.itemDoubleClicked.emit(item)
    assert lib.current_caption(photo.id).id == original.id
    win.undo.undo()
    assert lib.current_caption(photo.id).text == "<Anna> and <Rex> play fetch."


def test_ctrl_z_in_the_editor_after_accepting_an_edit_undoes_the_accept(setup, qtbot):
    """Issue #14: Ctrl+Z right after Ctrl+Return on an edited caption used to undo the text box's typing
    (the editor kept its own history of text already saved), so the panel showed text that was not
    stored. The keys go through the window's shortcut handling as a user's do."""
    win, lib, photo = setup
    panel = win.panel
    win.activateWindow()
    panel.editor.setFocus()
    original = lib.current_caption(photo.id)

    def shows_what_is_stored():
        cap = lib.current_caption(photo.id)
        assert panel.editor.toPlainText() == cap.text and not panel.is_modified()
        assert panel.status_pill.text() == {"draft": "needs review"}.get(cap.status, cap.status)
        return cap

    panel.editor.selectAll()
    qtbot.keyClicks(panel.editor, "<Anna> and <Rex> play fetch.")
    QTest.keyClick(panel.editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    cap = shows_what_is_stored()
    assert (cap.text, cap.status) == ("<Anna> and <Rex> play fetch.", "accepted")
    QTest.keyClick(panel.editor, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)   # undo the accept, edit and all
    cap = shows_what_is_stored()
    assert (cap.id, cap.status) == (original.id, "draft")
    QTest.keyClick(panel.editor, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    cap = shows_what_is_stored()
    assert (cap.text, cap.status) == ("<Anna> and <Rex> play fetch.", "accepted")
    # typing not saved yet is the editor's own: Ctrl+Z takes it back first, then the stored steps
    qtbot.keyClicks(panel.editor, " Again")
    assert panel.is_modified()
    QTest.keyClick(panel.editor, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    cap = shows_what_is_stored()
    assert cap.status == "accepted"
    QTest.keyClick(panel.editor, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    cap = shows_what_is_stored()
    assert (cap.id, cap.status) == (original.id, "draft")
    # the Edit menu's Undo/Redo (another widget has focus) leave the panel showing the library too
    win.undo.redo()
    shows_what_is_stored()
    win.undo.undo()
    assert shows_what_is_stored().id == original.id


def test_moving_to_another_photo_keeps_an_unsaved_edit(setup, qtbot):
    win, lib, photo = setup
    win.panel.editor.setPlainText("<Anna> laughing.")
    win.browser.step(+1)
    assert lib.current_caption(photo.id).text == "<Anna> laughing."
    assert win.undo.undoText() == "Edit caption"


def test_typing_a_caption_for_an_uncaptioned_photo(setup, qtbot):
    win, lib, _ = setup
    other = next(p for p in lib.list_photos() if p.current_caption_id is None)
    win.browser.select_photo(other.id)
    panel = win.panel
    assert panel.status_pill.text() == "no caption" and not panel.accept_btn.isEnabled()
    qtbot.keyClicks(panel.editor, "A quiet hill.")
    panel.accept_btn.click()
    cap = lib.current_caption(other.id)
    assert cap.text == "A quiet hill." and cap.status == "accepted" and cap.parent_id is None
    win.undo.undo()
    assert lib.current_caption(other.id) is None


def test_tag_a_person_with_a_box_drawn_on_the_photo_and_undo(setup, qtbot):
    from PySide6.QtWidgets import QDialog

    from repic_desktop.core.library import Box
    win, lib, photo = setup
    panel = win.panel
    picker = panel.open_picker()
    picker.mark_box.setChecked(True)
    qtbot.keyClicks(picker.search, "ann")
    QTest.keyClick(picker.search, Qt.Key.Key_Return)
    dlg = panel._box_dialog
    assert dlg.windowTitle() == "Where is Anna?"
    assert lib.photo_concepts(photo.id) == []                     # nothing until the box is confirmed
    qtbot.waitUntil(lambda: dlg.canvas.pixmap is not None, timeout=10_000)
    assert (dlg.canvas.full.width(), dlg.canvas.full.height()) == (480, 360)   # displayed (upright) frame
    box = Box(300, 40, 160, 200)      # only fits the displayed frame: the file is stored 360 wide, rotated
    dlg.canvas.set_box(box)
    assert dlg.ok.isEnabled()
    with qtbot.waitSignal(dlg.finished, timeout=5_000):
        dlg.ok.click()
    assert dlg.result() == QDialog.DialogCode.Accepted
    assert [c.name for c in lib.photo_concepts(photo.id)] == ["Anna"]
    assert [(r.box, r.source) for r in lib.regions(photo.id)] == [(box, "manual")]
    assert chip_names(panel) == ["Anna"]
    assert panel.preview.regions == [("Anna", box)]
    win.undo.undo()
    assert lib.photo_concepts(photo.id) == [] and lib.regions(photo.id) == []
    assert chip_names(panel) == [] and panel.preview.regions == []
    win.undo.redo()
    assert [r.box for r in lib.regions(photo.id)] == [box] and chip_names(panel) == ["Anna"]


def test_mark_box_cancelled_or_whole_photo(setup, qtbot):
    win, lib, photo = setup
    panel = win.panel
    dlg = panel.mark_concept(lib.concept("Rex").id)
    with qtbot.waitSignal(dlg.finished, timeout=5_000):
        dlg.reject()
    assert lib.photo_concepts(photo.id) == [] and win.undo.count() == 0
    dlg = panel.mark_concept(lib.concept("Rex").id)
    qtbot.waitUntil(lambda: dlg.canvas.pixmap is not None, timeout=10_000)
    with qtbot.waitSignal(dlg.finished, timeout=5_000):
        dlg.whole.click()                                         # tag without a region
    assert [c.name for c in lib.photo_concepts(photo.id)] == ["Rex"] and lib.regions(photo.id) == []


def test_marking_a_tagged_person_again_moves_their_box_and_undo_puts_it_back(setup, qtbot):
    from repic_desktop.core.library import Box
    win, lib, photo = setup
    panel = win.panel
    lib.tag_photo(photo.id, "Anna", box=Box(10, 10, 50, 60))
    panel.refresh()
    panel.add_concept(lib.concept("Anna").id, box=Box(200, 40, 80, 90))
    assert [r.box for r in lib.regions(photo.id)] == [Box(200, 40, 80, 90)]    # moved, not a second box
    assert panel.preview.regions == [("Anna", Box(200, 40, 80, 90))]
    win.undo.undo()
    assert [r.box for r in lib.regions(photo.id)] == [Box(10, 10, 50, 60)]
    assert [c.name for c in lib.photo_concepts(photo.id)] == ["Anna"]
    win.undo.redo()
    assert [r.box for r in lib.regions(photo.id)] == [Box(200, 40, 80, 90)]

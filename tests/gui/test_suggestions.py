""""Who is in this photo?" in the GUI: suggestion chips (confirm / reject, weak cat hints), dashed boxes on
the preview, "Find people" off the GUI thread, messages when no matcher is ready, and the face-index job
(progress, cancel, resume) in the queue dock.

The retrieval service is the real one; only the matcher is a stand-in that "detects" coloured squares
(one colour = one identity, grey = a cat face without identity; tests/helpers/square_faces.py), so every
run is fast and exact. One
test at the end uses the real dlib matcher on real faces.
"""
from __future__ import annotations

import threading

import pytest
from PIL import Image
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QImage

from repic_desktop.core.library import Box, Library


service = pytest.importorskip("repic_desktop.retrieval.service")
from repic_desktop.retrieval.base import MatcherUnavailable  # noqa: E402
from tests.helpers.square_faces import WAIT, chip_names, show, sugg_chips

pytestmark = pytest.mark.usefixtures("gui_app")


def test_chips_confirm_and_reject(squares, make_window, qtbot):
    lib, ids, matcher = squares
    service.run_index_job(lib, matcher)
    win = make_window(lib)
    show(win, qtbot, ids["party"])
    panel = win.panel
    chips = sugg_chips(panel)
    assert [c.suggestion.concept_name for c in chips] == ["Anya", "Tom"]
    anya, tom = chips
    assert not anya.suggestion.weak and "Anya" in anya.label.text() and "1.00" in anya.label.text()
    assert tom.suggestion.weak and "cat face" in tom.label.text()
    assert "cat-face detector" in tom.toolTip() and "cannot tell which cat" in tom.toolTip()
    assert chip_names(panel) == []
    # one click: Anya becomes the photo's, with the suggested box as her region
    anya.confirm_btn.click()
    assert [c.name for c in lib.concepts.of_photo(ids["party"])] == ["Anya"]
    assert [r.box for r in lib.concepts.regions(ids["party"])] == [Box(30, 50, 50, 50)]
    assert chip_names(panel) == ["Anya"]
    assert [c.suggestion.concept_name for c in sugg_chips(panel)] == ["Tom"]
    assert win.browser.model.info(win.browser.model.row_of(ids["party"])).names == "Anya"   # grid cell refreshed
    sugg_chips(panel)[0].reject_btn.click()
    assert sugg_chips(panel) == [] and [c.name for c in lib.concepts.of_photo(ids["party"])] == ["Anya"]
    statuses = {s.concept_name: s.status for s in service.suggestions_for(lib, ids["party"], include_rejected=True)}
    assert statuses == {"Anya": "confirmed", "Tom": "rejected"}
    # the preview now shows Anya as a confirmed region and no suggestion boxes
    assert panel.preview.regions == [("Anya", Box(30, 50, 50, 50))] and panel.preview.suggestions == []


def test_confirm_and_reject_are_undoable(squares, make_window, qtbot):
    lib, ids, matcher = squares
    service.run_index_job(lib, matcher)
    win = make_window(lib)
    show(win, qtbot, ids["party"])
    panel, party = win.panel, ids["party"]
    sugg_chips(panel)[0].confirm_btn.click()                                # ✓ Anya
    assert chip_names(panel) == ["Anya"] and win.act_undo.isEnabled()
    assert win.undo.undoText() == "Confirm suggested <Anya>"
    win.panel.setFocus()
    qtbot.keyClick(win, "z", modifier=Qt.KeyboardModifier.ControlModifier)  # Ctrl+Z: the chip is back
    assert [c.suggestion.concept_name for c in sugg_chips(panel)] == ["Anya", "Tom"]
    assert chip_names(panel) == [] and lib.concepts.of_photo(party) == [] and lib.concepts.regions(party) == []
    assert panel.preview.regions == [] and len(panel.preview.suggestions) == 2
    assert win.browser.model.info(win.browser.model.row_of(party)).names == ""
    win.act_redo.trigger()                                                  # confirmed again
    assert chip_names(panel) == ["Anya"] and [r.box for r in lib.concepts.regions(party)] == [Box(30, 50, 50, 50)]
    assert [c.suggestion.concept_name for c in sugg_chips(panel)] == ["Tom"]
    # ✗ on the cat hint, undone and redone
    sugg_chips(panel)[0].reject_btn.click()
    assert sugg_chips(panel) == []
    win.act_undo.trigger()
    assert [c.suggestion.concept_name for c in sugg_chips(panel)] == ["Tom"]
    assert _statuses(lib, party) == {"Anya": "confirmed", "Tom": "pending"}
    win.act_redo.trigger()
    assert sugg_chips(panel) == [] and _statuses(lib, party) == {"Anya": "confirmed", "Tom": "rejected"}
    # undoing the confirmation of someone the user had tagged by hand keeps the tag
    win.act_undo.trigger()
    win.act_undo.trigger()
    assert _statuses(lib, party) == {"Anya": "pending", "Tom": "pending"}
    lib.concepts.tag(party, "Anya")
    panel.refresh()
    assert chip_names(panel) == ["Anya"]
    # (the chip list is as stored: a tagged person's pending suggestion still shows until re-indexing)
    next(c for c in sugg_chips(panel) if c.suggestion.concept_name == "Anya").confirm_btn.click()
    assert [r.box for r in lib.concepts.regions(party)] == [Box(30, 50, 50, 50)]
    win.act_undo.trigger()
    assert chip_names(panel) == ["Anya"] and lib.concepts.regions(party) == []


def _statuses(lib, photo_id):
    return {s.concept_name: s.status for s in service.suggestions_for(lib, photo_id, include_rejected=True)}


def test_a_chip_made_stale_meanwhile_is_not_applied(squares, make_window, qtbot):
    lib, ids, matcher = squares
    service.run_index_job(lib, matcher)
    lib.concepts.add("Zoe", "person")
    win = make_window(lib)
    show(win, qtbot, ids["party"])
    anya, tom = sugg_chips(win.panel)
    # elsewhere (the CLI, an index run) Anya's suggestion goes away and its row id is given to Zoe's
    with lib.transaction():
        lib.conn.execute("UPDATE suggestions SET concept_id = ? WHERE id = ?", (lib.concepts.get("Zoe").id, anya.suggestion.id))
    anya.confirm_btn.click()
    assert lib.concepts.of_photo(ids["party"]) == []                         # neither Anya nor Zoe
    assert "just updated" in win.panel.sugg_status.text()
    assert [c.suggestion.concept_name for c in sugg_chips(win.panel)] == ["Zoe", "Tom"]
    lib.concepts.remove("Zoe")                                             # and a row that is gone
    sugg_chips(win.panel)[0].reject_btn.click()
    assert [c.suggestion.concept_name for c in sugg_chips(win.panel)] == ["Tom"]
    assert [s.status for s in service.suggestions_for(lib, ids["party"], include_rejected=True)] == ["pending"]


def _edge(img: QImage, rect, color: QColor, tol: int = 40) -> list[bool]:
    """Along the top edge of `rect`: is there a pixel of `color` (within a pixel of the edge)?"""
    def near(c: QColor) -> bool:
        return abs(c.red() - color.red()) + abs(c.green() - color.green()) + abs(c.blue() - color.blue()) < tol
    y = int(rect.top())
    return [any(near(img.pixelColor(x, yy)) for yy in (y - 1, y, y + 1))
            for x in range(int(rect.left()) + 3, int(rect.right()) - 2)]


def _runs(flags: list[bool]) -> int:
    return sum(1 for i, f in enumerate(flags) if f and (i == 0 or not flags[i - 1]))


def test_suggestion_boxes_are_drawn_dashed_in_their_own_colour(squares, make_window, qtbot):
    from repic_desktop.gui.widgets.chips import SUGGESTION_COLOR, WEAK_COLOR

    lib, ids, matcher = squares
    service.run_index_job(lib, matcher)
    win = make_window(lib)
    show(win, qtbot, ids["party"])
    prev = win.panel.preview
    assert prev.suggestions == [("Anya 1.00", Box(30, 50, 50, 50), False), ("Tom?", Box(150, 90, 40, 40), True)]
    prev.resize(QSize(480 + 16, 360 + 16))        # the photo is drawn at exactly 2x
    img = QImage(prev.size(), QImage.Format.Format_RGB32)
    prev.render(img)
    r = prev.image_rect()
    assert (r.width(), r.height()) == (480, 360)
    anya = r.adjusted(60, 100, 0, 0)
    anya.setSize(QSize(100, 100).toSizeF())
    cat = r.adjusted(300, 180, 0, 0)
    cat.setSize(QSize(80, 80).toSizeF())
    edge = _edge(img, anya, SUGGESTION_COLOR)
    assert _runs(edge) >= 4 and 0.3 < sum(edge) / len(edge) < 0.9      # amber, with gaps: a dashed line
    assert _runs(_edge(img, cat, WEAK_COLOR)) >= 3 and not any(_edge(img, cat, SUGGESTION_COLOR))
    assert not any(_edge(img, anya, QColor("#2f80ed")))
    # once confirmed it is drawn as a region (solid blue), no longer as an amber suggestion
    sugg_chips(win.panel)[0].confirm_btn.click()
    img.fill(0)
    prev.render(img)
    assert not any(_edge(img, anya, SUGGESTION_COLOR))
    blue = _edge(img, anya, QColor("#2f80ed"), tol=140)   # a thin antialiased line over a white one
    assert _runs(blue) == 1 and sum(blue) / len(blue) > 0.9


def test_find_people_runs_off_the_gui_thread(squares, make_window, qtbot):
    lib, ids, matcher = squares
    win = make_window(lib)
    show(win, qtbot, ids["party"])
    panel = win.panel
    assert sugg_chips(panel) == [] and panel.find_btn.isEnabled()
    matcher.gate = threading.Semaphore(0)
    panel.find_btn.click()
    qtbot.waitUntil(matcher.entered.is_set, timeout=WAIT)
    # the matcher is busy in a worker, and the window still answers
    assert not panel.find_btn.isEnabled() and panel.find_btn.text() == "Finding people…"
    assert "Looking for faces" in panel.sugg_status.text()
    with qtbot.waitSignal(panel.suggestions_found, timeout=WAIT):
        matcher.gate.release(2)                                 # Anya's reference photo, then this one
    assert threading.get_ident() not in matcher.threads
    assert [c.suggestion.concept_name for c in sugg_chips(panel)] == ["Anya", "Tom"]
    assert panel.find_btn.isEnabled() and panel.sugg_status.text() == "Found 2 suggestions."


def test_clear_message_when_no_matcher_is_ready(squares, make_window, qtbot, monkeypatch):
    lib, ids, _ = squares
    monkeypatch.setattr(service, "available_matchers", lambda settings=None: [
        {"id": "dlib-faces", "name": "Faces (offline, dlib)", "ready": False,
         "why": "dlib is not installed (pip install dlib-bin)"}])
    win = make_window(lib)
    show(win, qtbot, ids["party"])
    panel = win.panel
    qtbot.waitUntil(lambda: not panel.find_btn.isEnabled(), timeout=WAIT)
    assert "No face matcher is ready" in panel.sugg_status.text() and "pip install dlib-bin" in panel.sugg_status.text()
    # a matcher that says it is ready but fails to load reports the same way
    panel._matcher_why = ""

    def broken(matcher_id=None, settings=None):
        raise MatcherUnavailable("the face models are not installed (pip install face_recognition_models)")

    monkeypatch.setattr(service, "get_matcher", broken)
    panel._update_find_button()
    panel.find_btn.click()
    qtbot.waitUntil(lambda: "face_recognition_models" in panel.sugg_status.text(), timeout=WAIT)
    assert not panel.find_btn.isEnabled()


def test_index_job_progress_in_the_dock_then_chips_refresh(squares, make_window, qtbot):
    lib, ids, matcher = squares
    win = make_window(lib)
    show(win, qtbot, ids["party"])
    assert sugg_chips(win.panel) == []
    seen = []
    win.index.changed.connect(lambda: seen.append((win.index.state, win.index.done, win.index.total)))
    with qtbot.waitSignal(win.index.finished, timeout=WAIT) as blocker:
        win.act_index_faces.trigger()
        assert not win.act_index_faces.isEnabled()
    summary = blocker.args[0]
    assert (summary["indexed"], summary["failed"], summary["cancelled"]) == (5, 0, False)
    assert ("running", 5, 5) in seen and seen[-1][0] == "done"
    assert threading.get_ident() not in matcher.threads
    card = win.index_dock.index_card                     # no captioning dock in this window: its own dock
    assert win.index_dock.isVisible() and card.status.text() == "Done"
    assert card.bar.value() == 5 and "5 of 5 photos" in card.stats.text() and card.remove.isVisible()
    # the current photo's chips came in as it was indexed
    assert [c.suggestion.concept_name for c in sugg_chips(win.panel)] == ["Anya", "Tom"]
    assert win.act_index_faces.isEnabled()
    card.remove.click()
    assert win.index.state == "idle" and not card.isVisible()


def test_cancel_then_resume_the_index_job(squares, make_window, qtbot):
    lib, ids, matcher = squares
    win = make_window(lib, show=False)
    ix = win.index
    matcher.gate = threading.Semaphore(0)
    ix.start()
    card = win.index_dock.index_card
    qtbot.waitUntil(lambda: ix.state == "running" and matcher.entered.is_set(), timeout=WAIT)
    assert not card.cancel.isHidden() and card.resume.isHidden()
    matcher.gate.release(2)             # Anya's reference photo, then the first photo
    qtbot.waitUntil(lambda: ix.done == 1, timeout=WAIT)
    ix.cancel()
    assert ix.state == "stopping"
    with qtbot.waitSignal(ix.finished, timeout=WAIT) as blocker:
        matcher.gate.release(1)         # a photo already in flight finishes, then the job stops
    first = blocker.args[0]
    assert first["cancelled"] and ix.state == "cancelled" and 1 <= first["indexed"] <= 2
    assert not card.resume.isHidden() and card.cancel.isHidden() and card.status.text() == "Cancelled"
    matcher.gate = None
    with qtbot.waitSignal(ix.finished, timeout=WAIT) as blocker:
        card.resume.click()
    second = blocker.args[0]
    assert second["job_id"] == first["job_id"] and not second["cancelled"]
    assert first["indexed"] + second["indexed"] == 5 and ix.state == "done"


def test_index_job_without_a_matcher_says_why(squares, make_window, qtbot, monkeypatch):
    lib, ids, matcher = squares

    def missing(matcher_id=None, settings=None):
        raise MatcherUnavailable("dlib is not installed (pip install dlib-bin)")

    monkeypatch.setattr(service, "get_matcher", missing)
    win = make_window(lib, show=False)
    win.index_faces()
    qtbot.waitUntil(lambda: win.index.state == "failed", timeout=WAIT)
    card = win.index_dock.index_card
    assert card.status.text() == "Failed" and "pip install dlib-bin" in card.message.text()
    assert not card.resume.isHidden() and win.act_index_faces.isEnabled()


def test_queue_dock_shows_the_index_card(squares, gui_app, qtbot, tmp_path, monkeypatch):
    from repic_desktop.gui.captioning.controller import CaptioningController
    from repic_desktop.gui.captioning.index_controller import IndexController

    lib, ids, matcher = squares
    monkeypatch.setenv("REPIC_CONFIG_DIR", str(tmp_path / "config"))
    ctrl = CaptioningController(lib.path)
    try:
        dock = ctrl.queue_dock()
        qtbot.addWidget(dock)
        dock.show()
        ix = IndexController(lib.path)
        card = dock.add_index_controller(ix)
        assert not card.isVisible() and dock.empty.isVisible()
        with qtbot.waitSignal(ix.finished, timeout=WAIT):
            ix.start()
        assert card.isVisible() and not dock.empty.isVisible() and card.status.text() == "Done"
        # At its minimum height (a first run, no saved layout) the dock shows the whole card: no scrolling.
        dock.resize(700, dock.minimumSizeHint().height())
        qtbot.waitUntil(lambda: dock.scroll.viewport().height() >= card.sizeHint().height(), timeout=WAIT)
        assert dock.scroll.verticalScrollBar().maximum() == 0
        assert "5 of 5 photos" in card.stats.text() and card.stats.visibleRegion().boundingRect().height() == \
            card.stats.height() > 0
        # the card is compact: title row, a thin bar, one stats line (+ the result line)
        assert card.sizeHint().height() < 5 * card.fontMetrics().height() + 24
        card.remove.click()
        qtbot.waitUntil(lambda: dock.scroll.minimumHeight() < card.sizeHint().height(), timeout=WAIT)
    finally:
        ctrl.shutdown()


def test_real_faces_end_to_end(tmp_path, make_window, qtbot):
    """dlib on two real faces: Eileen Collins (skimage's astronaut) is known by a reference photo and is
    suggested on another photo of her; Grace Hopper is nobody yet and becomes an unknown face."""
    pytest.importorskip("dlib")
    import matplotlib
    from skimage import data

    d = tmp_path / "photos"
    d.mkdir()
    astro = Image.fromarray(data.astronaut())
    astro.save(d / "eileen_ref.jpg", quality=92)
    astro.resize((384, 384)).save(d / "eileen_small.jpg", quality=88)
    Image.open(f"{matplotlib.get_data_path()}/sample_data/grace_hopper.jpg").save(d / "grace.jpg")
    from repic_desktop.core.scanner import scan_folder

    lib = Library(tmp_path / "lib.sqlite")
    scan_folder(lib, d)
    by_name = {p.filename: p.id for p in lib.photos.list()}
    lib.concepts.add("Eileen", "person", "astronaut")
    lib.concepts.add_ref("Eileen", photo_id=by_name["eileen_ref.jpg"])
    try:
        win = make_window(lib)
        show(win, qtbot, by_name["eileen_small.jpg"])
        panel = win.panel
        qtbot.waitUntil(lambda: panel.find_btn.isEnabled() and panel._matcher_why == "", timeout=WAIT)
        with qtbot.waitSignal(panel.suggestions_found, timeout=60_000):
            panel.find_btn.click()
        chips = sugg_chips(panel)
        assert [c.suggestion.concept_name for c in chips] == ["Eileen"]
        assert chips[0].suggestion.score > 0.9 and chips[0].suggestion.box is not None
        chips[0].confirm_btn.click()
        assert [c.name for c in lib.concepts.of_photo(by_name["eileen_small.jpg"])] == ["Eileen"]
        with qtbot.waitSignal(win.index.finished, timeout=60_000):
            win.index_faces()
        win.show_page("faces")
        qtbot.waitUntil(lambda: win.faces.model.rowCount() == 1, timeout=WAIT)
        row = win.faces.model.rows[0]
        assert row.size == 1 and row.faces[0].photo_id == by_name["grace.jpg"]
    finally:
        lib.close()

"""Captioning from the GUI with the demo model: dialog → durable job → model worker → captions in the library.

Every wait is a qtbot wait on a condition or signal (no sleeps). The demo model is the session's tiny
random Qwen2.5-VL; the settings (per test, REPIC_CONFIG_DIR) point at it.
"""
from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from repic_desktop.core.jobs import JobStore
from repic_desktop.core.library import Library
from repic_desktop.core.settings import Settings
from tests.helpers.gui_captioning import WAIT, db_job, photo_file, start_job, wait_stopped

@pytest.fixture
def album(demo_album):
    return demo_album


# ------------------------------------------------------------------------------------------------------

def test_caption_selection_end_to_end(qtbot, album, window, make_controller):
    ctrl = make_controller(album["path"])
    dock = ctrl.queue_dock()
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    window.show()
    finished = []
    ctrl.caption_finished.connect(lambda pid, cid: finished.append((pid, cid)))
    ids = album["ids"][:5]
    job_id = start_job(qtbot, ctrl, ids, window)
    view = wait_stopped(qtbot, ctrl, job_id)
    assert view.status == "done", view.message
    qtbot.waitUntil(lambda: dock.clear.isVisible() and dock.clear.isEnabled(), timeout=WAIT)  # shown once clearable
    assert sorted(p for p, _ in finished) == sorted(ids)  # one signal per photo
    job, items = db_job(album["path"], job_id)
    assert job.status == "done" and job.params["batch_size"] == 2 and job.params["concepts"] is None
    with Library(album["path"]) as lib:
        for pid, cid in finished:
            cap = lib.captions.current(pid)
            assert cap.id == cid and cap.job_id == job_id and cap.provenance["demo"] is True
        assert lib.captions.current(album["ids"][5]) is None  # not selected
        # the photo's own concepts were used: tagged photos had <Anya> in the prompt
        assert lib.captions.current(ids[0]).concept_set == ["Anya"]
        assert lib.captions.current(ids[4]).concept_set == []
    card = dock.cards[job_id]
    assert card.status.text() == "Done" and card.bar.value() == 5 and card.bar.maximum() == 5
    assert not card.pause.isVisible() and card.remove.isVisible()
    assert ctrl.model_state == "loaded" and ctrl.model_text == "Demo model (captions are noise)"
    assert "(demo)" in ctrl.model_id_text and " on cpu" in ctrl.model_detail or " on cuda" in ctrl.model_detail
    # the model stays loaded for the next job; "Unload model" frees it
    assert dock.model_panel.unload.isVisible()
    with qtbot.waitSignal(ctrl.model_changed, timeout=WAIT):
        dock.model_panel.unload.click()
    qtbot.waitUntil(lambda: ctrl.model_state == "unloaded", timeout=WAIT)
    assert dock.model_panel.load.isVisible()


def test_dialog_choices_become_job_params_and_skip_captioned(qtbot, album, window, make_controller):
    ids = album["ids"]
    with Library(album["path"]) as lib:
        lib.captions.add(ids[0], "Already captioned by hand.", source="user")
    ctrl = make_controller(album["path"])

    def configure(dlg):
        assert "4 of 6 photos have people or pets tagged" in dlg.own_summary.text()
        assert "(1 of 6)" in dlg.skip.text() and dlg.skip.isChecked()
        dlg.search.setText("an")  # the searchable list: "Anya" stays, "Bond" is hidden
        visible = [dlg.concept_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(dlg.concept_list.count())
                   if not dlg.concept_list.item(i).isHidden()]
        assert visible == ["Anya"]
        dlg.set_checked(["Anya"])
        dlg.preset.setCurrentIndex(dlg.preset.findData("rich"))
        dlg.batch.setValue(3)

    job_id = start_job(qtbot, ctrl, ids, window, configure)
    assert "1 photo already captioned: skipped." == ctrl.jobs[job_id].message
    view = wait_stopped(qtbot, ctrl, job_id)
    assert view.status == "done"
    job, items = db_job(album["path"], job_id)
    assert [i["photo_id"] for i in items] == ids[1:]
    assert job.params["concepts"] == ["Anya"] and job.params["batch_size"] == 3
    assert job.params["request"] == "Give a rich caption of the image."
    with Library(album["path"]) as lib:
        assert lib.captions.current(ids[0]).text == "Already captioned by hand."
        assert lib.captions.current(ids[5]).concept_set == ["Anya"]  # chosen for all, though untagged


def test_dialog_warns_about_concepts_without_reference(qtbot, album, window, make_controller):
    ctrl = make_controller(album["path"])
    ctrl.caption_photos(album["ids"][:2], window)
    dlg = ctrl.active_dialog
    assert "<Bond>" in dlg.warning.text() and not dlg.warning.isHidden()
    dlg.set_checked(["Bond"])
    assert "No reference photo yet for <Bond>" in dlg.warning.text()
    dlg.set_checked([])
    assert not dlg.buttons.button(dlg.buttons.StandardButton.Ok).isEnabled()  # "chosen" with nobody chosen
    dlg.reject()


def test_pause_keeps_finished_captions_then_resume_and_cancel(qtbot, album, window, make_controller):
    ctrl = make_controller(album["path"])
    dock = ctrl.queue_dock()
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    window.show()
    finished = []
    ctrl.caption_finished.connect(lambda pid, cid: finished.append(pid))
    paused = {}

    def pause_after_first(job_id, photo_id, caption_id, error, name):
        # runs in the worker thread, right after the first caption was committed: deterministic stop
        if not paused:
            paused["at"] = photo_id
            ctrl._worker.stop_job(job_id, "pause")

    ctrl._worker.item_done.connect(pause_after_first, Qt.ConnectionType.DirectConnection)
    job_id = start_job(qtbot, ctrl, album["ids"], window)
    view = wait_stopped(qtbot, ctrl, job_id)
    ctrl._worker.item_done.disconnect(pause_after_first)
    assert view.status == "paused"
    job, items = db_job(album["path"], job_id)
    done = [i for i in items if i["status"] == "done"]
    assert job.status == "paused" and len(done) == 2  # the batch in flight (2 photos) finished, then it stopped
    assert sorted(finished) == sorted(i["photo_id"] for i in done)
    card = dock.cards[job_id]
    assert card.status.text() == "Paused" and card.resume.isVisible() and card.stats.text() == "2 of 6 photos · 4 left"

    # Resume from the dock: the job finishes, nobody is captioned twice
    card.resume.click()
    view = wait_stopped(qtbot, ctrl, job_id)
    assert view.status == "done" and view.processed == 6
    assert sorted(finished) == sorted(album["ids"])
    with Library(album["path"]) as lib:
        assert all(len(lib.captions.history(pid)) == 1 for pid in album["ids"])

    # Cancel: a running job stops for good (status cancelled), its captions are kept
    def cancel_after_first(job_id, photo_id, caption_id, error, name):
        ctrl._worker.stop_job(job_id, "cancel")

    ctrl._worker.item_done.connect(cancel_after_first, Qt.ConnectionType.DirectConnection)
    job2 = start_job(qtbot, ctrl, album["ids"][1:], window, lambda d: d.skip.setChecked(False))
    v2 = wait_stopped(qtbot, ctrl, job2)
    ctrl._worker.item_done.disconnect(cancel_after_first)
    assert v2.status == "cancelled"
    job, items = db_job(album["path"], job2)
    assert job.status == "cancelled" and 0 < sum(i["status"] == "done" for i in items) < 5
    assert dock.cards[job2].status.text() == "Cancelled" and dock.cards[job2].resume.isVisible()


def test_pause_button_while_running(qtbot, album, window, make_controller):
    """The dock's Pause button on a running job. The worker is held after its first caption until the
    click has happened, so the job cannot run to its end first, however fast the machine."""
    s = Settings.load()
    s.extra.update(batch_size=1)
    s.save()
    ctrl = make_controller(album["path"])
    dock = ctrl.queue_dock()
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    window.show()
    gate = threading.Event()

    def hold(job_id, processed, *_):
        if processed >= 1:
            gate.wait(WAIT / 1000)

    ctrl._worker.job_progress.connect(hold, Qt.ConnectionType.DirectConnection)
    job_id = start_job(qtbot, ctrl, album["ids"], window)
    qtbot.waitUntil(lambda: ctrl.jobs[job_id].status == "running" and ctrl.jobs[job_id].processed >= 1,
                    timeout=WAIT)
    card = dock.cards[job_id]
    assert card.pause.isVisible() and "now: IMG_" in card.stats.text()
    card.pause.click()
    assert ctrl.jobs[job_id].status == "stopping" and card.status.text() == "Stopping"
    gate.set()
    view = wait_stopped(qtbot, ctrl, job_id)
    ctrl._worker.job_progress.disconnect(hold)
    job, items = db_job(album["path"], job_id)
    assert view.status == job.status == "paused"
    assert sum(i["status"] == "done" for i in items) == 1


def test_resume_after_restart_finishes_without_duplicates(qtbot, album, window, make_controller):
    ctrl = make_controller(album["path"])
    stopped = {}

    def quit_after_first(job_id, photo_id, caption_id, error, name):
        if not stopped:  # as if the app were closed right after the first caption
            stopped["job"] = job_id
            ctrl._worker.stop()

    ctrl._worker.item_done.connect(quit_after_first, Qt.ConnectionType.DirectConnection)
    job_id = start_job(qtbot, ctrl, album["ids"], window)
    qtbot.waitUntil(lambda: bool(stopped), timeout=WAIT)
    ctrl.shutdown()
    job, items = db_job(album["path"], job_id)
    assert job.status == "paused" and sum(i["status"] == "done" for i in items) == 2

    # "restart": a new controller on the same library offers the job, and finishes it
    ctrl2 = make_controller(album["path"])
    finished = []
    ctrl2.caption_finished.connect(lambda pid, cid: finished.append(pid))
    ctrl2.resume_unfinished(window)
    box = ctrl2.resume_prompt
    assert isinstance(box, QMessageBox) and f"Job {job_id}: 6 photos — 4 of 6 left" in box.text()
    assert ctrl2.jobs[job_id].status == "paused" and ctrl2.jobs[job_id].from_previous_run
    box.resume_button.click()
    view = wait_stopped(qtbot, ctrl2, job_id)
    assert view.status == "done" and view.processed == 6
    assert len(finished) == 4
    with Library(album["path"]) as lib:
        assert all(len(lib.captions.history(pid)) == 1 for pid in album["ids"])
        assert lib.counts()["captioned"] == 6
    assert JobStore(Library(album["path"])).unfinished() == []


def test_resume_prompt_discard_and_nothing_to_offer(qtbot, album, window, make_controller):
    with Library(album["path"]) as lib:  # a job `repic caption` left behind (killed while running)
        store = JobStore(lib)
        from repic_desktop.captioning.jobs import job_params

        job = store.create(album["ids"][:2], job_params(model={"source": "x"}, concepts=None, request="Hi.",
                                                        system_preset="repic", max_refs=1, batch_size=1,
                                                        max_pixels=802816, max_new_tokens=8))
        store.set_status(job.id, "running")
    ctrl = make_controller(album["path"])
    assert ctrl.jobs[job.id].status == "interrupted"
    ctrl.resume_unfinished(window)
    ctrl.resume_prompt.discard_button.click()
    qtbot.waitUntil(lambda: db_job(album["path"], job.id)[0].status == "cancelled", timeout=WAIT)
    assert job.id not in ctrl.jobs
    ctrl2 = make_controller(album["path"])
    ctrl2.resume_unfinished(window)
    assert ctrl2.resume_prompt is None


def test_model_load_can_be_cancelled(qtbot, album, window, make_controller, monkeypatch):
    from repic_desktop.captioning import models

    real_load = models.load_model
    release = threading.Event()

    def slow_load(spec, *, progress=None, cancel=None, **kw):
        def held(stage, fraction):
            progress(stage, fraction)
            if stage == "processor":  # hold the load here until the test has clicked Cancel
                release.wait(WAIT / 1000)
        return real_load(spec, progress=held, cancel=cancel, **kw)

    monkeypatch.setattr(models, "load_model", slow_load)
    ctrl = make_controller(album["path"])
    dock = ctrl.queue_dock()
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    window.show()
    job_id = start_job(qtbot, ctrl, album["ids"][:2], window)
    qtbot.waitUntil(lambda: ctrl.model_state == "loading" and ctrl.load_stage == "processor", timeout=WAIT)
    panel = dock.model_panel
    assert panel.cancel.isVisible() and panel.bar.isVisible() and "Loading the processor" in panel.stage.text()
    assert dock.cards[job_id].status.text() == "Loading model"
    panel.cancel.click()
    assert panel.state.text() == "cancelling…" and not panel.cancel.isEnabled()
    release.set()
    view = wait_stopped(qtbot, ctrl, job_id)
    assert view.status == "paused" and "cancelled" in view.message
    assert ctrl.model_state == "unloaded" and ctrl.last_message is None  # a cancel is not an error
    job, items = db_job(album["path"], job_id)
    assert job.status == "paused" and job.error is None and all(i["status"] == "pending" for i in items)
    # and a plain "Load" right after works (the cancel does not stick to later requests)
    with qtbot.waitSignal(ctrl._worker.load_finished, timeout=WAIT) as sig:
        panel.load.click()
    assert sig.args[0] == "loaded" and ctrl.model_state == "loaded"


def test_load_error_is_shown_readably(qtbot, album, window, make_controller):
    bad = album["tmp"] / "not-a-model"
    bad.mkdir()
    (bad / "readme.txt").write_text("hello")
    s = Settings.load()
    s.model.source = str(bad)
    s.save()
    ctrl = make_controller(album["path"])
    shown = []
    ctrl.message_shown.connect(shown.append)
    job_id = start_job(qtbot, ctrl, album["ids"][:2], window)
    view = wait_stopped(qtbot, ctrl, job_id)
    qtbot.waitUntil(lambda: bool(shown), timeout=WAIT)
    box = ctrl.last_message
    assert box.windowTitle() == "The model could not be loaded"
    assert shown == [box.plain_text] == [f"{bad} is not a model folder (it has no config.json)."]
    assert "is not a model folder" in box.informativeText() and "could not be loaded" in box.text()
    assert "Traceback" not in box.informativeText() and any(b.text() == "Open Settings…" for b in box.buttons())
    assert view.status == "paused" and "not a model folder" in view.message
    job, _ = db_job(album["path"], job_id)
    assert job.status == "paused" and "not a model folder" in job.error
    box.close()


def test_regenerate_adds_a_second_caption(qtbot, album, window, make_controller):
    ctrl = make_controller(album["path"])
    pid = album["ids"][0]
    with Library(album["path"]) as lib:
        first = lib.captions.add(pid, "<Anya> smiles.", source="user")
    with qtbot.waitSignal(ctrl.caption_finished, timeout=WAIT) as sig:
        ctrl.regenerate(pid, window)
    assert sig.args[0] == pid and sig.args[1] != first
    job_id = max(ctrl.jobs)
    assert ctrl.jobs[job_id].title == "Regenerate IMG_100.jpg"
    wait_stopped(qtbot, ctrl, job_id)
    with Library(album["path"]) as lib:
        assert [c.id for c in lib.captions.history(pid)] == [first, sig.args[1]]


def test_nothing_to_caption_is_explained(qtbot, album, window, make_controller):
    with Library(album["path"]) as lib:
        lib.captions.add(album["ids"][0], "Done already.", source="user")
    ctrl = make_controller(album["path"])
    ctrl.caption_photos([album["ids"][0]], window)
    dlg = ctrl.active_dialog
    assert not dlg.skip.isChecked()  # all selected are captioned: default to captioning again
    dlg.skip.setChecked(True)
    with qtbot.waitSignal(ctrl.message_shown, timeout=WAIT) as sig:
        dlg.accept()
    assert sig.args[0].startswith("All 1 selected photo already has a caption.")
    assert ctrl.jobs == {}


def test_gpu_summary_is_plain_language(qtbot, album, make_controller):
    ctrl = make_controller(album["path"])
    qtbot.waitUntil(lambda: ctrl.gpu_info is not None, timeout=WAIT)
    text = ctrl.gpu_summary()
    import torch

    if torch.cuda.is_available():
        assert text.startswith("GPU: ")
    else:
        assert text.startswith("No NVIDIA GPU found")


def test_queue_dock_is_small_when_empty(qtbot, album, window, make_controller):
    ctrl = make_controller(album["path"])
    dock = ctrl.queue_dock()
    window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    window.show()
    qtbot.waitExposed(window)
    assert not dock.clear.isVisible()                        # nothing to clear: no row for it
    assert dock.minimumSizeHint().height() <= dock.model_panel.minimumSizeHint().height() + 90


def _suggest(lib, photo_id, name, score, *, weak=False):
    """A stored pending suggestion, as an index run leaves it (no matcher needed)."""
    cid = lib.concepts.get(name).id
    lib.retrieval.store_photo(photo_id, "dlib-faces", content_hash=f"test{photo_id}", model_sig="test", refs_sig=None,
                              crops=[], matches=[], suggestions=[{"concept_id": cid, "score": score, "box": None,
                                                                  "crop": None, "kind": "face", "weak": weak}])


@pytest.mark.parametrize("include", [False, True])
def test_own_concepts_use_suggestions_when_allowed(qtbot, album, window, make_controller, include):
    """"Each photo's own" fixes names per photo when the job is made, as `repic caption --auto` does:
    confirmed tags always, strong pending suggestions only when the setting allows them."""
    ids = album["ids"]
    with Library(album["path"]) as lib:
        bond_ref = photo_file(album["tmp"] / "photos" / "bond.jpg", (240, 240, 240), (48, 48))
        rid = lib.photos.add(bond_ref, size=bond_ref.stat().st_size, mtime_ns=1, content_hash="bondref", format="JPEG",
                             width=48, height=48)
        lib.concepts.add_ref("Bond", photo_id=rid)
        _suggest(lib, ids[0], "Bond", 0.95)   # tagged Anya + a strong Bond suggestion
        _suggest(lib, ids[4], "Bond", 0.97)   # nobody tagged, a strong Bond suggestion
        _suggest(lib, ids[5], "Bond", 0.50)   # below the threshold
    s = Settings.load()
    s.extra["retrieval"] = {"auto_include_suggestions": include, "threshold": 0.9, "default_matcher": "dlib-faces"}
    s.save()
    ctrl = make_controller(album["path"])
    notes = []
    job_id = start_job(qtbot, ctrl, [ids[0], ids[3], ids[4], ids[5]], window,
                       lambda dlg: notes.append((dlg.suggestions_note.text(), dlg.suggestions_note.isHidden())))
    job, _ = db_job(album["path"], job_id)
    expected = {ids[0]: ["Anya", "Bond"] if include else ["Anya"], ids[3]: ["Anya"],
                ids[4]: ["Bond"] if include else [], ids[5]: []}
    assert job.params["concepts"] is None
    assert job.params["photo_concepts"] == {str(k): v for k, v in expected.items()}
    assert job.params["auto"] == {"include_suggestions": include, "threshold": 0.9, "top_k": None}
    if include:
        assert "suggestions above 0.9" in notes[0][0] and not notes[0][1]
        assert "+ suggestions above 0.9" in ctrl.jobs[job_id].detail
    else:
        assert notes[0][1] and "suggestions" not in ctrl.jobs[job_id].detail
    view = wait_stopped(qtbot, ctrl, job_id)
    assert view.status == "done", (view.message, view.errors)
    with Library(album["path"]) as lib:
        got = {pid: lib.captions.current(pid).concept_set for pid in expected}
    assert got == expected


def test_cli_and_gui_make_the_same_job_for_the_same_selection_and_settings(qtbot, album, window, make_controller,
                                                                          monkeypatch):
    """One planner (app/caption_jobs.py) behind both fronts: with a user preset as the default request, the
    other system preset, max_refs 2 and suggestions allowed, `repic caption` and the caption dialog (its
    defaults) store the same parameters and photos, skipping the captioned photo alike."""
    import repic_desktop.cli.caption as cli_caption
    from repic_desktop.cli import main

    ids = album["ids"]
    with Library(album["path"]) as lib:
        bond_ref = photo_file(album["tmp"] / "photos" / "bond.jpg", (240, 240, 240), (48, 48))
        rid = lib.photos.add(bond_ref, size=bond_ref.stat().st_size, mtime_ns=1, content_hash="bondref", format="JPEG",
                             width=48, height=48)
        lib.concepts.add_ref("Bond", photo_id=rid)
        _suggest(lib, ids[4], "Bond", 0.95)
        lib.captions.add(ids[1], "Captioned by hand.", source="user")
    s = Settings.load()
    s.extra.update(request_presets={"album": "Caption this for our album."}, request_preset="album",
                   system_preset="repic-no-duplication", max_refs=2)
    s.extra["retrieval"] = {"auto_include_suggestions": True, "threshold": 0.9, "default_matcher": "dlib-faces"}
    s.save()
    selection = [ids[0], ids[1], ids[4], ids[5]]

    # The CLI stores its job, then would load the model and run it: stop after the job is stored.
    monkeypatch.setattr(cli_caption, "_backend", lambda spec, params, args, settings: None)  # no model needed
    monkeypatch.setattr(cli_caption, "_run", lambda lib, store, job_id, backend, args: 0)
    assert main(["--library", str(album["path"]), "caption", *map(str, selection)]) == 0
    with Library(album["path"]) as lib:
        cli_job_id = JobStore(lib).list()[0].id

    ctrl = make_controller(album["path"])
    gui_job_id = start_job(qtbot, ctrl, selection, window)
    assert gui_job_id != cli_job_id
    cli_job, cli_items = db_job(album["path"], cli_job_id)
    gui_job, gui_items = db_job(album["path"], gui_job_id)
    assert gui_job.params == cli_job.params
    assert [i["photo_id"] for i in gui_items] == [i["photo_id"] for i in cli_items] == [ids[0], ids[4], ids[5]]
    p = gui_job.params
    assert p["request"] == "Caption this for our album." and p["system_preset"] == "repic-no-duplication"
    assert p["max_refs"] == 2 and p["photo_concepts"][str(ids[4])] == ["Bond"]
    wait_stopped(qtbot, ctrl, gui_job_id)

"""The GUI queue with a caption server: Settings name a `repic serve` (a real process on 127.0.0.1), the
caption dialog and the job card say where the photos go, the job runs without loading a local model."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from repic_desktop.core.library import Library
from repic_desktop.core.settings import Settings

from tests.helpers.gui_captioning import db_job, start_job, wait_stopped
from tests.helpers.repic_server import free_port, start_server


@pytest.fixture
def album(demo_album):
    return demo_album


@pytest.fixture
def served(album, demo_model_dir, tmp_path):
    port = free_port()
    proc = start_server(demo_model_dir, port, tmp_path)
    url = f"http://127.0.0.1:{port}"
    s = Settings.load()
    s.extra["server"] = {"url": url}
    s.save()
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_gui_job_goes_to_the_server_in_settings(qtbot, album, served, window, make_controller):
    ctrl = make_controller(album["path"])
    dock = ctrl.queue_dock()
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    window.show()
    labels = []

    def look(dlg):
        labels.append(dlg.model_label.text())

    ids = album["ids"][:3]
    job_id = start_job(qtbot, ctrl, ids, window, configure=look)
    assert labels[0].endswith(f"on server {served} (photos are sent there)")
    view = wait_stopped(qtbot, ctrl, job_id)
    assert view.status == "done", view.message
    job, _ = db_job(album["path"], job_id)
    # the same backend entry `repic caption` stores with this Settings (app.caption_jobs.backend_choice)
    assert job.params["backend"] == {"kind": "remote", "servers": [served], "served_model": None, "in_flight": 8}
    with Library(album["path"]) as lib:
        for pid in ids:
            prov = lib.captions.current(pid).provenance
            assert prov["backend"] == "remote" and prov["server"] == served
    assert ctrl.model_state == "unloaded"  # nothing was loaded on this computer
    assert f"on server {served} (photos are sent there)" in dock.cards[job_id].detail.text()  # the queue says it

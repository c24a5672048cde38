"""Fixtures for the captioning GUI tests: a plain window to parent dialogs, and real CaptioningControllers
(shut down after the test)."""
from __future__ import annotations

import pytest
from PIL import Image
from PySide6.QtWidgets import QMainWindow

from repic_desktop.core.jobs import JobStore
from repic_desktop.core.library import Library
from repic_desktop.core.settings import Settings

WAIT = 30_000  # ms: generous upper bound for slow CI machines; the waits end as soon as the condition holds


@pytest.fixture
def window(qtbot):
    w = QMainWindow()
    w.resize(900, 600)
    qtbot.addWidget(w)
    return w


@pytest.fixture
def make_controller(qtbot):
    from repic_desktop.gui.captioning.controller import CaptioningController

    made = []

    def make(path):
        c = CaptioningController(path)
        made.append(c)
        qtbot.waitUntil(lambda: c.jobs_loaded, timeout=WAIT)
        return c

    yield make
    for c in made:
        c.shutdown()


def photo_file(path, color, size=(64, 48)):
    Image.new("RGB", size, color).save(path)
    return path


@pytest.fixture
def demo_album(tmp_path, monkeypatch, demo_model_dir):
    """A library of 6 photos (4 tagged with <Anya>, who has a reference photo) and settings that use the
    demo model with short captions."""
    monkeypatch.setenv("REPIC_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    photos = tmp_path / "photos"
    photos.mkdir()
    lib_path = tmp_path / "lib.sqlite"
    with Library(lib_path) as lib:
        ids = []
        for i in range(6):
            p = photo_file(photos / f"IMG_{100 + i}.jpg", (40 * i, 120, 200 - 30 * i))
            ids.append(lib.photos.add(p, size=p.stat().st_size, mtime_ns=1, content_hash=f"h{i}", format="JPEG",
                                      width=64, height=48))
        ref = photo_file(photos / "anya.jpg", (250, 180, 200), (48, 48))
        rid = lib.photos.add(ref, size=ref.stat().st_size, mtime_ns=1, content_hash="ref", format="JPEG",
                             width=48, height=48)
        lib.concepts.add("Anya", "person", "A girl with pink hair.")
        lib.concepts.add_ref("Anya", photo_id=rid)
        lib.concepts.add("Bond", "pet", "A white dog.")  # no reference photo on purpose
        for pid in ids[:4]:
            lib.concepts.tag(pid, "Anya")
    s = Settings()
    s.model.source = str(demo_model_dir)
    s.extra.update(batch_size=2, max_new_tokens=8)
    s.save()
    return {"path": lib_path, "ids": ids, "tmp": tmp_path}


def start_job(qtbot, ctrl, ids, window, configure=None) -> int:
    """caption_photos → accept the dialog programmatically → the job id once it is created and queued."""
    from repic_desktop.gui.dialogs.caption import CaptionDialog

    ctrl.caption_photos(ids, window)
    dlg = ctrl.active_dialog
    assert isinstance(dlg, CaptionDialog)
    if configure:
        configure(dlg)
    with qtbot.waitSignal(ctrl.job_created, timeout=WAIT) as created:
        dlg.accept()
    return created.args[0]


def wait_stopped(qtbot, ctrl, job_id):
    qtbot.waitUntil(lambda: job_id in ctrl.jobs and not ctrl.jobs[job_id].active, timeout=WAIT)
    return ctrl.jobs[job_id]


def db_job(path, job_id):
    with Library(path) as lib:
        store = JobStore(lib)
        return store.get(job_id), store.items(job_id)

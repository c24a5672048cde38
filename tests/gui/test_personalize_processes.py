"""The Personalize page cancelling a real 2-process run (`python -m trainer --processes 2`, CPU, demo
model): its QProcess is the launching process, and Cancel (QProcess.terminate) must stop both ranks at
one step with a checkpoint, shown as a resumable cancel. ("Stop Now", QProcess.kill, is the SIGKILL case
of tests/test_trainer_multiprocess.py.)"""
from __future__ import annotations

import sys

from repic_desktop.core.library import Library
from repic_desktop.core.settings import Settings
from repic_desktop.gui.pages.personalize import PersonalizePage
from tests.helpers.trainer_library import make_library


def test_cancel_on_the_page_stops_every_rank(tmp_path, monkeypatch, demo_model_dir, qtbot):
    import psutil

    monkeypatch.setenv("REPIC_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two ranks on the shared 2-core machine
    s = Settings()
    s.model.source = str(demo_model_dir)
    s.save()
    # settings the page has no field for go with the command, as a packaged app's leading arguments would
    cmd = [sys.executable, "-m", "trainer", "--processes=2", "--device=cpu", "--grad-accum=1", "--skip-eval",
           "--max-completion-length=8", f"--max-pixels={56 * 56}", "--lora-r=4", "--lora-alpha=8"]
    with Library(make_library(tmp_path)) as lib:
        page = PersonalizePage(lib, trainer_command=cmd)
        qtbot.addWidget(page)
        page.steps_spin.setValue(500)
        page.gens_spin.setValue(2)
        assert page.start()
        qtbot.waitUntil(lambda: bool(page.progress.steps) or not page.is_running(), timeout=240_000)
        assert page.progress.steps, page.log_view.toPlainText()[-3000:]
        ranks = psutil.Process(page.proc.processId()).children(recursive=True)
        assert len(ranks) >= 3  # accelerate's launcher and the two ranks
        page.cancel()
        qtbot.waitUntil(lambda: not page.is_running(), timeout=120_000)
        stop = page.progress.error_event
        assert stop and stop["cancelled"] is True and stop["step"] < 500, page.log_view.toPlainText()[-3000:]
        assert page.status_label.text().startswith(f"Cancelled at step {stop['step']}")
        assert page.resume_btn.isVisibleTo(page) and not page.error_box.isVisibleTo(page)
        alive = psutil.wait_procs(ranks, timeout=10)[1]
        assert [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
        assert lib.adapters.all() == []

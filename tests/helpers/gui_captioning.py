"""Fixtures for the captioning GUI tests: a plain window to parent dialogs, and real CaptioningControllers
(shut down after the test)."""
from __future__ import annotations

import pytest
from PySide6.QtWidgets import QMainWindow

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

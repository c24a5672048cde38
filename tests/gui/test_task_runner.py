"""TaskRunner delivers results on the GUI thread, and never into a widget that was deleted meanwhile."""
from __future__ import annotations

import threading

import pytest
import shiboken6
from PySide6.QtWidgets import QLabel

from repic_desktop.gui.widgets.thumbnails import TaskRunner


pytestmark = pytest.mark.usefixtures("gui_app")


def test_a_result_for_a_deleted_widget_is_dropped(qtbot):
    runner = TaskRunner()
    label = QLabel()
    release = threading.Event()
    runner.run(lambda: release.wait(10) and "late", label.setText)
    label.deleteLater()
    qtbot.waitUntil(lambda: not shiboken6.isValid(label), timeout=5000)
    release.set()
    qtbot.waitUntil(lambda: not runner._live, timeout=5000)   # delivered, and nothing raised


def test_results_arrive_while_the_widget_lives(qtbot):
    runner = TaskRunner()
    label = QLabel()
    runner.run(lambda: "done", label.setText)
    qtbot.waitUntil(lambda: label.text() == "done", timeout=5000)

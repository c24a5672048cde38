"""gui/tasks.py: results come back on the GUI thread, exactly one outcome per task, never into a widget that
was deleted meanwhile; a task can get its own Library, report progress, be cancelled, run on daemon threads."""
from __future__ import annotations

import sqlite3
import threading

import pytest
import shiboken6
from PySide6.QtWidgets import QLabel

from repic_desktop.core.library import Library
from repic_desktop.gui.tasks import CommandThread, TaskError, TaskRunner


pytestmark = pytest.mark.usefixtures("gui_app")


def test_a_result_for_a_deleted_widget_is_dropped(qtbot):
    runner = TaskRunner()
    label = QLabel()
    release = threading.Event()
    runner.run(lambda: release.wait(10) and "late", label.setText)
    label.deleteLater()
    qtbot.waitUntil(lambda: not shiboken6.isValid(label), timeout=5000)
    release.set()
    qtbot.waitUntil(lambda: not runner.busy, timeout=5000)   # delivered, and nothing raised


def test_results_arrive_while_the_widget_lives(qtbot):
    runner = TaskRunner()
    label = QLabel()
    runner.run(lambda: "done", label.setText)
    qtbot.waitUntil(lambda: label.text() == "done", timeout=5000)


@pytest.mark.parametrize("daemon", [False, True])
def test_callbacks_run_on_the_gui_thread_with_progress_first(qtbot, daemon):
    runner = TaskRunner(daemon=daemon)
    gui = threading.current_thread()
    seen: list = []

    def work(progress):
        assert threading.current_thread() is not gui
        for i in range(3):
            progress(i)
        return "ok"

    runner.run(work, lambda r: seen.append(("done", r, threading.current_thread() is gui)), None,
               lambda v: seen.append(("progress", v, threading.current_thread() is gui)), name="repic-test")
    qtbot.waitUntil(lambda: not runner.busy, timeout=5000)
    assert seen == [("progress", 0, True), ("progress", 1, True), ("progress", 2, True), ("done", "ok", True)]
    assert runner.wait(5000)


def test_the_function_gets_its_own_library_closed_afterwards(qtbot, tmp_path):
    path = tmp_path / "lib.repic"
    Library(path).close()
    runner = TaskRunner()
    got: list = []

    def work(lib):
        got.append(lib)
        return lib.path, threading.get_ident()

    results: list = []
    runner.run(work, results.append, library=path)
    qtbot.waitUntil(lambda: bool(results), timeout=5000)
    assert results[0][0] == path and results[0][1] != threading.get_ident()
    with pytest.raises(sqlite3.ProgrammingError):  # closed when the function returned: nobody keeps a stray connection
        got[0].conn.execute("select 1")


def test_failures_give_one_line_and_details_expected_ones_no_traceback(qtbot):
    runner = TaskRunner()
    errors: list = []

    def boom():
        raise ZeroDivisionError("division by zero")

    def expected():
        raise TaskError("no face matcher is ready")

    runner.run(boom, lambda r: errors.append("done?"), lambda m, d: errors.append((m, d)))
    runner.run(expected, lambda r: errors.append("done?"), lambda m, d: errors.append((m, d)))
    qtbot.waitUntil(lambda: len(errors) == 2, timeout=5000)
    by_msg = dict(errors)
    boom_msg = next(m for m in by_msg if "ZeroDivisionError" in m)
    assert "Traceback" in by_msg[boom_msg]
    assert by_msg["no face matcher is ready"] == ""


def test_describe_decides_the_message(qtbot):
    runner = TaskRunner(describe=lambda exc: f"custom: {exc}")
    errors: list = []
    runner.run(lambda: 1 / 0, None, lambda m, d: errors.append(m))
    qtbot.waitUntil(lambda: bool(errors), timeout=5000)
    assert errors == ["custom: division by zero"]


def test_cancel_is_polled_and_still_ends_with_one_callback(qtbot):
    runner = TaskRunner(daemon=True)
    started = threading.Event()
    stop = threading.Event()
    outcomes: list = []

    def work():
        started.set()
        while not stop.wait(0.01):
            pass
        return "stopped"

    task = runner.run(work, outcomes.append, lambda m, d: outcomes.append(m), cancel=stop)
    assert started.wait(5) and not task.cancelled
    task.cancel()
    qtbot.waitUntil(lambda: task.finished, timeout=5000)
    assert outcomes == ["stopped"] and task.cancelled and stop.is_set()


def test_a_closed_runner_delivers_nothing_and_wait_times_out_on_a_stuck_daemon(qtbot):
    runner = TaskRunner(daemon=True)
    release = threading.Event()
    outcomes: list = []
    task = runner.run(lambda: release.wait(10), outcomes.append)
    assert not runner.wait(50)   # still running: wait gives up, a daemon thread never blocks quitting
    runner.close()
    release.set()
    assert runner.wait(5000)
    qtbot.waitUntil(lambda: task.finished, timeout=5000)
    assert outcomes == []


def test_command_thread_serves_commands_in_order_until_stopped(qtbot):
    class Echo(CommandThread):
        def __init__(self):
            super().__init__()
            self.handled: list = []

        def run(self):
            while (command := self.take()) is not None:
                self.handled.append(command)

    t = Echo()
    t.put("b")
    t.put("a", front=True)
    t.start()
    qtbot.waitUntil(lambda: len(t.handled) == 2, timeout=5000)
    t.stop()
    assert t.wait(5000)
    assert t.handled == ["a", "b"]

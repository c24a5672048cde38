"""Personalize page: a run of a scripted fake trainer child (the real one needs a GPU and minutes), its
curves, summary and before/after result, "Use this adapter" and the flagged case, errors from the child,
cancel (SIGTERM, then SIGKILL for a child that ignores it), closing the window mid-run, the chart widget."""
from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest
from PySide6.QtCore import QProcess
from PySide6.QtGui import QColor, QImage

from repic_desktop.core.settings import Settings
from repic_desktop.gui.pages import personalize
from repic_desktop.gui.widgets.charts import LineChart
from repic_desktop.gui.pages.personalize import PersonalizePage


pytestmark = pytest.mark.usefixtures("gui_app")

BASE = "Qwen/Qwen2.5-VL-7B-Instruct"

# The fake trainer: logs its arguments, answers `dataset --json`, and plays one scripted run. Each JSON
# line is written in two flushed pieces, so the page really receives partial lines through the pipe.
FAKE = textwrap.dedent('''
    import json, os, signal, sys, time
    MODE, ARGS_LOG = {mode!r}, {args_log!r}
    args = sys.argv[1:]
    with open(ARGS_LOG, "a") as fh:
        fh.write(json.dumps(args) + "\\n")
    def opt(name, default=None):  # the page passes values as --flag=value
        return next((a.split("=", 1)[1] for a in args if a.startswith(name + "=")), default)
    def emit(ev):
        line = json.dumps(ev)
        sys.stdout.write(line[:9]); sys.stdout.flush()
        sys.stdout.write(line[9:] + "\\n"); sys.stdout.flush()
    summary = {{"tasks": {{"ict": 5, "oct": 2, "vlt": 3}},
               "concepts": {{"Anya": {{"ict": 3, "oct": 2, "vlt": 2}}, "Rex": {{"ict": 2, "oct": 2, "vlt": 1}}}},
               "train": 7, "heldout": 3, "warnings": ["Rex has few photos"]}}
    if args and args[0] == "dataset":
        if MODE == "dataset_error":
            print(json.dumps({{"event": "error", "message": "nobody is tagged in any photo yet"}}))
            sys.exit(1)
        print(json.dumps(summary, indent=2))
        sys.exit(0)
    print("a library warning on stdout", flush=True)
    emit({{"event": "dataset", "summary": summary}})
    emit({{"event": "status", "message": "Loading the base model"}})
    if MODE == "crash":
        sys.stderr.write("Traceback (most recent call last):\\n  File x\\nRuntimeError: CUDA error: boom\\n")
        sys.exit(3)
    if MODE == "error":
        sys.stderr.write("Traceback (most recent call last):\\ntorch.OutOfMemoryError: CUDA out of memory\\n")
        emit({{"event": "error", "message": "The GPU ran out of memory. Try 4-bit."}})
        sys.exit(2)
    before = {{"precision": 0.5, "recall": 0.25, "f1": 0.33, "n": 3}}
    emit({{"event": "eval", "phase": "before", "metrics": before}})
    stop = []
    if MODE in ("sleep", "stubborn") or (MODE == "graceful" and "--resume" not in args):
        if MODE == "stubborn":
            signal.signal(signal.SIGTERM, lambda *a: (sys.stderr.write("got SIGTERM, ignoring it\\n"),
                                                       sys.stderr.flush()))
        if MODE == "graceful":   # like the real trainer: finish the step, save a checkpoint, say so
            signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
        step = 0
        while True:
            if stop:
                emit({{"event": "error", "message": f"cancelled at step {{step}}; checkpoint saved",
                      "cancelled": True, "step": step, "checkpoint": "/runs/x/checkpoint-2", "out": "/runs/x"}})
                sys.exit(130)
            step += 1
            emit({{"event": "step", "step": step, "max_steps": 1000, "epoch": 0.01, "loss": 0.1, "reward": 0.5,
                  "rewards": {{"ict": 0.5, "oct": 0.5, "vlt": 0.5}}, "kl": 0.0, "completion_length": 9.0,
                  "eta_s": 999.0}})
            time.sleep(0.05)
    for step, (loss, ict, oct, vlt) in enumerate([(0.05, 0.2, None, 0.1), (0.04, 0.5, 0.3, 0.2),
                                                  (0.03, 0.8, 0.6, 0.4)], start=1):
        emit({{"event": "step", "step": step, "max_steps": 3, "epoch": step / 3, "loss": loss, "reward": ict,
              "rewards": {{"ict": ict, "oct": oct, "vlt": vlt}}, "kl": 0.01, "completion_length": 20.0,
              "eta_s": 3.0 - step}})
    flagged = MODE == "flagged"
    after = {{"precision": 0.9, "recall": 0.2 if flagged else 0.75, "f1": 0.5, "n": 3}}
    emit({{"event": "eval", "phase": "after", "metrics": after}})
    name = opt("--name", "family")
    path = os.path.join(os.path.dirname(ARGS_LOG), "adapters", name)
    os.makedirs(path, exist_ok=True)
    open(os.path.join(path, "adapter_model.safetensors"), "wb").close()
    from repic_desktop.core.library import Library
    with Library(opt("--library")) as lib:   # what the real trainer does: register the adapter
        lib.adapters.register(name, path, base_model=opt("--base"),
                              manifest={{"before": before, "after": after, "flagged": flagged}})
    emit({{"event": "done", "adapter": name, "path": path, "improved": not flagged, "flagged": flagged,
          "before": before, "after": after}})
    if MODE == "done_then_fail":   # e.g. killed while exiting: the adapter is registered all the same
        sys.exit(1)
''')


@pytest.fixture(autouse=True)
def base_model_downloaded(monkeypatch, tmp_path):
    """These tests run a fake trainer: the hub base model counts as downloaded (the page's Download row,
    for a model that is not, has its own tests in test_first_hour.py)."""
    from repic_desktop.captioning import model_manager as mm

    real = mm.resolve_local
    monkeypatch.setattr(mm, "resolve_local", lambda source, **kw: (tmp_path, None) if source == BASE
                        else real(source, **kw))


@pytest.fixture
def settings_dir(tmp_path, monkeypatch):
    d = tmp_path / "config"
    monkeypatch.setenv("REPIC_CONFIG_DIR", str(d))
    s = Settings()
    s.model.source = BASE
    s.save()
    return d


@pytest.fixture
def tagged_library(imported_library):
    lib = imported_library
    lib.concepts.add("Anya", "person")
    lib.concepts.add("Rex", "pet")
    lib.concepts.add("Nobody", "person")          # no photos: offered, but not checked
    photos = lib.photos.list()
    for p in photos[:5]:
        lib.concepts.tag(p.id, "Anya")
    for p in photos[3:6]:
        lib.concepts.tag(p.id, "Rex")
    lib.concepts.tag(photos[8].id, "Rex", source="detected")   # a suggestion, not a confirmed tag: not counted
    return lib


@pytest.fixture
def fake_trainer(tmp_path):
    def make(mode: str = "ok"):
        script = tmp_path / f"fake_trainer_{mode}.py"
        args_log = tmp_path / "trainer_args.jsonl"
        script.write_text(FAKE.format(mode=mode, args_log=str(args_log)))
        return [sys.executable, str(script)], args_log
    return make


def calls(args_log) -> list[list[str]]:
    return [json.loads(line) for line in args_log.read_text().splitlines()] if args_log.exists() else []


def make_page(qtbot, lib, command) -> PersonalizePage:
    page = PersonalizePage(lib, trainer_command=command)
    qtbot.addWidget(page)
    page.resize(1300, 820)
    page.show()
    return page


def run_to_end(qtbot, page: PersonalizePage) -> None:
    assert page.start()
    assert page.is_running() and page.cancel_btn.isEnabled() and not page.start_btn.isEnabled()
    qtbot.waitUntil(lambda: not page.is_running() and not page.cancel_btn.isEnabled(), timeout=20_000)


def test_a_successful_run(tagged_library, settings_dir, fake_trainer, qtbot):
    command, args_log = fake_trainer("ok")
    page = make_page(qtbot, tagged_library, command)
    rows = [page.concept_list.item(i).text() for i in range(page.concept_list.count())]
    assert rows == ["Anya  ·  5 photos", "Rex  ·  3 photos", "Nobody  ·  0 photos"]
    assert page.selected_concepts() == ["Anya", "Rex"]
    assert page.base_combo.currentText() == BASE                      # the settings' model source
    # the summary comes from `trainer dataset --json` (pretty-printed) for the checked concepts
    qtbot.waitUntil(lambda: "held out" in page.summary_label.text(), timeout=15_000)
    assert "<b>7</b> training examples, <b>3</b> photos held out to test" in page.summary_label.text()
    assert calls(args_log)[0] == ["dataset", f"--library={tagged_library.path}", "--concepts=Anya,Rex", "--json"]
    assert "Rex has few photos" in page.summary_label.text()

    page.steps_spin.setValue(3)
    page.quant_check.setChecked(True)
    page.name_edit.setText("family")
    run_to_end(qtbot, page)

    train = calls(args_log)[-1]
    assert train == [f"--library={tagged_library.path}", f"--base={BASE}", "--concepts=Anya,Rex",
                     "--name=family", "--quant=4bit", "--max-steps=3", "--json-progress"]
    # curves: one point per step; a task missing from a step is a gap, not a zero
    assert page.reward_chart.get("ict").xs == [1, 2, 3] and page.reward_chart.get("ict").ys == [0.2, 0.5, 0.8]
    assert page.reward_chart.get("oct").ys == [None, 0.3, 0.6]
    assert page.loss_chart.get("loss").ys == [0.05, 0.04, 0.03]
    assert page.bar.maximum() == 3 and page.bar.value() == 3
    assert "Anya" in page.summary_label.text() and "<b>7</b>" in page.summary_label.text()
    # result
    assert page.metric_labels[("before", "recall")].text() == "25%"
    assert page.metric_labels[("after", "recall")].text() == "75%"
    assert "25% → 75%" in page.verdict.text() and "3 held-out photos" in page.verdict.text()
    assert page.status_label.text() == "Done." and not page.error_box.isVisible()
    assert "a library warning on stdout" in page.log_view.toPlainText()
    assert page.use_btn.isEnabled() and not page.use_anyway_btn.isVisible()
    assert page.start_btn.isEnabled()                                  # ready for another run

    activated = []
    page.adapter_activated.connect(activated.append)
    page.use_btn.click()
    s = Settings.load()
    path = str(settings_dir.parent / "adapters" / "family")
    assert (s.active_adapter(tagged_library), s.model.source) == (path, BASE)   # this library's adapter
    assert s.model.adapter is None                                     # not a global one
    assert activated == [path] and not page.use_btn.isEnabled()
    item = page.adapter_list.topLevelItem(0)
    assert item.text(0) == "family" and item.text(2) == "25% → 75%" and item.text(3) == "33% → 50%"
    assert item.text(5) == "✓ in use"

    page.no_adapter_btn.click()
    assert Settings.load().active_adapter(tagged_library) is None
    assert page.adapter_list.topLevelItem(0).text(5) == ""


def test_a_flagged_adapter_needs_use_anyway(tagged_library, settings_dir, fake_trainer, qtbot, monkeypatch):
    command, _ = fake_trainer("flagged")
    page = make_page(qtbot, tagged_library, command)
    run_to_end(qtbot, page)
    assert page.metric_labels[("after", "recall")].text() == "20%"
    assert "not better than the base model" in page.verdict.text()
    assert page.status_label.text() == "Done, but the new adapter is not better than the base model."
    assert not page.use_btn.isEnabled() and page.use_anyway_btn.isVisible()
    assert page.adapter_list.topLevelItem(0).text(5) == "⚠ not better"
    answers = []
    monkeypatch.setattr(personalize, "ask", lambda *a, **k: answers.pop(0))
    answers.append(False)
    page.use_anyway_btn.click()
    assert Settings.load().active_adapter(tagged_library) is None      # declined: nothing changed
    answers.append(True)
    page.use_anyway_btn.click()
    assert Settings.load().active_adapter(tagged_library).endswith(os.path.join("adapters", "family"))
    assert not answers


def test_a_done_event_wins_over_a_failing_exit_code(tagged_library, settings_dir, fake_trainer, qtbot):
    command, _ = fake_trainer("done_then_fail")
    page = make_page(qtbot, tagged_library, command)
    page.name_edit.setText("family")
    run_to_end(qtbot, page)
    assert page.proc.exitCode() == 1
    assert page.status_label.text() == "Done." and not page.error_box.isVisible()
    assert page.adapter_list.topLevelItem(0) is not None


@pytest.mark.parametrize("mode, message, tail", [
    ("error", "The GPU ran out of memory. Try 4-bit.", "torch.OutOfMemoryError: CUDA out of memory"),
    ("crash", "The trainer stopped with exit code 3.", "RuntimeError: CUDA error: boom"),
])
def test_errors_from_the_child_are_shown_and_the_page_stays_usable(tagged_library, settings_dir, fake_trainer,
                                                                   qtbot, mode, message, tail):
    command, args_log = fake_trainer(mode)
    page = make_page(qtbot, tagged_library, command)
    run_to_end(qtbot, page)
    assert page.error_box.isVisible()
    assert page.error_label.text() == message
    assert tail in page.error_details.toPlainText()
    assert page.status_label.text() == "Training failed"
    assert not page.use_btn.isEnabled()
    assert "held out" in page.summary_label.text()                  # what arrived before the failure stays
    assert page.start_btn.isEnabled() and page.concept_list.isEnabled()
    n = len(calls(args_log))
    run_to_end(qtbot, page)                                          # and it can run again
    assert len(calls(args_log)) == n + 1


def test_a_trainer_that_cannot_start(tagged_library, settings_dir, tmp_path, qtbot):
    page = make_page(qtbot, tagged_library, [str(tmp_path / "no-such-python")])
    assert page.start()
    qtbot.waitUntil(lambda: page.error_box.isVisible(), timeout=10_000)
    assert page.status_label.text() == "The trainer could not start"
    assert not page.is_running() and page.start_btn.isEnabled()


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_cancel_terminates_the_child(tagged_library, settings_dir, fake_trainer, qtbot):
    command, _ = fake_trainer("sleep")
    page = make_page(qtbot, tagged_library, command)
    assert page.start()
    qtbot.waitUntil(lambda: len(page.reward_chart.get("ict").xs) >= 2, timeout=15_000)
    assert "left" in page.eta_label.text()
    pid = page.proc.processId()
    page.cancel_btn.click()
    assert page.status_label.text() == "Stopping after the current step…"
    qtbot.waitUntil(lambda: not page.is_running(), timeout=10_000)
    assert page.proc.exitStatus() == QProcess.ExitStatus.CrashExit   # ended by the signal, not by itself
    assert _pid_gone(pid)
    assert page.status_label.text() == "Cancelled: no adapter was made."
    assert not page.error_box.isVisible() and page.start_btn.isEnabled()


def test_cancel_kills_a_child_that_ignores_sigterm(tagged_library, settings_dir, fake_trainer, qtbot):
    command, _ = fake_trainer("stubborn")
    page = make_page(qtbot, tagged_library, command)
    page.kill_timeout_ms = 300
    assert page.start()
    qtbot.waitUntil(lambda: len(page.loss_chart.get("loss").xs) >= 1, timeout=15_000)
    pid = page.proc.processId()
    page.cancel()
    qtbot.waitUntil(lambda: not page.is_running(), timeout=10_000)
    assert "got SIGTERM, ignoring it" in page.log_view.toPlainText()   # asked first, then killed
    assert _pid_gone(pid)
    assert page.status_label.text() == "Cancelled: no adapter was made."


def test_stop_now_kills_at_once(tagged_library, settings_dir, fake_trainer, qtbot):
    command, _ = fake_trainer("stubborn")
    page = make_page(qtbot, tagged_library, command)
    assert page.kill_timeout_ms >= 60_000          # a real GRPO step can take a minute: no early kill
    assert page.start()
    qtbot.waitUntil(lambda: len(page.loss_chart.get("loss").xs) >= 1, timeout=15_000)
    page.cancel_btn.click()
    assert page.cancel_btn.text() == "Stop Now"
    qtbot.waitUntil(lambda: "got SIGTERM" in page.log_view.toPlainText(), timeout=10_000)
    assert page.is_running()
    page.cancel_btn.click()
    qtbot.waitUntil(lambda: not page.is_running(), timeout=5_000)
    assert page.cancel_btn.text() == "Cancel" and page.start_btn.isEnabled()


def test_a_graceful_cancel_can_be_resumed(tagged_library, settings_dir, fake_trainer, qtbot):
    command, args_log = fake_trainer("graceful")
    page = make_page(qtbot, tagged_library, command)
    page.name_edit.setText("family")
    assert page.start()
    qtbot.waitUntil(lambda: len(page.loss_chart.get("loss").xs) >= 2, timeout=15_000)
    page.cancel()
    qtbot.waitUntil(lambda: not page.is_running(), timeout=10_000)
    assert page.proc.exitCode() == 130
    assert page.status_label.text().startswith("Cancelled at step ")
    assert "checkpoint was saved" in page.status_label.text()
    assert not page.error_box.isVisible()           # a cancel is not a failure
    assert page.resume_btn.isVisible() and page.resume_btn.isEnabled()
    first = calls(args_log)[-1]
    page.resume_btn.click()
    qtbot.waitUntil(lambda: not page.is_running() and page.progress.done is not None, timeout=15_000)
    resumed = calls(args_log)[-1]
    assert resumed == first[:-1] + ["--out=/runs/x", "--resume", "--json-progress"]
    assert page.status_label.text() == "Done." and not page.resume_btn.isVisible()


def test_the_dataset_summary_shows_the_trainers_error(tagged_library, settings_dir, fake_trainer, qtbot):
    command, _ = fake_trainer("dataset_error")
    page = make_page(qtbot, tagged_library, command)
    qtbot.waitUntil(lambda: "not available" in page.summary_label.text(), timeout=15_000)
    assert "nobody is tagged in any photo yet" in page.summary_label.text()


def test_the_real_trainer_dataset_summary(imported_library, settings_dir, qtbot):
    """The one test against the real `python -m trainer dataset --json` (no model needed)."""
    lib = imported_library
    photos = lib.photos.list()
    for name, kind, ids in (("Anya", "person", range(0, 6)), ("Rex", "pet", range(5, 11))):
        lib.concepts.add(name, kind)
        lib.concepts.add_ref(name, photo_id=photos[ids[0]].id)
        for i in ids[1:]:
            lib.concepts.tag(photos[i].id, name)
    page = make_page(qtbot, lib, None)
    assert page.trainer_command == [sys.executable, "-m", "trainer"]
    qtbot.waitUntil(lambda: "held out" in page.summary_label.text() or "not available" in page.summary_label.text(),
                    timeout=30_000)
    text = page.summary_label.text()
    assert "photos held out to test" in text, text
    assert "Anya" in text and "Rex" in text and "draw a few to also train localization" in text
    assert page.summary["train"] > 0 and set(page.summary["tasks"]) == {"ict", "oct", "vlt"}


def test_closing_the_window_while_training_asks_first(tagged_library, settings_dir, fake_trainer, make_window,
                                                      qtbot, monkeypatch):
    win = make_window(tagged_library)
    win.act_personalize.trigger()
    assert win.current_page() == "personalize" and win.act_page_personalize.isChecked()
    page = win.personalize
    page.trainer_command, _ = fake_trainer("sleep")
    assert page.start()
    qtbot.waitUntil(lambda: len(page.loss_chart.get("loss").xs) >= 1, timeout=15_000)
    questions = []
    monkeypatch.setattr(personalize, "ask", lambda *a, **k: questions.append(a[1]) or False)
    assert not win.close()
    assert questions == ["Training is running"] and win.isVisible() and page.is_running()
    monkeypatch.setattr(personalize, "ask", lambda *a, **k: questions.append(a[1]) or True)
    pid = page.proc.processId()
    assert not win.close()                       # the window stays responsive while the child stops...
    assert not win.close() and len(questions) == 2   # (asked once per close, not again while stopping)
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=10_000)   # ...and closes once it has
    assert not page.is_running() and _pid_gone(pid)


def test_line_chart_draws_its_series():
    chart = LineChart("Reward", x_label="step", y_range=(0.0, 1.0))
    chart.add_series("ict", "#ff0000")
    chart.resize(400, 240)

    def red_pixels() -> int:
        img = QImage(chart.size(), QImage.Format.Format_ARGB32)
        img.fill(QColor("white"))
        chart.render(img)
        return sum(1 for y in range(0, img.height(), 2) for x in range(60, img.width(), 2)
                   if (c := img.pixelColor(x, y)).red() > 200 and c.green() < 80 and c.blue() < 80)

    empty = red_pixels()                          # only the legend swatch (at the left, x < 60) is red
    for x, y in [(1, 0.1), (2, 0.4), (3, None), (4, 0.9), (5, 0.7)]:
        chart.append("ict", x, y)
    drawn = red_pixels()
    assert empty == 0 and drawn > 40


def test_tick_labels_stay_readable_near_zero():
    """A GRPO loss hovers around 1e-9 on the demo model: every tick printed "-0.0000" before."""
    from repic_desktop.gui.widgets.charts import nice_ticks, tick_label

    def labels(lo, hi):
        t = nice_ticks(lo, hi, 4)
        return [tick_label(v, t[1] - t[0]) for v in t]

    assert labels(-3e-9, 1e-10) == ["-3e-09", "-2e-09", "-1e-09", "0"]
    assert labels(0.0, 1.0) == ["0", "0.25", "0.50", "0.75", "1.00"]
    assert labels(0.01, 0.045) == ["0.01", "0.02", "0.03", "0.04"]
    assert len(set(labels(-2e-5, 5e-5))) == len(labels(-2e-5, 5e-5))


def test_people_and_personalize_count_the_photos_the_trainer_learns_from(imported_library, make_window,
                                                                          settings_dir):
    """Issue #14: a named face group's photos were all references; the People page counted 4 photos of
    someone the trainer found 0 of. Every list counts what the trainer counts (reference photos are not
    training photos), and says when a person's tagged photos are references only."""
    from repic_desktop.core.library import Box
    from repic_desktop.gui.pages.people_model import concept_meta
    from trainer.dataset import build_dataset

    lib = imported_library
    photos = lib.photos.list()
    lib.concepts.add("Grace", "person")
    lib.concepts.add("Solo", "person")
    for p in photos[:4]:                      # what naming a face group of 4 does: all tagged, the best a reference
        lib.concepts.tag(p.id, "Grace", box=Box(0, 0, 10, 10), source="suggestion")
    lib.concepts.add_ref("Grace", photo_id=photos[0].id, box=Box(0, 0, 10, 10))
    lib.concepts.tag(photos[5].id, "Solo")       # Solo's one tagged photo is Solo's reference
    lib.concepts.add_ref("Solo", photo_id=photos[5].id)
    trained = build_dataset(lib, ["Grace"]).summary()["photos"]["Grace"]
    assert trained["photos"] == 3

    win = make_window(lib)
    rows = {r["concept"].name: r for r in win.people.model.rows}
    assert rows["Grace"]["photos"] == trained["photos"]
    assert concept_meta(rows["Grace"]) == "3 photos  ·  1 reference"
    assert concept_meta(rows["Solo"]).startswith("0 photos (its one tagged photo is a reference)")
    win.people.select(lib.concepts.get("Grace").id)
    assert win.people.photos_btn.text() == "Show in Photos (4)"   # browsing shows every tagged photo
    page = win.personalize
    items = {page.concept_list.item(i).data(0x0100): page.concept_list.item(i) for i in range(page.concept_list.count())}
    assert items["Grace"].text() == "Grace  ·  3 photos"
    assert items["Solo"].text() == "Solo  ·  0 photos (only reference photos)"
    assert "reference photo" in items["Solo"].toolTip()
    assert page.selected_concepts() == ["Grace"]
    page.show_summary(build_dataset(lib, ["Grace"]).summary())   # what `repic-train dataset --json` prints
    assert "<th align='right' title='Photos to learn from (reference photos are not)'>Photos</th>" \
        in page.summary_label.text()
    assert "<tr><td>Grace</td><td align='right'>3</td>" in page.summary_label.text()


def test_the_real_trainer_runs_with_the_pages_defaults_on_photos_of_mixed_sizes(gui_library, tmp_path, monkeypatch,
                                                                               demo_model_dir, qtbot):
    """issue 14: GUI training could never succeed with the defaults a user gets (gradient accumulation 2
    on photos of different sizes crashed in get_rope_index). The real `python -m trainer` child, the demo
    model chosen as the model, every setting of the page left as it is except the step count (Auto
    means two epochs) and the group size (the issue's own `--num-generations 2`), which only make it fast."""
    from repic_desktop.core.scanner import scan_folder
    from tests.helpers.mixed_photos import make_mixed_size_photos

    monkeypatch.setenv("REPIC_CONFIG_DIR", str(tmp_path / "config"))
    s = Settings()
    s.model.source = str(demo_model_dir)          # what the welcome page's "demo model" choice stores
    s.save()
    photos = tmp_path / "photos"
    make_mixed_size_photos(photos)
    lib = gui_library
    scan_folder(lib, photos)
    ids = [p.id for p in sorted(lib.photos.list(), key=lambda p: p.filename)]
    lib.concepts.add("Anya", "person")
    lib.concepts.add_ref("Anya", photo_id=ids[0])
    lib.concepts.add("Bond", "pet")
    lib.concepts.add_ref("Bond", photo_id=ids[1])
    for i in (2, 3, 4, 5, 6):
        lib.concepts.tag(ids[i], "Anya")
    for i in (5, 6, 7, 8, 9, 10, 11):
        lib.concepts.tag(ids[i], "Bond")

    page = make_page(qtbot, lib, None)
    assert page.base_combo.currentText() == str(demo_model_dir)
    page.steps_spin.setValue(2)
    page.gens_spin.setValue(2)
    assert page.start()
    qtbot.waitUntil(lambda: not page.is_running(), timeout=300_000)
    log = page.log_view.toPlainText()
    assert page.progress.done, log[-3000:]
    assert page.status_label.text().startswith("Done") and not page.error_box.isVisible()
    assert "--max-steps=2" in log and "--num-generations=2" in log and "--grad-accum" not in log
    name = page.progress.done["adapter"]
    assert lib.adapters.get(name).path == page.progress.done["path"]


def test_quitting_while_the_dataset_count_runs_stops_it_cleanly(tagged_library, settings_dir, qtbot, monkeypatch):
    """`repic gui --screenshot … --page personalize` quit while the count's child ran: the QProcess, destroyed
    running, still emitted output/finished into a half-deleted page ("Internal C++ object already deleted")."""
    from PySide6.QtCore import QObject, QProcess, Signal

    from repic_desktop.gui.pages import personalize

    class App(QObject):  # only the page hears this quit (the real signal would also stop other tests' workers)
        aboutToQuit = Signal()

    app = App()
    monkeypatch.setattr(personalize, "QCoreApplication", type("Core", (), {"instance": staticmethod(lambda: app)}))
    slow = [sys.executable, "-c", "import time; time.sleep(60)"]
    page = make_page(qtbot, tagged_library, slow)
    qtbot.waitUntil(lambda: page._summary_proc is not None
                    and page._summary_proc.state() == QProcess.ProcessState.Running, timeout=10_000)
    proc = page._summary_proc
    app.aboutToQuit.emit()
    assert page._summary_proc is None and proc.state() == QProcess.ProcessState.NotRunning

"""The trainer's JSON-lines progress stream, read the way QProcess delivers it: in arbitrary chunks, with
noise from libraries, half-written lines, split UTF-8 characters and events this version does not know."""
from __future__ import annotations

import json
import sys

import pytest

from repic_desktop.gui.pages.training_stream import (
    LineSplitter, TailBuffer, TrainingProgress, parse_progress_line, resume_arguments, summary_from_output,
    trainer_arguments,
)

SUMMARY = {"tasks": {"ict": 6, "oct": 2, "vlt": 4}, "concepts": {"Anya": {"ict": 3, "oct": 1, "vlt": 2},
                                                              "Zoë": {"ict": 3, "oct": 1, "vlt": 2}},
           "train": 8, "heldout": 2, "warnings": ["Zoë has only 2 photos"]}

STREAM = [
    {"event": "dataset", "summary": SUMMARY},
    {"event": "status", "message": "Loading the base model"},
    {"event": "eval", "phase": "before", "metrics": {"precision": 0.5, "recall": 0.25, "f1": 0.33, "n": 2}},
    {"event": "step", "step": 1, "max_steps": 3, "epoch": 0.3, "loss": 0.02, "reward": 0.4,
     "rewards": {"ict": 0.5, "oct": None, "vlt": 0.3}, "kl": 0.0, "completion_length": 20.0, "eta_s": 10.0},
    {"event": "step", "step": 2, "max_steps": 3, "epoch": 0.6, "loss": 0.01, "reward": 0.6,
     "rewards": {"ict": 0.7, "oct": 0.4, "vlt": None}, "kl": 0.01, "completion_length": 21.0, "eta_s": 5.0},
    {"event": "eval", "phase": "after", "metrics": {"precision": 0.9, "recall": 0.75, "f1": 0.82, "n": 2}},
    {"event": "done", "adapter": "family", "path": "/a/family", "improved": True, "flagged": False,
     "before": {"recall": 0.25}, "after": {"recall": 0.75}},
]


def _text() -> str:
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in STREAM)


def test_parse_progress_line_accepts_only_event_objects():
    assert parse_progress_line('{"event": "status", "message": "hi"}\n') == {"event": "status", "message": "hi"}
    assert parse_progress_line(b'  {"event":"error","message":"x"}  ') == {"event": "error", "message": "x"}
    for noise in ("", "   ", "Loading checkpoint shards: 100%|####|", "[1, 2]", '{"no_event": 1}',
                  '{"event": 3}', '{"event": "step", "step": 1', "null", "{not json}"):
        assert parse_progress_line(noise) is None, noise


@pytest.mark.parametrize("size", [1, 3, 7, 64, 100_000])
def test_chunked_stream_gives_the_same_events_as_whole_lines(size):
    data = _text().encode("utf-8")
    p = TrainingProgress()
    seen = []
    for i in range(0, len(data), size):   # size 1 also cuts "ë" (two UTF-8 bytes) in half
        seen += p.feed(data[i:i + size])
    seen += p.finish()
    assert seen == STREAM
    assert p.summary == SUMMARY and "Zoë" in p.summary["concepts"]
    assert [s.step for s in p.steps] == [1, 2]
    assert p.steps[0].rewards == {"ict": 0.5, "oct": None, "vlt": 0.3}
    assert p.steps[1].loss == 0.01 and p.max_steps == 3 and p.eta_s == 5.0
    assert p.before["recall"] == 0.25 and p.after["recall"] == 0.75     # the done event's copies
    assert p.done["adapter"] == "family" and p.error is None


def test_noise_unknown_events_and_bad_values_are_tolerated():
    p = TrainingProgress()
    text = ("Some library warning\n"
            '{"event": "hello_from_the_future", "x": 1}\n'
            '{"event": "eval", "phase": "sideways", "metrics": {}}\n'
            '{"event": "step", "step": 1, "loss": NaN, "rewards": {"ict": "high", "oct": true}}\r\n'
            '{"event": "step", "step": "two"}\n'
            '{"event": "error", "message": "CUDA out of memory"}')      # no final newline
    events = p.feed(text)
    assert [e["event"] for e in events] == ["step"]
    s = p.steps[0]
    assert s.loss is None and s.rewards == {"ict": None, "oct": None, "vlt": None}
    assert p.unknown == ["hello_from_the_future", "eval", "step"]    # malformed known events are skipped too
    assert list(p.noise) == ["Some library warning"]
    assert p.error is None                     # the last line is not complete yet
    assert [e["event"] for e in p.finish()] == ["error"]
    assert p.error == "CUDA out of memory"


def test_line_splitter_keeps_the_partial_tail():
    s = LineSplitter()
    assert s.feed(b'{"a":') == []
    assert s.feed(b' 1}\n{"b"') == ['{"a": 1}']
    assert s.feed(b": 2}") == []
    assert s.finish() == ['{"b": 2}']
    assert s.finish() == []


def test_tail_buffer_keeps_the_last_lines():
    t = TailBuffer(3)
    t.feed("".join(f"line {i}\n" for i in range(10)))
    t.feed("Traceback: boom")
    t.finish()
    assert t.text() == "line 8\nline 9\nTraceback: boom"


def test_summary_from_output_in_every_shape():
    assert summary_from_output(json.dumps(SUMMARY, indent=2)) == SUMMARY
    assert summary_from_output(json.dumps({"event": "dataset", "summary": SUMMARY})) == SUMMARY
    assert summary_from_output("warming up\n" + json.dumps({"event": "dataset", "summary": SUMMARY})) == SUMMARY
    assert summary_from_output("nothing here") is None


def test_trainer_arguments():
    assert trainer_arguments(base="Qwen/x") == ["--base=Qwen/x", "--json-progress"]
    args = trainer_arguments(base="/m", library="/l.sqlite", concepts=["Anya", "Rex"], name="fam", quant4=True,
                             max_steps=50, epochs=2, num_generations=4, seed=7)
    assert args == ["--library=/l.sqlite", "--base=/m", "--concepts=Anya,Rex", "--name=fam", "--quant=4bit",
                    "--max-steps=50", "--epochs=2", "--num-generations=4", "--seed=7", "--json-progress"]
    assert resume_arguments(args, "/runs/a") == args[:-1] + ["--out=/runs/a", "--resume", "--json-progress"]
    assert resume_arguments(["--base", "b", "--out", "/old", "--resume", "--json-progress"], "/new") == \
        ["--base", "b", "--out=/new", "--resume", "--json-progress"]
    assert resume_arguments(["--base=b", "--out=/old", "--resume", "--json-progress"], "/new") == \
        ["--base=b", "--out=/new", "--resume", "--json-progress"]
    with pytest.raises(ValueError, match="comma"):
        trainer_arguments(base="/m", concepts=["Smith, Anna"])


def test_values_that_look_like_options_stay_values():
    """A name or folder starting with '-' reaches the trainer's parser as a value (no option injection)."""
    from trainer.__main__ import _train_parser

    args = trainer_arguments(base="-m", library="-lib.sqlite", concepts=["-all=", "--help"], out="-runs",
                             name="--resume")
    ns = _train_parser().parse_args(args)
    assert (ns.base, ns.library, ns.concepts, ns.out, ns.name, ns.resume) == \
        ("-m", "-lib.sqlite", "-all=,--help", "-runs", "--resume", False)


def test_the_module_does_not_import_qt():
    import subprocess

    code = ("import sys, repic_desktop.gui.pages.training_stream; "
            "sys.exit(1 if any(m.startswith('PySide6') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0

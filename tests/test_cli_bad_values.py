"""Every option (and positional) of every command given a bad value: negative, zero, huge, inf/NaN, wrong
type, control characters, empty. The parsers of `repic` and `repic-train` are walked, so a new option is
fuzzed without touching this file (it then needs a row in BASE only when its command is new).

Each case runs in-process on a fresh copy of a small library (17 tiny photos, 3 concepts with references)
and must end in a one-line user error (exit 1, `repic: error: ...`) or an argparse usage error (exit 2),
never a traceback or a hang, and must leave every table's row count, the library's files and the settings
as they were. A value the option legitimately takes is listed in ACCEPTED with the reason. (`repic-train`
itself prints progress lines on stderr before a problem only the data reveals; those lines are allowed.)

Nothing loads a real model: model loading is replaced by a sentinel, so a value that reaches it counts as
accepted (`caption` and training validate everything before they load)."""
from __future__ import annotations

import argparse
import shutil
import signal
import sqlite3
from pathlib import Path

import pytest

from repic_desktop.cli import app as repic_cli
from repic_desktop.core import arg_types as cli_types
from trainer import __main__ as train_cli

BAD_VALUES = {
    "negative": "-1",
    "zero": "0",
    "huge": str(10 ** 30),
    "huge-float": "1e12",
    "inf": "inf",
    "nan": "nan",
    "word": "abc",
    "digit-like": "\u00b2",  # str.isdigit() is true, int() refuses it
    "escape": "\x1b[2J",
    "newline": "a\nb",
    "tab": "\t",
    "empty": "",
}
TEXTISH = {"negative", "zero", "huge", "huge-float", "inf", "nan", "word", "digit-like"}  # printable, one line
CASE_TIMEOUT_S = 30
TRAIN_PROGRESS = ("Building the training data", "dataset: ", "Loading the base model")

# Options not fuzzed, and why.
SKIPPED_OPTIONS = {
    "--library": "the harness's own pointer to the library; any path names a (new) library, by design",
    "--help": "no value", "--version": "no value",
}
SKIPPED_COMMANDS = {
    ("repic", "gui"): "opens the Qt app and its event loop, not an in-process command; --page is a choices "
                      "list (argparse checks it), --screenshot an output path",
}


# ---- walking the parsers -------------------------------------------------------------------------------

def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...]):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for a in subs:
        for name, sp in a.choices.items():
            yield from _leaves(sp, path + (name,))


def _parsers():
    yield from ((("repic",) + path, p) for path, p in _leaves(repic_cli.build_parser(), ()))
    yield ("repic-train",), train_cli._train_parser()
    yield ("repic-train", "dataset"), train_cli._dataset_parser()
    yield from ((("repic-train", "adapters") + path, p) for path, p in _leaves(train_cli._adapters_parser(), ()))


def _takes_value(action: argparse.Action) -> bool:
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
        return False
    if action.nargs == 0:
        return False
    return True


def _cases():
    for cmd, parser in _parsers():
        if cmd[:2] in SKIPPED_COMMANDS:
            continue
        for action in parser._actions:
            if not _takes_value(action):
                continue
            opt = action.option_strings[-1] if action.option_strings else action.dest
            if opt in SKIPPED_OPTIONS:
                continue
            for kind, value in BAD_VALUES.items():
                yield pytest.param(cmd, opt, parser, action, kind, value, id=f"{' '.join(cmd)}|{opt}|{kind}")


# ---- what a command needs besides the fuzzed option -------------------------------------------------------
# {DEMO}: the demo model folder; {WORK}: the case's folder. Options here are dropped when they are fuzzed.

BASE = {
    ("repic", "status"): [],
    ("repic", "import"): ["{WORK}/photos"],
    ("repic", "photos", "list"): [],
    ("repic", "photo", "show"): ["1"],
    ("repic", "photo", "tag"): ["1", "Anya"],
    ("repic", "photo", "untag"): ["4", "Anya"],
    ("repic", "concept", "add"): ["Dora", "--kind", "person"],
    ("repic", "concept", "list"): [],
    ("repic", "concept", "show"): ["Anya"],
    ("repic", "concept", "rename"): ["Anya", "Anja"],
    ("repic", "concept", "edit"): ["Anya", "--info", "x"],
    ("repic", "concept", "remove"): ["Anya"],
    ("repic", "concept", "merge"): ["Anya", "Bond"],
    ("repic", "concept", "add-ref"): ["Anya", "2"],
    ("repic", "concept", "remove-ref"): ["Anya", "1"],
    ("repic", "concept", "import-repic"): ["{WORK}/database.json"],
    ("repic", "concept", "export-repic"): ["{WORK}/out/database.json"],
    ("repic", "demo-model"): ["{WORK}/demo"],
    ("repic", "prompt"): ["1"],
    ("repic", "caption"): ["1", "--model", "{DEMO}", "--max-new-tokens", "2"],
    ("repic", "serve"): ["--model", "{DEMO}", "--device", "cpu"],
    ("repic", "server", "test"): ["http://127.0.0.1:9", "--model", "{DEMO}"],
    ("repic", "server", "set-key"): ["http://127.0.0.1:9", "--stdin"],
    ("repic", "jobs", "list"): [],
    ("repic", "jobs", "cancel"): ["1"],
    ("repic", "jobs", "remove"): ["1"],
    ("repic", "captions", "list"): ["1"],
    ("repic", "captions", "accept"): ["1"],
    ("repic", "captions", "edit"): ["1", "--text", "x"],
    ("repic", "captions", "revert"): ["1"],
    ("repic", "eval"): [],
    ("repic", "model", "download"): [],
    ("repic", "model", "list"): [],
    ("repic", "model", "set"): [],
    ("repic", "export"): ["1", "--dry-run"],
    ("repic", "metadata", "show"): ["1"],
    ("repic", "metadata", "read"): ["1"],
    ("repic", "metadata", "fields"): [],
    ("repic", "suggest"): ["1"],
    ("repic", "index"): [],
    ("repic", "faces", "clusters"): [],
    ("repic", "faces", "name"): ["1", "Dora"],
    ("repic", "faces", "ignore"): ["1"],
    ("repic", "faces", "ignored"): [],
    ("repic", "faces", "unignore"): ["1"],
    ("repic-train",): ["--base", "{DEMO}", "--concepts", "Anya,Bond", "--device", "cpu", "--max-steps", "1",
                       "--num-generations", "2", "--skip-eval"],
    ("repic-train", "dataset"): [],
    ("repic-train", "adapters", "list"): [],
    ("repic-train", "adapters", "activate"): ["nope"],
    ("repic-train", "adapters", "remove"): ["nope"],
    ("repic-train", "adapters", "export"): ["nope", "{WORK}/exported"],
    ("repic-train", "adapters", "merge"): ["nope", "{WORK}/merged"],
}

# (command, option) -> (value kinds legitimately accepted, why). Anything else must be refused.
_HUB_ID_OR_PATH = (TEXTISH, "a hub id, folder or name: '0', 'inf' or 'abc' are all well-formed; whether it exists is "
                             "checked where it is used (loading fails with a one-line error)")
_FREE_TEXT = (TEXTISH, "free text: any printable line is a valid request or info (control characters are refused)")
ACCEPTED: dict[tuple[tuple[str, ...], str], tuple[set[str], str]] = {
    (("repic", "caption"), "--model"): _HUB_ID_OR_PATH,
    (("repic", "serve"), "--model"): _HUB_ID_OR_PATH,
    (("repic", "serve"), "--served-model-name"): (TEXTISH, "any printable name: clients ask for it as given"),
    (("repic", "serve"), "--host"): ({"zero", "negative", "huge", "huge-float", "inf", "nan", "word"},
                                     "a host name or address; whether it can be bound is uvicorn's to say"),
    (("repic", "caption"), "--adapter"): _HUB_ID_OR_PATH,
    (("repic", "caption"), "--request"): _FREE_TEXT,
    (("repic", "prompt"), "--request"): _FREE_TEXT,
    (("repic", "captions", "edit"), "--text"): (TEXTISH, "free text: any printable line is a valid caption"),
    (("repic", "caption"), "--min-new-tokens"): ({"zero"}, "0 is no minimum, the default"),
    (("repic", "photos", "list"), "--offset"): ({"zero"}, "0 is the first photo, the default"),
    (("repic", "concept", "add"), "--info"): (TEXTISH | {"empty"}, "free text; empty is no info line"),
    (("repic", "concept", "edit"), "--info"): (TEXTISH | {"empty"}, "free text; empty clears the info line"),
    (("repic", "concept", "export-repic"), "--images-dir"): (TEXTISH, "a folder name (relative to the working folder)"),
    (("repic", "photos", "list"), "--search"): (TEXTISH | {"empty"}, "a read-only filter: any printable text is a "
                                                                      "search (empty matches every caption)"),
    (("repic", "model", "list"), "--cache-dir"): (TEXTISH, "a folder name; a missing folder lists nothing"),
    (("repic", "model", "set"), "--source"): _HUB_ID_OR_PATH,
    (("repic", "model", "set"), "--revision"): (TEXTISH, "a branch, tag or commit name, checked when downloading"),
    (("repic", "model", "set"), "--adapter"): _HUB_ID_OR_PATH,
    (("repic", "model", "set"), "--cache-dir"): (TEXTISH, "a folder name (created when a model is downloaded)"),
    (("repic-train",), "--base"): _HUB_ID_OR_PATH,
    (("repic-train",), "--revision"): (TEXTISH, "a branch, tag or commit name of the base model"),
    (("repic-train",), "--out"): (TEXTISH, "a new run folder (relative to the working folder)"),
    (("repic-train",), "--name"): (TEXTISH, "an adapter name: letters, digits, '.', '-' are allowed"),
    (("repic-train",), "--max-steps"): ({"negative"}, "-1 means: train for --epochs (the default)"),
    (("repic-train",), "--seed"): ({"zero"}, "0 is a valid seed"),
    (("repic-train",), "--data-seed"): ({"zero"}, "0 is a valid seed"),
    (("repic-train", "dataset"), "--data-seed"): ({"zero"}, "0 is a valid seed"),
    (("repic-train",), "--beta"): ({"zero"}, "no KL penalty (TRL's beta=0: no reference model)"),
    (("repic-train",), "--heldout-fraction"): ({"zero"}, "no held-out split (trainer/dataset.py supports it)"),
}


def _accepted(cmd, action, opt) -> set[str]:
    if not action.option_strings and action.type in (None, str, cli_types.text, cli_types.nonempty_text,
                                                     cli_types.nonempty_path):
        # a name, photo path or file path given as a positional: any printable text may be one ('0', 'inf'
        # and '-1' are valid names and file names); control characters and empty must still be refused
        return TEXTISH
    return ACCEPTED.get((cmd, opt), (set(), ""))[0]


# ---- the library each case starts from -------------------------------------------------------------------

@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A prepared work folder; each case gets an exact copy at the same path (photo paths are absolute)."""
    from tests.helpers.trainer_library import make_library

    base = tmp_path_factory.mktemp("fuzz")
    work = base / "work"
    make_library(work)
    (work / "database.json").write_text('{"concept_dict": {}}', encoding="utf-8")
    saved = base / "pristine"
    shutil.copytree(work, saved, symlinks=True)
    return work, saved


class _Timeout(BaseException):
    pass


class _ReachedModelLoad(Exception):
    """Raised instead of loading a model: the value got past every check."""


def _snapshot(work: Path, config: Path) -> dict:
    con = sqlite3.connect(f"file:{work / 'lib.sqlite'}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                            "AND name NOT LIKE 'sqlite_%'")]
        rows = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        con.close()
    files = sorted((str(p.relative_to(work)), p.stat().st_size) for p in work.rglob("*")
                   if p.is_file() and not p.name.endswith(("-wal", "-shm", "-journal")))
    settings = sorted((str(p.relative_to(config)), p.read_bytes()) for p in config.rglob("*") if p.is_file())
    return {"rows": rows, "files": files, "settings": settings}


def _run(cmd, argv, capsys) -> tuple[int, str, str, bool]:
    def alarm(signum, frame):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT_S)
    reached = False
    try:
        if cmd[0] == "repic":
            code = repic_cli.main(argv)
        else:
            code = train_cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except _ReachedModelLoad:
        code, reached = 0, True
    except _Timeout:
        pytest.fail(f"no answer within {CASE_TIMEOUT_S} s")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    out, err = capsys.readouterr()
    if _ReachedModelLoad.__name__ in err:  # the trainer reports any exception as an error event
        code, reached = 0, True
    return code, out, err, reached


@pytest.mark.parametrize("cmd, opt, parser, action, kind, value", list(_cases()))
def test_bad_value(cmd, opt, parser, action, kind, value, pristine, demo_model_dir, tmp_path, monkeypatch, capsys):
    assert cmd in BASE, f"new command {' '.join(cmd)}: add what it needs to BASE"
    work, saved = pristine
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(saved, work, symlinks=True)
    config = tmp_path / "config"
    config.mkdir()
    monkeypatch.setenv("REPIC_CONFIG_DIR", str(config))
    monkeypatch.setenv("REPIC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("REPIC_LIBRARY", raising=False)
    monkeypatch.chdir(work)  # a relative path given as a value lands in the case's folder, which is compared

    def no_load(*a, **k):
        raise _ReachedModelLoad()

    import repic_desktop.captioning.models as models

    monkeypatch.setattr(models, "load_model", no_load)

    base = [a.replace("{WORK}", str(work)).replace("{DEMO}", str(demo_model_dir)) for a in BASE[cmd]]
    if action.option_strings:
        for o in action.option_strings:  # the fuzzed option replaces its BASE value
            while o in base:
                i = base.index(o)
                del base[i:i + 2]
        n = action.nargs if isinstance(action.nargs, int) else 1
        fuzz = [f"{opt}={value}"] if n == 1 else [opt] + [value] * n
    else:  # a positional: replaces its word in BASE (BASE lists positionals first, in order)
        slot = [a for a in parser._actions if not a.option_strings and _takes_value(a)].index(action)
        if slot < len(base) and not base[slot].startswith("--"):
            base = base[:slot] + [value] + base[slot + 1:]
        else:  # an optional positional (PHOTO ...) BASE leaves out
            base = base[:slot] + [value] + base[slot:]
        fuzz = []
    argv = ["--library", str(work / "lib.sqlite")] + list(cmd[1:]) + base + fuzz
    if cmd[0] == "repic-train" and len(cmd) > 1:  # `repic-train dataset --library P`
        argv = list(cmd[1:]) + ["--library", str(work / "lib.sqlite")] + base + fuzz
    before = _snapshot(work, config)

    code, out, err, reached = _run(cmd, argv, capsys)

    what = f"{' '.join(cmd)} {opt}={value!r}: exit {code}\nstdout: {out[-2000:]}\nstderr: {err[-3000:]}"
    assert "Traceback" not in err, what
    if code == 0:
        assert kind in _accepted(cmd, action, opt), "accepted a bad value: " + what
        return
    assert code in (1, 2), what
    if code == 1:
        prefix = f"{cmd[0]}: error:"
        lines = [ln for ln in err.splitlines() if ln.strip()]
        if cmd == ("repic-train",):  # training reports progress on stderr before the data reveals a problem
            lines = [ln for ln in lines if not ln.startswith(TRAIN_PROGRESS)]
        assert len(lines) == 1 and lines[0].startswith(prefix), what
    after = _snapshot(work, config)
    assert after == before, "a refused value changed the library: " + what

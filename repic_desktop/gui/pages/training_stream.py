"""The trainer's `--json-progress` stream, read without Qt: split chunks into lines, parse events, keep state.

Why it is a separate, Qt-free module:
- QProcess hands stdout over in arbitrary chunks (a JSON line can arrive in three pieces, a UTF-8
  character can be cut in two), so the line splitting must be testable on its own.
- The child also prints whatever its libraries print (warnings, progress bars that escaped to stdout);
  such noise, a half-written last line, or an event this version does not know must never break the page.
- `TrainingProgress` is the page's model of one run; the page only draws it.
"""
from __future__ import annotations

import codecs
import json
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

TASKS = ("ict", "oct", "vlt")
KNOWN_EVENTS = ("dataset", "status", "eval", "step", "done", "error")
MAX_LINE = 1 << 20  # a line longer than this is not one of ours: drop it instead of growing without bound


def parse_progress_line(line: str | bytes) -> dict | None:
    """One stdout line -> the event dict, or None for anything that is not a JSON object with an "event"."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
        return None
    return obj


class LineSplitter:
    """Bytes in, complete text lines out; the unfinished tail waits for the next chunk."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending = ""

    def feed(self, chunk: bytes | str) -> list[str]:
        text = self._decoder.decode(chunk) if isinstance(chunk, (bytes, bytearray, memoryview)) else chunk
        text = self._pending + text.replace("\r\n", "\n")
        *lines, self._pending = text.split("\n")
        if len(self._pending) > MAX_LINE:
            self._pending = ""
        return lines

    def finish(self) -> list[str]:
        """The last line when the process ended without a newline."""
        rest = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return [rest] if rest.strip() else []


class TailBuffer:
    """The last lines of a text stream (the child's stderr), for an error message's details."""

    def __init__(self, max_lines: int = 40) -> None:
        self._split = LineSplitter()
        self.lines: deque[str] = deque(maxlen=max_lines)

    def feed(self, chunk: bytes | str) -> list[str]:
        new = [ln for ln in self._split.feed(chunk) if ln.strip()]
        self.lines.extend(new)
        return new

    def finish(self) -> list[str]:
        new = self._split.finish()
        self.lines.extend(new)
        return new

    def text(self) -> str:
        return "\n".join(self.lines)


def _num(v: Any) -> float | None:
    """A finite number, or None (a null reward for a task absent from this batch, NaN from a bad step)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass
class StepPoint:
    step: int
    loss: float | None
    reward: float | None
    rewards: dict[str, float | None]


def step_point(ev: dict) -> StepPoint:
    rewards = ev.get("rewards") if isinstance(ev.get("rewards"), dict) else {}
    return StepPoint(ev["step"], _num(ev.get("loss")), _num(ev.get("reward")), {t: _num(rewards.get(t)) for t in TASKS})


@dataclass
class TrainingProgress:
    """Everything the stream told so far. `feed()` returns the events it applied, in order; one chunk can
    hold many events, so a caller drawing them reads each event, not the latest state."""

    summary: dict | None = None
    status: str = ""
    before: dict | None = None
    after: dict | None = None
    steps: list[StepPoint] = field(default_factory=list)
    max_steps: int | None = None
    epoch: float | None = None
    eta_s: float | None = None
    done: dict | None = None
    error: str | None = None
    error_event: dict | None = None     # with "cancelled": true when the trainer stopped on request
    noise: deque = field(default_factory=lambda: deque(maxlen=40))
    unknown: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._split = LineSplitter()

    def feed(self, chunk: bytes | str) -> list[dict]:
        return self._lines(self._split.feed(chunk))

    def finish(self) -> list[dict]:
        return self._lines(self._split.finish())

    def _lines(self, lines: list[str]) -> list[dict]:
        out = []
        for line in lines:
            ev = parse_progress_line(line)
            if ev is None:
                if line.strip():
                    self.noise.append(line.rstrip())
                continue
            if self.apply(ev):
                out.append(ev)
        return out

    def apply(self, ev: dict) -> bool:
        """Update the state from one event; False for an event this version does not understand."""
        kind = ev.get("event")
        if kind == "dataset" and isinstance(ev.get("summary"), dict):
            self.summary = ev["summary"]
        elif kind == "status":
            self.status = str(ev.get("message", ""))
        elif kind == "eval" and isinstance(ev.get("metrics"), dict):
            if ev.get("phase") == "before":
                self.before = ev["metrics"]
            elif ev.get("phase") == "after":
                self.after = ev["metrics"]
            else:
                return self._unknown(ev)
        elif kind == "step" and isinstance(ev.get("step"), int):
            self.steps.append(step_point(ev))
            if isinstance(ev.get("max_steps"), int) and ev["max_steps"] > 0:
                self.max_steps = ev["max_steps"]
            self.epoch = _num(ev.get("epoch"))
            self.eta_s = _num(ev.get("eta_s"))
        elif kind == "done":
            self.done = ev
            # The final event repeats the evaluation; it wins if the eval events were missed.
            if isinstance(ev.get("before"), dict):
                self.before = ev["before"]
            if isinstance(ev.get("after"), dict):
                self.after = ev["after"]
        elif kind == "error":
            self.error = str(ev.get("message") or "the trainer reported an error")
            self.error_event = ev
        else:
            return self._unknown(ev)
        return True

    def _unknown(self, ev: dict) -> bool:
        self.unknown.append(str(ev.get("event")))
        return False


def summary_from_output(text: str) -> dict | None:
    """The summary printed by `python -m trainer dataset --json`: one JSON document (maybe pretty-printed),
    either the summary itself or wrapped in a "dataset" event; or the event among other lines."""
    text = text.strip()
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        if obj.get("event") == "dataset" and isinstance(obj.get("summary"), dict):
            return obj["summary"]
        if "tasks" in obj or "concepts" in obj:
            return obj
    p = TrainingProgress()
    p.feed(text + "\n")
    return p.summary


def trainer_arguments(*, base: str, library: str | None = None, concepts: list[str] | None = None,
                      out: str | None = None, name: str | None = None, quant4: bool = False,
                      max_steps: int | None = None, epochs: int | None = None,
                      num_generations: int | None = None, seed: int | None = None, resume: bool = False) -> list[str]:
    """`python -m trainer` arguments for one run; options left None are the trainer's own defaults."""
    if concepts is not None and any("," in c for c in concepts):
        raise ValueError("a name with a comma cannot be passed to the trainer's --concepts list")
    # `--flag=value`, never two arguments: a value that starts with "-" (a name "-x", a folder "-runs")
    # is then still a value, not an option argparse would misread.
    args: list[str] = []
    if library:
        args.append(f"--library={library}")
    args.append(f"--base={base}")
    if concepts is not None:
        args.append(f"--concepts={','.join(concepts)}")
    if out:
        args.append(f"--out={out}")
    if name:
        args.append(f"--name={name}")
    if quant4:
        args.append("--quant=4bit")
    for flag, value in (("--max-steps", max_steps), ("--epochs", epochs), ("--num-generations", num_generations),
                        ("--seed", seed)):
        if value is not None:
            args.append(f"{flag}={value}")
    if resume:
        args.append("--resume")
    return args + ["--json-progress"]


def resume_arguments(args: list[str], out: str) -> list[str]:
    """The same run again, continued from its checkpoint in `out` (what a cancelled run reports)."""
    rest, i = [], 0
    while i < len(args):
        if args[i] == "--out":  # the two-argument form of older runs
            i += 2
            continue
        if args[i] not in ("--resume", "--json-progress") and not args[i].startswith("--out="):
            rest.append(args[i])
        i += 1
    return rest + [f"--out={out}", "--resume", "--json-progress"]


def metric_text(m: dict | None, key: str = "recall") -> str:
    v = _num(m.get(key)) if isinstance(m, dict) else None
    return "—" if v is None else f"{v:.0%}"


def duration_text(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"

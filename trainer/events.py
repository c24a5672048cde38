"""Progress and cancellation of a training run: JSON-lines (or human) events for the GUI and the CLI,
the TRL callback that reports each step and stops at the next one on a cancel, and the SIGTERM/SIGINT
flag behind that cancel."""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from repic_desktop.core.terminal import error_line

from .launch import world_size

class Events:
    """JSON lines on the real stdout (the GUI parses them); nothing else may go there, so in JSON mode
    sys.stdout is pointed at stderr for every library that prints."""

    def __init__(self, json_mode: bool, stream: TextIO | None = None):
        self.json_mode = json_mode
        self.stream = stream or sys.stdout
        self.enabled = is_main_process()  # under `accelerate launch` only rank 0 reports

    def emit(self, event: str, **data: Any) -> None:
        if not self.enabled:
            if event == "error":  # rank 0 reports; another rank's own error still belongs in the log
                print(error_line(f"[rank {os.environ.get('RANK')}] repic-train: error: {data.get('message')}"),
                      file=sys.stderr, flush=True)
            return
        if self.json_mode:
            self.stream.write(json.dumps({"event": event, **data}, ensure_ascii=False, allow_nan=False,
                                         default=_json_default) + "\n")
            self.stream.flush()
        else:
            print(_human(event, data), file=sys.stderr, flush=True)

    def status(self, message: str) -> None:
        self.emit("status", message=message)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _human(event: str, d: dict[str, Any]) -> str:
    if event == "status":
        return d["message"]
    if event == "step":
        return (f"step {d['step']}/{d['max_steps']}  loss {d['loss']}  reward {d['reward']}  "
                f"rewards {d['rewards']}  kl {d['kl']}  eta {d['eta_s']}s")
    if event == "eval":
        m = d["metrics"]
        return f"eval {d['phase']}: P {m['precision']:.3f} R {m['recall']:.3f} F1 {m['f1']:.3f} (n={m['n']})"
    if event == "dataset":
        return "dataset: " + json.dumps(d["summary"], ensure_ascii=False)
    if event == "done":
        return (f"saved adapter {d['adapter']} at {d['path']}" + ("  [FLAGGED: did not beat the base model on "
                                                                  "held-out photos]" if d["flagged"] else ""))
    if event == "error":
        return error_line("repic-train: error: " + d["message"])
    return f"{event}: {d}"


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) or math.isinf(v) else v


def _progress_callback(events: Events, cancel_flag: "CancelFlag"):
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        """One "step" event per logged optimizer step (logging_steps=1), and the stop-at-next-step
        cancellation: a signal only sets a flag; here training is told to save and stop."""

        def __init__(self):
            self.start = None
            self.start_step = 0

        def on_train_begin(self, args, state, control, **kw):
            self.start = time.monotonic()
            self.start_step = state.global_step

        def on_step_end(self, args, state, control, **kw):
            stop = cancel_flag.set
            if world_size() > 1:
                # every rank must stop at the same step (the save and the next step are collective): a
                # signal that reached one rank during the step stops them all here
                stop = _any_rank(stop, args.device)
                cancel_flag.set = cancel_flag.set or stop
            if stop:
                control.should_save = True
                control.should_training_stop = True
            return control

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "loss" not in logs or "reward" not in logs:
                return
            done = state.global_step - self.start_step
            elapsed = time.monotonic() - (self.start or time.monotonic())
            eta = elapsed / done * max(0, state.max_steps - state.global_step) if done > 0 else None
            events.emit("step", step=state.global_step, max_steps=state.max_steps, epoch=_num(state.epoch),
                        loss=_num(logs.get("loss")), reward=_num(logs.get("reward")),
                        rewards={t: _num(logs.get(f"rewards/{t}/mean")) for t in ("ict", "oct", "vlt")},
                        kl=_num(logs.get("kl")), completion_length=_num(logs.get("completions/mean_length")),
                        eta_s=None if eta is None else round(eta, 1))

    return ProgressCallback()


def _any_rank(flag: bool, device) -> bool:
    import torch
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


class Cancelled(Exception):
    """Raised between stages (and between held-out photos) once the cancel flag is set."""


class CancelFlag:
    """SIGTERM/SIGINT -> stop after the current step (or stage) and save a checkpoint. A second signal
    gets the handler that was there before (exit at once) for a user who really means it."""

    def __init__(self):
        self.set = False
        self._previous: dict[int, Any] = {}

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    def install(self) -> bool:
        """Route SIGTERM/SIGINT here. Idempotent: a second call keeps the first call's previous handlers
        (saving our own handler as "previous" would make the second signal a no-op). Returns whether
        this call installed it."""
        if self._previous:
            return False
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (tests calling train() from a worker)
                pass
        return bool(self._previous)

    def check(self) -> None:
        if self.set:
            raise Cancelled()

    def _handle(self, signum, frame) -> None:
        self.set = True
        for sig, prev in self._previous.items():
            signal.signal(sig, prev if prev is not None else signal.SIG_DFL)

    def restore(self) -> None:
        for sig, prev in self._previous.items():
            try:
                signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
            except ValueError:
                pass
        self._previous.clear()

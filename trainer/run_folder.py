"""A run's folder: its run_config.json (what a resume must reuse, and why a run ended), its checkpoints,
and the checks that keep a run from writing into a folder that is not its own."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from .config import TrainConfig, TrainError
from .events import _num, is_main_process

log = logging.getLogger("repic.trainer")

RUN_CONFIG = "run_config.json"
RUN_ENTRIES = ("adapter", "checkpoints", RUN_CONFIG)  # all a run folder ever holds
# Settings a resumed run takes from its run_config.json; these may be changed on --resume.
RESUME_MAY_CHANGE = ("epochs", "max_steps", "save_steps")


def _complete_checkpoint(p: Path) -> bool:
    """A checkpoint the trainer finished writing: its state and the adapter weights are there (a run
    killed while saving leaves a folder without them)."""
    return (p.is_dir() and p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()
            and (p / "adapter_model.safetensors").is_file())


def _latest_checkpoint(folder: Path) -> Path | None:
    cps = [p for p in folder.glob("checkpoint-*") if _complete_checkpoint(p)]
    return max(cps, key=lambda p: int(p.name.split("-")[-1])) if cps else None


def _check_out_folder(out: Path) -> None:
    """Refuse a folder that holds anything but a previous run: a run writes into it, and
    `adapters remove --delete-files` deletes what the run wrote."""
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out {out} is a file: choose a new or empty folder")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_ENTRIES)
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise TrainError(f"--out {out} is not empty and not a training run of repic-train (it holds {shown}): "
                             "choose a new or empty folder")


def _flag(key: str) -> str:
    return {"reward_fixes": "--reward-fix", "quant": "--quant", "base": "--base"}.get(key, "--" + key.replace("_", "-"))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return sorted(map(str, a or [])) == sorted(map(str, b or []))
    return a == b


def read_run_config(out: Path) -> dict[str, Any] | None:
    f = out / RUN_CONFIG
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrainError(f"cannot read {f}: {exc}") from exc


def apply_run_config(cfg: TrainConfig, rc: dict[str, Any]) -> TrainConfig:
    """The resumed run's settings come from its run_config.json; a setting the user gave that differs
    is an error naming the flag (only --max-steps, --epochs and --save-steps may change)."""
    from dataclasses import replace

    given = cfg.explicit
    stored = dict(rc.get("config") or {})
    stored["name"] = rc.get("name")
    stored["concepts"] = rc.get("concepts")
    changes: dict[str, Any] = {}
    for key, value in stored.items():
        if not hasattr(cfg, key):
            continue
        mine = getattr(cfg, key)
        is_given = (key in given) if given is not None else mine is not None
        if key in RESUME_MAY_CHANGE and is_given:
            continue
        if is_given and mine is not None and not _same(mine, value):
            raise TrainError(f"{_flag(key)} {mine!r} conflicts with the run being resumed ({value!r} in "
                             f"{RUN_CONFIG}): leave {_flag(key)} out to keep the run's setting")
        changes[key] = list(value) if isinstance(value, tuple) else value
    return replace(cfg, **changes)


def _finished_checkpoint(checkpoint: Path, cfg: TrainConfig) -> Path | None:
    """`checkpoint` when it already holds the run's last step, else None."""
    try:
        st = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    done, planned = int(st.get("global_step") or 0), int(st.get("max_steps") or 0)
    if not (cfg.max_steps and cfg.max_steps > 0) and _num(st.get("num_train_epochs")) not in (None, float(cfg.epochs)):
        return None  # --epochs changed: the trainer works out the new end
    target = cfg.max_steps if cfg.max_steps and cfg.max_steps > 0 else planned
    return checkpoint if target > 0 and done >= target else None


def _record_end(state: dict[str, Any], how: str, reason: str) -> None:
    """Note in the run's run_config.json why it ended without an adapter, for `adapters list` (only in
    a run folder this process started or resumed: never in someone else's)."""
    if not state.get("run_folder") or not is_main_process():
        return
    path = Path(state["run_folder"]) / RUN_CONFIG
    try:
        rc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rc, dict):
            return
        rc["ended"] = {"state": how, "reason": reason[:500], "step": state.get("step", 0),
                       "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        path.write_text(json.dumps(rc, indent=2, ensure_ascii=False), encoding="utf-8")
    except (OSError, ValueError) as exc:
        log.warning("could not record the end of the run in %s: %s", path, exc)

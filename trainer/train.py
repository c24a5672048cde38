"""GRPO + LoRA personalization on TRL, with RePIC's hyperparameters, evaluation, adapter saving and
registration, and JSON-lines progress for the GUI.

RePIC's recipe (reference/repic-method.md §3.1, §3.4) as TRL settings:
* LoRA r 64, alpha 128, dropout 0.05 on the language model's linear layers (q/k/v/o, gate/up/down);
  never the vision tower (Qwen2.5-VL's ViT also has gate/up/down_proj, so a plain name list would hit
  it: the targets are a regex under ``language_model``, and training refuses to start if any LoRA
  module lands under ``visual``). RePIC's auto-discovery also caught ``lm_head``; here that is opt-in
  (``lora_lm_head``): ~10 M more parameters and one more vocabulary-sized activation per token on the 7B, with
  no measured benefit (docs/training.md, Training settings).
* 8 generations per prompt, 2 prompts per optimizer step (per-device batch = G, gradient accumulation
  2), beta 0.04, epsilon 0.2, lr 1e-5 with linear decay and no warm-up, max grad norm 1.0, 2 epochs,
  sampling at temperature 1 with top-k 50 (transformers' GenerationConfig default, which RePIC's
  hard-coded sampling config inherited), max completion 256, ``loss_type="grpo"`` (per-sequence mean,
  then mean: RePIC's loss), rewards scaled by the group std.
* bf16 + gradient checkpointing on CUDA; fp32 without it (bf16 on a CPU is slower and changes results).
* Seeds 42 (model/sampler) and 2024 (data), like RePIC's launch script.

Deliberate differences: the prompts are the app's inference prompts (trainer/dataset.py), and images are
sized as at inference (no 512-px pre-resize of multi-image samples).
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, TextIO

from repic_desktop.core.cpu_threads import apply_cpu_thread_policy
from repic_desktop.core.terminal import error_line

from .dataset import BuiltDataset, DatasetError, HeldOut, build_dataset
from .launch import default_per_device_batch, world_size
from .rewards import FIXES
from repic_desktop.core.errors import RepicError

log = logging.getLogger("repic.trainer")

LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
LORA_TARGETS_WITH_HEAD = r"(.*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)|lm_head)"
ADAPTER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,63}$")
EXIT_CANCELLED = 130
LOSS_TYPE = "grpo"        # per-sequence mean, then mean: RePIC's loss
SCALE_REWARDS = "group"   # advantages divided by the group's reward std
RUN_CONFIG = "run_config.json"
RUN_ENTRIES = ("adapter", "checkpoints", RUN_CONFIG)  # all a run folder ever holds
# Settings a resumed run takes from its run_config.json; these may be changed on --resume.
RESUME_MAY_CHANGE = ("epochs", "max_steps", "save_steps")


class TrainError(RepicError, RuntimeError):
    """Training cannot go on; the message is for the user."""


@dataclass
class TrainConfig:
    base: str
    revision: str | None = None
    concepts: list[str] | None = None
    out: str | None = None
    name: str | None = None
    quant: str = "none"  # none | 4bit
    device: str = "auto"
    # RePIC's hyperparameters
    epochs: float = 2.0
    max_steps: int = -1
    num_generations: int = 8
    grad_accum: int = 2
    per_device_batch: int | None = None  # default: one prompt's group (= num_generations) per device
    beta: float = 0.04
    epsilon: float = 0.2
    learning_rate: float = 1e-5
    temperature: float = 1.0
    top_k: int = 50
    max_completion_length: int = 256
    lora_r: int = 64
    lora_alpha: int = 128
    lora_dropout: float = 0.05
    lora_lm_head: bool = False
    seed: int = 42
    data_seed: int = 2024
    save_steps: int = 100
    reward_fixes: list[str] = field(default_factory=list)
    # data and evaluation
    heldout_fraction: float = 0.2
    min_photos: int = 3
    max_per_cell: int | None = None
    min_pixels: int = 4 * 28 * 28
    max_pixels: int = 1024 * 28 * 28
    eval_max_new_tokens: int = 256
    eval_batch_size: int = 4
    skip_eval: bool = False
    resume: bool = False
    allow_cpu_quantization: bool = False  # tests only: bitsandbytes 4-bit does run on a CPU, slowly
    cpu_threads: int | None = None  # CPU training: torch threads; None = all cores but one
    processes: int = 1  # set by the run: the processes `accelerate launch` started (WORLD_SIZE)
    vllm: str | None = None  # TRL's vLLM generation: "colocate" or "server" (None: transformers' generate)
    vllm_server_url: str | None = None  # vllm="server": the `trl vllm-serve` address
    # the fields the user set (the CLI's explicit flags); None = every field counts as set (Python API),
    # except those left None. On --resume a set field that differs from the run's is an error.
    explicit: set[str] | None = None

    RUN_KEYS = ("base", "revision", "epochs", "max_steps", "num_generations", "grad_accum", "per_device_batch",
                "beta", "epsilon", "learning_rate", "temperature", "top_k", "max_completion_length", "lora_r",
                "lora_alpha", "lora_dropout", "lora_lm_head", "seed", "data_seed", "save_steps", "reward_fixes",
                "quant", "heldout_fraction", "min_photos", "max_per_cell", "min_pixels", "max_pixels")

    def run_values(self) -> dict[str, Any]:
        """What a resumed run must reuse (stored in run_config.json), as given."""
        return {k: getattr(self, k) for k in self.RUN_KEYS}

    def hyperparameters(self) -> dict[str, Any]:
        hp = {k: v for k, v in self.run_values().items() if k not in ("base", "revision")}
        hp["per_device_batch"] = self.per_device_batch or default_per_device_batch(self.num_generations,
                                                                                    self.processes)
        hp["processes"] = self.processes
        hp["vllm"] = self.vllm
        hp["loss_type"], hp["scale_rewards"] = LOSS_TYPE, SCALE_REWARDS
        return hp


# ---- progress events --------------------------------------------------------------------------------

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


def _distributed(use_cpu: bool):
    """The process group of a multi-process run, set up now (the trainer would do it when it starts,
    with the same settings: use_cpu gives gloo, GPUs NCCL, DeepSpeed its own)."""
    from accelerate import PartialState

    return PartialState(cpu=use_cpu)


def _end_distributed() -> None:
    """Without this a rank aborts at exit ("terminate called without an active exception"), and the
    launcher then stops the other ranks, rank 0 in the middle of saving included."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


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


# ---- evaluation ---------------------------------------------------------------------------------------

def evaluate_heldout(model, processor, heldout: list[HeldOut], *, max_new_tokens: int, batch_size: int = 4,
                     min_pixels: int, max_pixels: int, generation_kwargs: dict[str, Any] | None = None,
                     rule: str = "name-aware", should_stop: Callable[[], bool] | None = None
                     ) -> tuple[dict[str, Any], list[str]]:
    """Greedy captions of the held-out photos and RePIC's name precision/recall/F1 over them.
    `should_stop` is asked before each batch of `batch_size` photos; when true, `Cancelled` is raised."""
    import torch

    from repic_desktop.captioning.engine import CaptionEngine, CaptionRequest
    from repic_desktop.captioning.evaluate import Sample, evaluate_samples

    if not heldout:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "n": 0}, []
    was_training = model.training
    model.eval()
    try:
        engine = CaptionEngine(model, processor, generation_kwargs=generation_kwargs, batch_size=batch_size,
                               max_new_tokens=max_new_tokens, min_pixels=min_pixels, max_pixels=max_pixels,
                               prefetch=False)
        results = []
        step = max(1, batch_size)
        with torch.no_grad():
            for i in range(0, len(heldout), step):
                if should_stop is not None and should_stop():
                    raise Cancelled()
                results.extend(engine.caption([CaptionRequest(h.photo_id, h.prompt) for h in heldout[i:i + step]]))
        engine.clear_cache()
    finally:
        if was_training:
            model.train()
    by_key = {r.key: r for r in results}
    captions = [(by_key[h.photo_id].caption or "") if h.photo_id in by_key else "" for h in heldout]
    samples = [Sample(str(h.photo_id), [f"<{n}>" for n in h.concepts], c, photo_id=h.photo_id)
               for h, c in zip(heldout, captions)]
    res = evaluate_samples(samples, rule)
    return {"precision": res.precision, "recall": res.recall, "f1": res.f1, "n": len(samples)}, captions


# ---- helpers --------------------------------------------------------------------------------------------

def lora_config(cfg: TrainConfig):
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
                      task_type="CAUSAL_LM", target_modules=LORA_TARGETS_WITH_HEAD if cfg.lora_lm_head else LORA_TARGETS)


def lora_modules(model) -> list[str]:
    """Names of modules carrying LoRA weights."""
    return [n for n, m in model.named_modules() if hasattr(m, "lora_A") and len(getattr(m, "lora_A", {}))]


def check_vision_untouched(model) -> None:
    """RePIC trains the language model only; a LoRA module or trainable weight in the ViT is a bug."""
    in_visual = [n for n in lora_modules(model) if ".visual." in f".{n}."]
    trainable_visual = [n for n, p in model.named_parameters() if p.requires_grad and ".visual." in f".{n}."]
    if in_visual or trainable_visual:
        raise TrainError(f"LoRA reached the vision tower ({(in_visual or trainable_visual)[0]}): refusing to train")


def default_name(cfg: TrainConfig, concepts: list[str]) -> str:
    who = "-".join(re.sub(r"[^A-Za-z0-9]+", "", c) or "c" for c in concepts[:3])[:40] or "concepts"
    return f"{who}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_name(name: str) -> str:
    if not ADAPTER_NAME_RE.match(name):
        raise TrainError(f"adapter name {name!r}: use 1-64 letters, digits, spaces, '.', '_' or '-'")
    return name


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


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "transformers", "trl", "peft"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


# ---- the run --------------------------------------------------------------------------------------------

def train(cfg: TrainConfig, library, events: Events, *, cancel_flag: CancelFlag | None = None,
          dataset: BuiltDataset | None = None, reward_functions: list[Callable[..., Any]] | None = None
          ) -> dict[str, Any]:
    """Train, evaluate, save and register an adapter. Returns the "done" payload. Raises TrainError,
    DatasetError or ModelError with a user-facing message; `KeyboardInterrupt`-free cancellation through
    `cancel_flag` (the return value then has ``cancelled: True``, and nothing is registered). The flag
    is checked between every stage, so a cancel during loading, scoring, saving or registering stops too.

    `reward_functions` replaces RePIC's rewards (Python API only: experiments, and tests on the random
    demo model, whose completions never earn a RePIC reward, so its advantages and gradients are 0)."""
    cancel_flag = cancel_flag or CancelFlag()
    owned = cancel_flag.install()  # no-op when the CLI installed it already (keeps the first previous handler)
    state: dict[str, Any] = {"step": 0, "checkpoint": None, "out": None}
    try:
        return _train(cfg, library, events, cancel_flag, dataset, reward_functions, state)
    except Cancelled:
        _record_end(state, "cancelled", f"cancelled at step {state['step']}")
        return {"cancelled": True, "step": state["step"], "checkpoint": state["checkpoint"], "out": state["out"]}
    except BaseException as exc:
        _record_end(state, "failed", str(exc) or type(exc).__name__)
        raise
    finally:
        if owned:
            cancel_flag.restore()
        if world_size() > 1:
            _end_distributed()


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


def _train(cfg: TrainConfig, library, events: Events, cancel_flag: CancelFlag, dataset: BuiltDataset | None,
           reward_functions, state: dict[str, Any]) -> dict[str, Any]:
    from repic_desktop.captioning.models import ModelSpec, load_model

    if cfg.quant not in ("none", "4bit"):
        raise TrainError(f"--quant must be 4bit or left out (got {cfg.quant!r})")
    if cfg.num_generations < 2:
        raise TrainError("GRPO needs at least 2 generations per prompt (--num-generations)")
    bad = set(cfg.reward_fixes) - set(FIXES)
    if bad:
        raise TrainError(f"unknown reward fix {sorted(bad)[0]!r}; choose from {', '.join(FIXES)}")
    if cfg.vllm is not None:
        import importlib.util

        if cfg.vllm not in ("colocate", "server"):
            raise TrainError(f"--vllm must be colocate or server (got {cfg.vllm!r})")
        if importlib.util.find_spec("vllm") is None:
            raise TrainError("--vllm needs vLLM (`pip install vllm`, CUDA GPUs only); leave it out to generate "
                             "with transformers")

    # ---- a resumed run takes its settings and held-out photos from its run_config.json
    run_config = None
    if cfg.resume:
        if not cfg.out and not cfg.name:
            raise TrainError("--resume needs the run's --out folder or its --name")
        out0 = Path(cfg.out) if cfg.out else library.data_dir / "adapters" / check_name(cfg.name)
        run_config = read_run_config(out0)
        if run_config is not None:
            cfg = apply_run_config(cfg, run_config)
        else:
            log.warning("%s has no %s (a run from an older version): resuming with the settings given",
                        out0, RUN_CONFIG)

    # ---- data first: cheap, and the commonest reason to stop
    if dataset is None:
        events.status("Building the training data")
        dataset = build_dataset(library, cfg.concepts, seed=cfg.data_seed, heldout_fraction=cfg.heldout_fraction,
                                min_photos=cfg.min_photos, max_per_cell=cfg.max_per_cell,
                                min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels,
                                heldout_ids=run_config.get("heldout_photo_ids") if run_config else None)
    if run_config is not None and len(dataset.train) != run_config.get("train_samples", len(dataset.train)):
        dataset.warnings.append(f"the library changed since this run started: {len(dataset.train)} training "
                                f"samples now, {run_config.get('train_samples')} then (the held-out photos are "
                                "kept)")
    summary = dataset.summary()
    events.emit("dataset", summary=summary)
    if not dataset.train:
        raise DatasetError("no training samples could be built from this library")

    name = cfg.name or default_name(cfg, dataset.concepts)
    if world_size() > 1:
        import torch

        from accelerate.utils import broadcast_object_list

        cfg = replace(cfg, processes=world_size())
        _distributed(use_cpu=cfg.device == "cpu" or not torch.cuda.is_available())
        # the default name holds the time: every rank must use rank 0's (one run folder, one adapter)
        shared = [name]
        broadcast_object_list(shared, from_process=0)
        name = shared[0]
    name = check_name(name)
    out = Path(cfg.out) if cfg.out else library.data_dir / "adapters" / name
    ckpt_dir, adapter_dir = out / "checkpoints", out / "adapter"
    state["out"] = str(out)
    registered = next((a for a in library.adapters.all() if a.name == name), None)
    if registered is not None and not cfg.resume:
        raise TrainError(f"there is already an adapter called {name!r}: choose another --name or remove it "
                         f"(`repic-train adapters remove {name}`)")
    resume_from = None
    if cfg.resume:
        resume_from = _latest_checkpoint(ckpt_dir)
        if resume_from is None:
            raise TrainError(f"nothing to resume: no complete checkpoint in {ckpt_dir}")
        if registered is not None and Path(registered.path).resolve() != adapter_dir.resolve():
            raise TrainError(f"there is already an adapter called {name!r} in {registered.path}, which is not "
                             f"this run's folder ({out}): resume with its own --out, or choose another --name")
        state["checkpoint"] = str(resume_from)
        state["step"] = int(resume_from.name.split("-")[-1])
        state["run_folder"] = str(out)
    else:
        _check_out_folder(out)
        if adapter_dir.exists():
            raise TrainError(f"{adapter_dir} already exists: choose another --out or --name")
        if is_main_process():
            out.mkdir(parents=True, exist_ok=True)
            rc = {"format": "repic-desktop-run/1", "name": name, "concepts": dataset.concepts,
                  "config": cfg.run_values(), "hyperparameters": cfg.hyperparameters(),
                  "heldout_photo_ids": sorted(h.photo_id for h in dataset.heldout),
                  "train_photo_ids": sorted({s.photo_id for s in dataset.train}), "train_samples": len(dataset.train),
                  "library": str(getattr(library, "path", "")),
                  "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            (out / RUN_CONFIG).write_text(json.dumps(rc, indent=2, ensure_ascii=False), encoding="utf-8")
            state["run_folder"] = str(out)
    cancel_flag.check()

    import torch

    from transformers import set_seed

    set_seed(cfg.seed)
    events.status("Loading the base model")
    device = cfg.device
    if device in ("auto", "cuda") and world_size() > 1 and torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"  # accelerate launch: one GPU per process
    spec = ModelSpec(source=cfg.base, revision=cfg.revision, quantization=cfg.quant, device=device,
                     min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels, dtype="auto")
    if cfg.quant != "none" and not torch.cuda.is_available() and not cfg.allow_cpu_quantization:
        raise TrainError("4-bit (QLoRA) training needs an NVIDIA GPU with CUDA, and none is usable here: "
                         "leave out --quant to train in full precision on the CPU (slow), or train on a GPU machine")
    loaded = load_model(spec, allow_cpu_quantization=cfg.allow_cpu_quantization)
    model, processor = loaded.model, loaded.processor
    cancel_flag.check()
    on_cuda = loaded.device.startswith("cuda")
    if not on_cuda:
        # One core stays free: the GUI that started this process keeps responding, and OpenMP threads
        # that must wait for a core taken by another process made 2-core training 10-60x slower
        # (docs/benchmarks.md, Training).
        apply_cpu_thread_policy(cfg.cpu_threads)
    if cfg.quant != "none":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=on_cuda)

    before: dict[str, Any] = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "n": 0}
    eval_kwargs = dict(max_new_tokens=cfg.eval_max_new_tokens, batch_size=cfg.eval_batch_size,
                       min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels,
                       generation_kwargs=loaded.generation_kwargs(), should_stop=lambda: cancel_flag.set)
    main = is_main_process()
    if not cfg.skip_eval and dataset.heldout and main:
        cancel_flag.check()
        events.status(f"Scoring the base model on {len(dataset.heldout)} held-out photos")
        before, _ = evaluate_heldout(model, processor, dataset.heldout, **eval_kwargs)
        events.emit("eval", phase="before", metrics=before)
    cancel_flag.check()

    from trl import GRPOConfig, GRPOTrainer

    from .dataset import to_hf_dataset
    from .rewards import reward_funcs

    args = GRPOConfig(**grpo_arguments(cfg, ckpt_dir, on_cuda=on_cuda,
                                       bf16=on_cuda and torch.cuda.is_bf16_supported(), quiet=events.json_mode))
    events.status("Preparing LoRA")
    # GRPO pads prompts on the left; TRL re-runs the processor on the prompts to get each token's
    # image/text type and lays it over those left-padded ids. With Qwen's default right padding the two
    # disagreed as soon as a batch held prompts of different lengths (photos of mixed sizes, which
    # gradient accumulation 2 puts together): "shape mismatch" in get_rope_index. TRL sets the same
    # sides when it builds the processor itself.
    processor.tokenizer.padding_side = "left"
    processor.tokenizer.truncation_side = "left"
    trainer = GRPOTrainer(model=model, reward_funcs=reward_functions or reward_funcs(fixes=cfg.reward_fixes), args=args,
                          train_dataset=to_hf_dataset(dataset.train), processing_class=processor,
                          peft_config=lora_config(cfg), callbacks=[_progress_callback(events, cancel_flag)])
    check_vision_untouched(trainer.model)
    n_lora = len(lora_modules(trainer.model))
    if n_lora == 0:
        raise TrainError("LoRA found no language-model layers in this model: is it a Qwen2.5-VL?")
    cancel_flag.check()  # a signal while loading or scoring: nothing trained, nothing (new) to save

    finished = _finished_checkpoint(resume_from, cfg) if resume_from else None
    result = None
    if finished is not None:
        # The checkpoint already holds the last step: training again would run one step more.
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file
        from transformers import TrainerState

        events.status(f"Training already finished at {resume_from.name}: loading it")
        set_peft_model_state_dict(trainer.model, load_file(str(resume_from / "adapter_model.safetensors")))
        trainer.state = TrainerState.load_from_json(str(resume_from / "trainer_state.json"))
    else:
        events.status("Training" + (f" (resuming from {resume_from.name})" if resume_from else ""))
        try:
            result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        except torch.cuda.OutOfMemoryError as exc:
            raise TrainError("the GPU ran out of memory: try --quant 4bit, fewer --num-generations or a smaller "
                             "--max-pixels") from exc
    if world_size() > 1:
        _distributed(use_cpu=not on_cuda).wait_for_everyone()  # the last checkpoint is complete on every rank
    state["step"] = trainer.state.global_step
    cp = _latest_checkpoint(ckpt_dir)
    state["checkpoint"] = str(cp) if cp else None
    if not main:  # other ranks of a multi-GPU run: rank 0 evaluates, saves and registers
        return {"cancelled": cancel_flag.set, "rank": int(os.environ.get("RANK", "0")),
                "step": trainer.state.global_step, "checkpoint": None, "out": str(out)}
    cancel_flag.check()

    after = dict(before)
    if not cfg.skip_eval and dataset.heldout:
        events.status("Scoring the trained adapter on the held-out photos")
        after, _ = evaluate_heldout(trainer.model, processor, dataset.heldout, **eval_kwargs)
        events.emit("eval", phase="after", metrics=after)
    improved = bool(dataset.heldout) and not cfg.skip_eval and after["f1"] > before["f1"]
    flagged = not improved
    cancel_flag.check()

    events.status("Saving the adapter")
    adapter_dir.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(str(adapter_dir), safe_serialization=True)
    if not (adapter_dir / "adapter_model.safetensors").exists():
        raise TrainError(f"the adapter was not written as safetensors in {adapter_dir}")
    metrics_log = [{k: v for k, v in rec.items() if isinstance(v, (int, float)) and _num(v) is not None}
                   for rec in trainer.state.log_history]
    manifest = {
        "format": "repic-desktop-adapter/1",
        "name": name,
        "base_model": cfg.base,
        "base_revision": cfg.revision,
        "base_commit": loaded.commit,
        "concepts": dataset.concepts,
        "data": summary,
        "hyperparameters": cfg.hyperparameters(),
        "lora_modules": n_lora,
        "metrics": {"before": before, "after": after, "rule": "name-aware",
                    "steps": trainer.state.global_step,
                    "train_runtime_s": _num(result.metrics.get("train_runtime")) if result is not None else None,
                    "log": metrics_log[-50:]},
        "improved": improved,
        "flagged": flagged,
        "versions": _versions(),
        "device": loaded.device,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (adapter_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    events.status("Registering the adapter")
    cancel_flag.check()  # the last point a cancel can stop: after this the adapter is registered
    library.adapters.register(name, adapter_dir.resolve(), base_model=cfg.base, base_revision=cfg.revision,
                              manifest=manifest, replace=cfg.resume)
    return {"adapter": name, "path": str(adapter_dir.resolve()), "improved": improved, "flagged": flagged,
            "before": before, "after": after}


def grpo_arguments(cfg: TrainConfig, ckpt_dir: Path, *, on_cuda: bool, bf16: bool, quiet: bool) -> dict[str, Any]:
    """TRL GRPOConfig keyword arguments for this run (RePIC's recipe, see the module docstring)."""
    kwargs = dict(
        output_dir=str(ckpt_dir),
        # One process: one prompt's G completions per micro-batch. Over N processes the group is split
        # between them when N divides G (RePIC on 8 GPUs: 1 each), so each generates its share.
        per_device_train_batch_size=cfg.per_device_batch or default_per_device_batch(
            cfg.num_generations, cfg.processes),
        gradient_accumulation_steps=cfg.grad_accum,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        loss_type=LOSS_TYPE,
        scale_rewards=SCALE_REWARDS,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=1.0,
        repetition_penalty=1.0,
        seed=cfg.seed,
        data_seed=cfg.data_seed,
        logging_steps=1,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        report_to="none",
        bf16=bf16,
        fp16=False,
        gradient_checkpointing=on_cuda,
        gradient_checkpointing_kwargs={"use_reentrant": False} if on_cuda else None,
        use_cpu=not on_cuda,
        dataloader_num_workers=0,
        disable_tqdm=quiet,
        remove_unused_columns=False,
        # LoRA is on every language-model layer and all of them run in every forward: DDP's search for
        # unused parameters would only cost an extra pass over the autograd graph per step
        ddp_find_unused_parameters=False,
    )
    if cfg.vllm:
        # TRL generates with vLLM instead of transformers' generate: "colocate" shares each training GPU,
        # "server" sends the prompts to `trl vllm-serve` on other GPUs (docs/training.md, Several GPUs)
        kwargs.update(use_vllm=True, vllm_mode=cfg.vllm)
        if cfg.vllm_server_url:
            kwargs["vllm_server_base_url"] = cfg.vllm_server_url
    return kwargs


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

"""GRPO + LoRA personalization on TRL, with RePIC's hyperparameters, evaluation, adapter saving and
registration, and JSON-lines progress for the GUI.

RePIC's recipe (reference/repic-method.md §3.1, §3.4) as TRL settings:
* LoRA r 64, alpha 128, dropout 0.05 on the language model's linear layers (q/k/v/o, gate/up/down);
  never the vision tower (Qwen2.5-VL's ViT also has gate/up/down_proj, so a plain name list would hit
  it: the targets are a regex under ``language_model``, and training refuses to start if any LoRA
  module lands under ``visual``). RePIC's auto-discovery also caught ``lm_head``: opt in with
  ``lora_lm_head``.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from .dataset import BuiltDataset, DatasetError, HeldOut, build_dataset
from .rewards import FIXES

log = logging.getLogger("repic.trainer")

LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
LORA_TARGETS_WITH_HEAD = r"(.*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)|lm_head)"
ADAPTER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,63}$")
EXIT_CANCELLED = 130


class TrainError(RuntimeError):
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

    def hyperparameters(self) -> dict[str, Any]:
        keys = ("epochs", "max_steps", "num_generations", "grad_accum", "beta", "epsilon", "learning_rate",
                "temperature", "top_k", "max_completion_length", "lora_r", "lora_alpha", "lora_dropout",
                "lora_lm_head", "seed", "data_seed", "reward_fixes", "quant", "min_pixels", "max_pixels",
                "heldout_fraction")
        return {k: getattr(self, k) for k in keys}


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
        return "error: " + d["message"]
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
            if cancel_flag.set:
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


class CancelFlag:
    """SIGTERM/SIGINT -> stop after the current step and save a checkpoint. A second signal gets the
    default behaviour (exit at once) for a user who really means it."""

    def __init__(self):
        self.set = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (tests calling train() from a worker)
                pass

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
                     rule: str = "name-aware") -> tuple[dict[str, Any], list[str]]:
    """Greedy captions of the held-out photos and RePIC's name precision/recall/F1 over them."""
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
        with torch.no_grad():
            results = engine.caption([CaptionRequest(h.photo_id, h.prompt) for h in heldout])
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


def _latest_checkpoint(folder: Path) -> Path | None:
    cps = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return max(cps, key=lambda p: int(p.name.split("-")[-1])) if cps else None


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
    `cancel_flag` (the return value then has ``cancelled: True``).

    `reward_functions` replaces RePIC's rewards (Python API only: experiments, and tests on the random
    demo model, whose completions never earn a RePIC reward, so its advantages and gradients are 0)."""
    from repic_desktop.captioning.models import ModelSpec, load_model

    cancel_flag = cancel_flag or CancelFlag()
    if cfg.quant not in ("none", "4bit"):
        raise TrainError(f"--quant must be 4bit or left out (got {cfg.quant!r})")
    if cfg.num_generations < 2:
        raise TrainError("GRPO needs at least 2 generations per prompt (--num-generations)")
    bad = set(cfg.reward_fixes) - set(FIXES)
    if bad:
        raise TrainError(f"unknown reward fix {sorted(bad)[0]!r}; choose from {', '.join(FIXES)}")

    # ---- data first: cheap, and the commonest reason to stop
    if dataset is None:
        events.status("Building the training data")
        dataset = build_dataset(library, cfg.concepts, seed=cfg.data_seed, heldout_fraction=cfg.heldout_fraction,
                                min_photos=cfg.min_photos, max_per_cell=cfg.max_per_cell,
                                min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
    summary = dataset.summary()
    events.emit("dataset", summary=summary)
    if not dataset.train:
        raise DatasetError("no training samples could be built from this library")

    name = check_name(cfg.name or default_name(cfg, dataset.concepts))
    if not cfg.resume and any(a.name == name for a in library.adapters()):
        raise TrainError(f"there is already an adapter called {name!r}: choose another --name or remove it "
                         f"(`repic-train adapters remove {name}`)")
    out = Path(cfg.out) if cfg.out else library.data_dir / "adapters" / name
    ckpt_dir, adapter_dir = out / "checkpoints", out / "adapter"
    resume_from = None
    if cfg.resume:
        resume_from = _latest_checkpoint(ckpt_dir)
        if resume_from is None:
            raise TrainError(f"nothing to resume: no checkpoint in {ckpt_dir}")
    elif adapter_dir.exists():
        raise TrainError(f"{adapter_dir} already exists: choose another --out or --name")

    import torch

    from transformers import set_seed

    set_seed(cfg.seed)
    events.status("Loading the base model")
    device = cfg.device
    if device == "auto" and "LOCAL_RANK" in os.environ and torch.cuda.is_available():
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"  # accelerate launch: one GPU per process
    spec = ModelSpec(source=cfg.base, revision=cfg.revision, quantization=cfg.quant, device=device,
                     min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels, dtype="auto")
    if cfg.quant != "none" and not torch.cuda.is_available() and not cfg.allow_cpu_quantization:
        raise TrainError("4-bit (QLoRA) training needs an NVIDIA GPU with CUDA, and none is usable here: "
                         "leave out --quant to train in full precision on the CPU (slow), or train on a GPU machine")
    loaded = load_model(spec, allow_cpu_quantization=cfg.allow_cpu_quantization)
    model, processor = loaded.model, loaded.processor
    on_cuda = loaded.device.startswith("cuda")
    if not on_cuda:
        # One core stays free: the GUI that started this process keeps responding, and OpenMP threads
        # that must wait for a core taken by another process made 2-core training 10-60x slower
        # (docs/benchmarks.md, Training).
        torch.set_num_threads(cfg.cpu_threads or max(1, (os.cpu_count() or 2) - 1))
    if cfg.quant != "none":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=on_cuda)

    before: dict[str, Any] = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "n": 0}
    eval_kwargs = dict(max_new_tokens=cfg.eval_max_new_tokens, batch_size=cfg.eval_batch_size,
                       min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels,
                       generation_kwargs=loaded.generation_kwargs())
    main = is_main_process()
    if not cfg.skip_eval and dataset.heldout and main:
        events.status(f"Scoring the base model on {len(dataset.heldout)} held-out photos")
        before, _ = evaluate_heldout(model, processor, dataset.heldout, **eval_kwargs)
        events.emit("eval", phase="before", metrics=before)

    from trl import GRPOConfig, GRPOTrainer

    from .dataset import to_hf_dataset
    from .rewards import reward_funcs

    args = GRPOConfig(
        output_dir=str(ckpt_dir),
        # One GPU: one prompt's G completions per micro-batch. On 8 GPUs RePIC used 1 per device (the
        # group spans the GPUs): pass --per-device-batch 1 there.
        per_device_train_batch_size=cfg.per_device_batch or cfg.num_generations,
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
        loss_type="grpo",
        scale_rewards="group",
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
        bf16=on_cuda and torch.cuda.is_bf16_supported(),
        fp16=False,
        gradient_checkpointing=on_cuda,
        gradient_checkpointing_kwargs={"use_reentrant": False} if on_cuda else None,
        use_cpu=not on_cuda,
        dataloader_num_workers=0,
        disable_tqdm=events.json_mode,
        remove_unused_columns=False,
    )
    events.status("Preparing LoRA")
    trainer = GRPOTrainer(model=model, reward_funcs=reward_functions or reward_funcs(fixes=cfg.reward_fixes), args=args,
                          train_dataset=to_hf_dataset(dataset.train), processing_class=processor,
                          peft_config=lora_config(cfg), callbacks=[_progress_callback(events, cancel_flag)])
    check_vision_untouched(trainer.model)
    n_lora = len(lora_modules(trainer.model))
    if n_lora == 0:
        raise TrainError("LoRA found no language-model layers in this model: is it a Qwen2.5-VL?")

    if cancel_flag.set:  # a signal while loading or scoring: nothing trained, nothing to save
        return {"cancelled": True, "step": 0, "checkpoint": None, "out": str(out)}
    events.status("Training" + (f" (resuming from {resume_from.name})" if resume_from else ""))
    cancel_flag.install()
    try:
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except torch.cuda.OutOfMemoryError as exc:
        raise TrainError("the GPU ran out of memory: try --quant 4bit, fewer --num-generations or a smaller "
                         "--max-pixels") from exc
    finally:
        cancel_flag.restore()
    if not main:  # other ranks of a multi-GPU run: rank 0 evaluates, saves and registers
        return {"cancelled": cancel_flag.set, "rank": int(os.environ.get("RANK", "0")),
                "step": trainer.state.global_step, "checkpoint": None, "out": str(out)}
    if cancel_flag.set:
        cp = _latest_checkpoint(ckpt_dir)
        return {"cancelled": True, "step": trainer.state.global_step, "checkpoint": str(cp) if cp else None,
                "out": str(out)}

    after = dict(before)
    if not cfg.skip_eval and dataset.heldout:
        events.status("Scoring the trained adapter on the held-out photos")
        after, _ = evaluate_heldout(trainer.model, processor, dataset.heldout, **eval_kwargs)
        events.emit("eval", phase="after", metrics=after)
    improved = bool(dataset.heldout) and not cfg.skip_eval and after["f1"] > before["f1"]
    flagged = not improved

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
                    "steps": trainer.state.global_step, "train_runtime_s": _num(result.metrics.get("train_runtime")),
                    "log": metrics_log[-50:]},
        "improved": improved,
        "flagged": flagged,
        "versions": _versions(),
        "device": loaded.device,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (adapter_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    library.register_adapter(name, adapter_dir.resolve(), base_model=cfg.base, base_revision=cfg.revision,
                             manifest=manifest, replace=cfg.resume)
    return {"adapter": name, "path": str(adapter_dir.resolve()), "improved": improved, "flagged": flagged,
            "before": before, "after": after}

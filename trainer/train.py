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
import os
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from repic_desktop.core.cpu_threads import apply_cpu_thread_policy

# The settings, events, scoring and run-folder pieces live in their own modules; importers (the CLI,
# tests, bench/) still know them as trainer.train.X.
from .config import LORA_TARGETS as LORA_TARGETS
from .config import TrainConfig as TrainConfig
from .config import TrainError as TrainError
from .config import grpo_arguments as grpo_arguments
from .config import lora_config
from .dataset import BuiltDataset, DatasetError, build_dataset
from .evaluation import evaluate_heldout as evaluate_heldout
from .events import CancelFlag as CancelFlag
from .events import Cancelled as Cancelled
from .events import Events as Events
from .events import _num, _progress_callback, is_main_process
from .launch import world_size
from .rewards import FIXES
from .run_folder import RUN_CONFIG, _check_out_folder, _finished_checkpoint, _record_end, apply_run_config
from .run_folder import _latest_checkpoint as _latest_checkpoint
from .run_folder import read_run_config

log = logging.getLogger("repic.trainer")

ADAPTER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,63}$")
EXIT_CANCELLED = 130


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


def _train(cfg: TrainConfig, library, events: Events, cancel_flag: CancelFlag, dataset: BuiltDataset | None,
           reward_functions, state: dict[str, Any]) -> dict[str, Any]:
    _check_options(cfg)
    cfg, run_config = _resumed_config(cfg, library)  # a resumed run takes its settings from run_config.json
    dataset, summary = _dataset(cfg, library, events, dataset, run_config)  # data first: cheap, the commonest stop
    cfg, name = _run_name(cfg, dataset)
    out = Path(cfg.out) if cfg.out else library.data_dir / "adapters" / name
    ckpt_dir, adapter_dir = out / "checkpoints", out / "adapter"
    state["out"] = str(out)
    resume_from = _prepare_run_folder(cfg, library, dataset, name, out, state)
    cancel_flag.check()

    from transformers import set_seed

    set_seed(cfg.seed)
    loaded, model, on_cuda = _load_base(cfg, events)
    processor = loaded.processor
    cancel_flag.check()

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

    trainer, n_lora = _grpo_trainer(cfg, model, processor, dataset, reward_functions, events, cancel_flag,
                                    ckpt_dir, on_cuda=on_cuda)
    cancel_flag.check()  # a signal while loading or scoring: nothing trained, nothing (new) to save

    result = _fit(trainer, cfg, events, resume_from)
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
    manifest = _save_adapter(trainer, adapter_dir, _manifest(cfg, name, loaded, dataset, summary, n_lora, trainer,
                                                             result, before=before, after=after, improved=improved))
    events.status("Registering the adapter")
    cancel_flag.check()  # the last point a cancel can stop: after this the adapter is registered
    library.adapters.register(name, adapter_dir.resolve(), base_model=cfg.base, base_revision=cfg.revision,
                              manifest=manifest, replace=cfg.resume)
    return {"adapter": name, "path": str(adapter_dir.resolve()), "improved": improved, "flagged": flagged,
            "before": before, "after": after}


def _manifest(cfg: TrainConfig, name: str, loaded, dataset: BuiltDataset, summary: dict[str, Any], n_lora: int,
              trainer, result, *, before: dict[str, Any], after: dict[str, Any], improved: bool) -> dict[str, Any]:
    """The adapter's manifest.json: base model, data, hyperparameters, scores, versions."""
    return {
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
                    "train_runtime_s": _num(result.metrics.get("train_runtime")) if result is not None else None},
        "improved": improved,
        "flagged": not improved,
        "versions": _versions(),
        "device": loaded.device,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _check_options(cfg: TrainConfig) -> None:
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


def _resumed_config(cfg: TrainConfig, library) -> tuple[TrainConfig, dict[str, Any] | None]:
    """On --resume: the settings and held-out photos of the run's run_config.json (None if it has none)."""
    if not cfg.resume:
        return cfg, None
    if not cfg.out and not cfg.name:
        raise TrainError("--resume needs the run's --out folder or its --name")
    out0 = Path(cfg.out) if cfg.out else library.data_dir / "adapters" / check_name(cfg.name)
    run_config = read_run_config(out0)
    if run_config is not None:
        cfg = apply_run_config(cfg, run_config)
    else:
        log.warning("%s has no %s (a run from an older version): resuming with the settings given",
                    out0, RUN_CONFIG)
    return cfg, run_config


def _dataset(cfg: TrainConfig, library, events: Events, dataset: BuiltDataset | None,
             run_config: dict[str, Any] | None) -> tuple[BuiltDataset, dict[str, Any]]:
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
    return dataset, summary


def _run_name(cfg: TrainConfig, dataset: BuiltDataset) -> tuple[TrainConfig, str]:
    """The adapter's name, the same on every rank; in a multi-process run also sets up the process group."""
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
    return cfg, check_name(name)


def _prepare_run_folder(cfg: TrainConfig, library, dataset: BuiltDataset, name: str, out: Path,
                        state: dict[str, Any]) -> Path | None:
    """Check the name and the folder; a new run writes its run_config.json, a resumed one finds its
    latest complete checkpoint (returned)."""
    ckpt_dir, adapter_dir = out / "checkpoints", out / "adapter"
    registered = next((a for a in library.adapters.all() if a.name == name), None)
    if registered is not None and not cfg.resume:
        raise TrainError(f"there is already an adapter called {name!r}: choose another --name or remove it "
                         f"(`repic-train adapters remove {name}`)")
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
        return resume_from
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
    return None


def _load_base(cfg: TrainConfig, events: Events):
    """The base model as inference loads it (captioning.models.load_model), ready for (Q)LoRA training.
    Returns (loaded, model, on_cuda)."""
    import torch

    from repic_desktop.captioning.models import ModelSpec, load_model

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
    model = loaded.model
    on_cuda = loaded.device.startswith("cuda")
    if not on_cuda:
        # One core stays free: the GUI that started this process keeps responding, and OpenMP threads
        # that must wait for a core taken by another process made 2-core training 10-60x slower
        # (docs/benchmarks.md, Training).
        apply_cpu_thread_policy(cfg.cpu_threads)
    if cfg.quant != "none":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=on_cuda)
    return loaded, model, on_cuda


def _grpo_trainer(cfg: TrainConfig, model, processor, dataset: BuiltDataset, reward_functions, events: Events,
                  cancel_flag: CancelFlag, ckpt_dir: Path, *, on_cuda: bool):
    """TRL's GRPOTrainer with LoRA on the language model (checked: none in the vision tower).
    Returns (trainer, number of LoRA modules)."""
    import torch

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
    return trainer, n_lora


def _fit(trainer, cfg: TrainConfig, events: Events, resume_from: Path | None):
    """Train (from `resume_from` if given); TRL's train result, or None when the checkpoint already held
    the last step (it is loaded instead: training again would run one step more)."""
    import torch

    finished = _finished_checkpoint(resume_from, cfg) if resume_from else None
    if finished is not None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file
        from transformers import TrainerState

        events.status(f"Training already finished at {resume_from.name}: loading it")
        set_peft_model_state_dict(trainer.model, load_file(str(resume_from / "adapter_model.safetensors")))
        trainer.state = TrainerState.load_from_json(str(resume_from / "trainer_state.json"))
        return None
    events.status("Training" + (f" (resuming from {resume_from.name})" if resume_from else ""))
    try:
        return trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except torch.cuda.OutOfMemoryError as exc:
        raise TrainError("the GPU ran out of memory: try --quant 4bit, fewer --num-generations or a smaller "
                         "--max-pixels") from exc


def _save_adapter(trainer, adapter_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the adapter (safetensors only) and its manifest.json; `manifest` gains the training log."""
    adapter_dir.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(str(adapter_dir), safe_serialization=True)
    if not (adapter_dir / "adapter_model.safetensors").exists():
        raise TrainError(f"the adapter was not written as safetensors in {adapter_dir}")
    metrics_log = [{k: v for k, v in rec.items() if isinstance(v, (int, float)) and _num(v) is not None}
                   for rec in trainer.state.log_history]
    manifest["metrics"]["log"] = metrics_log[-50:]
    (adapter_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return manifest

"""The training settings: `TrainConfig` (RePIC's hyperparameters as defaults), the TRL `GRPOConfig`
arguments and the PEFT LoRA config built from it, and `TrainError`. See train.py's docstring for the recipe."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repic_desktop.core.errors import RepicError

from .launch import default_per_device_batch

LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
LORA_TARGETS_WITH_HEAD = r"(.*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)|lm_head)"
LOSS_TYPE = "grpo"        # per-sequence mean, then mean: RePIC's loss
SCALE_REWARDS = "group"   # advantages divided by the group's reward std


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


def lora_config(cfg: TrainConfig):
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
                      task_type="CAUSAL_LM", target_modules=LORA_TARGETS_WITH_HEAD if cfg.lora_lm_head else LORA_TARGETS)


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

"""The multi-GPU launch configs parse and say what docs/training.md promises (DDP, ZeRO-2 without
offload, "auto" values that the HF Trainer fills from GRPOConfig)."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

CONFIGS = Path(__file__).resolve().parents[1] / "trainer" / "configs"


def test_accelerate_ddp():
    cfg = yaml.safe_load((CONFIGS / "accelerate_ddp.yaml").read_text())
    assert cfg["distributed_type"] == "MULTI_GPU"
    assert cfg["num_machines"] == 1 and cfg["num_processes"] >= 2
    assert cfg["mixed_precision"] == "bf16" and cfg["use_cpu"] is False


def test_accelerate_zero2_points_at_the_deepspeed_json():
    cfg = yaml.safe_load((CONFIGS / "accelerate_zero2.yaml").read_text())
    assert cfg["distributed_type"] == "DEEPSPEED"
    ds_file = Path(cfg["deepspeed_config"]["deepspeed_config_file"])
    assert ds_file.parts[:2] == ("trainer", "configs") and (CONFIGS / ds_file.name).exists()


def test_deepspeed_zero2():
    ds = json.loads((CONFIGS / "deepspeed_zero2.json").read_text())
    zero = ds["zero_optimization"]
    assert zero["stage"] == 2 and zero["offload_optimizer"]["device"] == "none"
    assert ds["optimizer"]["type"] == "AdamW"
    assert all(v == "auto" for v in ds["optimizer"]["params"].values())
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                "gradient_clipping"):
        assert ds[key] == "auto"
    assert ds["bf16"]["enabled"] == "auto"

"""GRPO training cost: seconds per step and peak memory.

    python bench/train_bench.py                 # CPU: demo model (215 k params) and a 15 M-param random model
    python bench/train_bench.py --gpu-7b        # on a CUDA GPU: Qwen2.5-VL-7B shape, random weights, QLoRA

Each model runs in its own subprocess (`--one`), so each peak RSS is that run's alone. The run is the
real `trainer.train.train` on a generated library of 4 concepts with RePIC's rewards; evaluation is
skipped (it is captioning, benchmarked in caption_bench.py). The first step is reported apart: it pays
for lazy initialisation.

CPU settings (RePIC's 8 generations x 256 tokens would take minutes per step on 2 cores): 4 generations,
32 new tokens, images at most 112x112 (16 visual tokens), LoRA r 64 / alpha 128 as in RePIC.

--gpu-7b: the Qwen2.5-VL-7B-Instruct architecture (text 3584 x 28 layers, vision 1280 x 32 blocks) with
random bf16 weights written to a scratch folder (~16 GB of disk), loaded 4-bit NF4 (QLoRA), 4 concepts,
8 generations, 256 new tokens, RePIC's pixel limit; reports s/step and peak VRAM
(torch.cuda.max_memory_allocated). Random weights generate to the length limit, so the step time is an
upper bound for a real checkpoint that stops early.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONCEPTS = [("Anya", "person", "A girl with pink hair."), ("Bond", "pet", "A white dog."),
            ("Cleo", "pet", "A black cat."), ("Dora", "person", "A woman with a red scarf.")]


def make_library(root: Path, photos_per_concept: int = 5, size: int = 112) -> Path:
    import random

    from PIL import Image, ImageDraw

    from repic_desktop.core.library import Box, Library
    from repic_desktop.core.scanner import scan_folder

    rnd = random.Random(0)
    folder = root / "photos"
    folder.mkdir(parents=True)
    plan = {}
    for ci, (name, _, _) in enumerate(CONCEPTS):
        plan[f"ref_{name}"] = []
        for k in range(photos_per_concept):
            plan[f"{name}_{k}"] = [name]
    for k in range(4):  # pairs
        plan[f"pair_{k}"] = [CONCEPTS[k % 4][0], CONCEPTS[(k + 1) % 4][0]]
    for i, stem in enumerate(sorted(plan)):
        im = Image.new("RGB", (size + 28 * (i % 3), size), tuple(rnd.randrange(256) for _ in range(3)))
        ImageDraw.Draw(im).rectangle([10, 10, 60, 70], fill=tuple(rnd.randrange(256) for _ in range(3)))
        im.save(folder / f"{stem}.png")
    lib_path = root / "lib.sqlite"
    with Library(lib_path) as lib:
        scan_folder(lib, folder)
        pid = {Path(p.path).stem: p.id for p in lib.photos.list()}
        for name, kind, info in CONCEPTS:
            lib.concepts.add(name, kind, info)
            lib.concepts.add_ref(name, photo_id=pid[f"ref_{name}"])
        for stem, names in plan.items():
            for j, n in enumerate(names):
                lib.concepts.tag(pid[stem], n, box=Box(10 + 30 * j, 10, 50, 60) if stem.endswith("_0") else None)
    return lib_path


def build_7b(out: Path) -> Path:
    """Qwen2.5-VL-7B-Instruct's shape (config.json of the hub model) with random bf16 weights."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from repic_desktop.captioning.demo_model import build_demo_model

    build_demo_model(out)  # tokenizer/processor files (vocab differs from Qwen's: irrelevant for cost)
    cfg = json.loads((out / "config.json").read_text())
    text = cfg.get("text_config", {})
    ids = {k: cfg[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")}
    config = Qwen2_5_VLConfig(
        text_config={"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                     "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 128000,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                         "mrope_section": [16, 24, 24]},
                     "bos_token_id": text.get("bos_token_id"), "eos_token_id": text.get("eos_token_id"),
                     "pad_token_id": text.get("pad_token_id")},
        vision_config={"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                       "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                       "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2},
        tie_word_embeddings=False, **ids)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # build in bf16 directly: 8 B fp32 parameters would need 33 GB
    try:
        with torch.device("cuda"):
            model = Qwen2_5_VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(out)
    del model
    torch.cuda.empty_cache()
    return out


def run_one(kind: str, steps: int, threads: int | None = None) -> dict:
    """Train `steps` GRPO steps; returns the timings taken from the progress events."""
    import torch

    import trainer.train as tt
    from repic_desktop.core.library import Library

    stamps: list[tuple[dict, float]] = []

    class TimedEvents(tt.Events):
        def emit(self, event, **data):
            stamps.append(({"event": event, **data}, time.perf_counter()))

    tmp = Path(tempfile.mkdtemp(prefix=f"train-bench-{kind}-"))
    if kind == "demo":
        from repic_desktop.captioning.demo_model import build_demo_model

        build_demo_model(tmp / "model")
    elif kind == "bench15m":
        sys.path.insert(0, str(ROOT / "bench"))
        from caption_bench import build_bench_model

        build_bench_model(tmp / "model")
    else:
        if not torch.cuda.is_available():
            raise SystemExit("--gpu-7b needs a CUDA GPU; none is usable here")
        build_7b(tmp / "model")
    lib_path = make_library(tmp, size=448 if kind == "7b" else 112)
    if kind == "7b":
        opts = dict(num_generations=8, grad_accum=2, max_completion_length=256, quant="4bit", device="auto")
        gen = "8 x 256, QLoRA 4-bit"
    else:
        opts = dict(num_generations=4, grad_accum=1, max_completion_length=32, max_pixels=112 * 112, device="cpu")
        gen = "4 x 32"
    cfg = tt.TrainConfig(base=str(tmp / "model"), out=str(tmp / "run"), name=f"bench-{kind}", max_steps=steps,
                         skip_eval=True, save_steps=10_000, cpu_threads=threads, **opts)
    with Library(lib_path) as lib:
        tt.train(cfg, lib, TimedEvents(True))
    start = next(t for e, t in stamps if e["event"] == "status" and e["message"].startswith("Training"))
    step_times = [t for e, t in stamps if e["event"] == "step"]
    later = [b - a for a, b in zip(step_times, step_times[1:])]
    from safetensors import safe_open

    params = 0
    for f in (tmp / "model").glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            params += sum(_numel(st.get_slice(k).get_shape()) for k in st.keys())
    return {"kind": kind, "params_m": params / 1e6, "gen": gen, "steps": len(step_times),
            "first_s": step_times[0] - start, "step_s": sum(later) / len(later) if later else float("nan"),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_vram_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
            "threads": torch.get_num_threads(), "loadavg_1m": os.getloadavg()[0]}


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", choices=["demo", "bench15m", "7b"], help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--gpu-7b", action="store_true", help="Qwen2.5-VL-7B shape, QLoRA, on a CUDA GPU")
    ap.add_argument("--threads", type=int, help="CPU: torch threads (default: the trainer's, all cores but one)")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.steps, args.threads)))
        return 0
    rows = []
    for kind in (["7b"] if args.gpu_7b else ["demo", "bench15m"]):
        extra = ["--threads", str(args.threads)] if args.threads else []
        out = subprocess.run([sys.executable, __file__, "--one", kind, "--steps", str(args.steps), *extra],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            return out.returncode
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| model | params | generations x new tokens | threads | first step (s) | later steps (s/step) |"
          " peak RSS (MB) | peak VRAM (GiB) | load avg at end |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        vram = "-" if r["peak_vram_gb"] is None else f"{r['peak_vram_gb']:.1f}"
        print(f"| {r['kind']} | {r['params_m']:.2f} M | {r['gen']} | {r['threads']} | {r['first_s']:.2f} | {r['step_s']:.2f} "
              f"({r['steps'] - 1} steps) | {r['peak_rss_mb']:.0f} | {vram} | {r['loadavg_1m']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`repic-train` / `python -m trainer`: GRPO personalization (RePIC recipe) on the user's library.

    repic-train [--library P] --base MODEL [--concepts A,B] [--out DIR] [--name NAME] [--quant 4bit]
                [--max-steps N] [--epochs N] [--num-generations G] [--json-progress] [--seed S] [--resume]
    repic-train dataset [--library P] [--concepts A,B] [--json]
    repic-train adapters list|activate|remove|export|merge ...

With --json-progress (and `dataset --json`) stdout carries only JSON lines (schema in docs/training.md);
logs go to stderr. Exit codes: 0 done, 1 error (an "error" event says why), 130 cancelled (SIGINT or
SIGTERM: the run stops after the current step, saves a checkpoint and emits an "error" event with
"cancelled": true; `--resume` continues it).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from repic_desktop import __version__
from repic_desktop.core.errors import RepicError
from repic_desktop.core.terminal import error_line
from repic_desktop.captioning.prompt import max_pixels
from repic_desktop.core.arg_types import SEED_MAX, device, http_url, nonempty_text, number, whole_number

EXIT_ERROR = 1
EXIT_CANCELLED = 130


def _concepts(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    return names or None


def _concept_list(value: str) -> str:
    """--concepts A,B: at least one name, no control characters (names are checked in the library)."""
    nonempty_text(value)
    if _concepts(value) is None:
        raise argparse.ArgumentTypeError(f"names no concept (got {value!r})")
    return value


def _open_library(path: str | None):
    from repic_desktop.core import paths
    from repic_desktop.core.library import Library

    p = paths.resolve_library_path(path)
    if not p.exists():
        raise FileNotFoundError(f"no library at {p}: import photos first (`repic import FOLDER`)")
    return Library(p, create=False)


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="repic-train",
                                description="Fine-tune RePIC on your own people and pets (GRPO + LoRA). "
                                            "Other commands: `repic-train dataset`, `repic-train adapters`.")
    p.add_argument("--version", action="version", version=f"repic-train {__version__}")
    p.add_argument("--library", help="library file (default: $REPIC_LIBRARY or the user data folder)")
    p.add_argument("--base", required=True, type=nonempty_text, help="base model: hub id (downloaded) or local folder")
    p.add_argument("--revision", type=nonempty_text, help="pinned hub revision of the base model")
    p.add_argument("--concepts", type=_concept_list,
                   help="comma-separated names to train on (default: all with enough photos)")
    p.add_argument("--out", type=nonempty_text, help="run folder (default: <library>-files/adapters/<name>)")
    p.add_argument("--name", type=nonempty_text, help="adapter name in the library (default: concepts + date)")
    p.add_argument("--quant", choices=["4bit"], help="QLoRA: 4-bit base model (needs a CUDA GPU)")
    p.add_argument("--device", default="auto", type=device, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--cpu-threads", type=whole_number(1, 4096),
                   help="CPU training: torch threads (default: all cores but one)")
    p.add_argument("--max-steps", type=whole_number(1, 10 ** 9, also=(-1,)), default=-1,
                   help="stop after N optimizer steps (overrides epochs)")
    p.add_argument("--epochs", type=number(0, 10_000, lo_open=True), default=2.0)
    p.add_argument("--num-generations", type=whole_number(2, 1024), default=8,
                   help="completions per prompt (GRPO group)")
    p.add_argument("--grad-accum", type=whole_number(1, 1024), default=2, help="prompts per optimizer step (RePIC: 2)")
    p.add_argument("--per-device-batch", type=whole_number(1, 1024),
                   help="completions per device per micro-step (default: --num-generations; RePIC on 8 GPUs: 1)")
    p.add_argument("--max-completion-length", type=whole_number(1, 8192), default=256)
    p.add_argument("--learning-rate", type=number(0, 1, lo_open=True), default=1e-5)
    p.add_argument("--beta", type=number(0, 100), default=0.04)  # 0: no KL term (TRL)
    p.add_argument("--lora-r", type=whole_number(1, 1024), default=64)
    p.add_argument("--lora-alpha", type=whole_number(1, 4096), default=128)
    p.add_argument("--lora-lm-head", action="store_true", help="also put LoRA on lm_head (as RePIC's code did)")
    p.add_argument("--reward-fix", action="append", default=[], choices=["word_boundary", "decimal_boxes"],
                   help="opt-in fixes of RePIC reward quirks (repeatable)")
    p.add_argument("--max-pixels", type=max_pixels, default=1024 * 28 * 28, help="per-image pixel limit")
    p.add_argument("--max-per-cell", type=whole_number(1, 10 ** 6), help="cap on samples per concept and task")
    p.add_argument("--heldout-fraction", type=number(0, 1, hi_open=True), default=0.2)
    p.add_argument("--eval-max-new-tokens", type=whole_number(1, 8192), default=256)
    p.add_argument("--skip-eval", action="store_true", help="no before/after scoring (the adapter is then flagged)")
    p.add_argument("--save-steps", type=whole_number(1, 10 ** 9), default=100)
    p.add_argument("--seed", type=whole_number(0, SEED_MAX), default=42)
    p.add_argument("--data-seed", type=whole_number(0, SEED_MAX), default=2024)
    p.add_argument("--resume", action="store_true", help="continue the run in --out / --name from its last checkpoint")
    p.add_argument("--json-progress", action="store_true", help="JSON lines on stdout (for the GUI)")
    p.add_argument("--processes", type=whole_number(1, 1024),
                   help="train with N processes (one per GPU; on a CPU, N CPU processes) through `accelerate launch`")
    p.add_argument("--distributed", choices=["ddp", "zero2"], default="ddp",
                   help="with --processes on GPUs: DDP, or DeepSpeed ZeRO-2 (RePIC's setting; needs deepspeed)")
    p.add_argument("--vllm", choices=["colocate", "server"],
                   help="generate with vLLM through TRL (CUDA; colocate: on the training GPUs; server: `trl vllm-serve`)")
    p.add_argument("--vllm-server-url", type=http_url, help="with --vllm server: its address (default "
                   "TRL's, http://0.0.0.0:8000)")
    p.add_argument("--allow-cpu-quantization", action="store_true", help=argparse.SUPPRESS)
    return p


_DEST_TO_FIELD = {"reward_fix": "reward_fixes"}


def _explicit_fields(argv: list[str]) -> set[str]:
    """TrainConfig fields the user gave on the command line (on --resume only these may conflict with
    the run's run_config.json; the others are taken from it)."""
    p = _train_parser()
    for action in p._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    given, _ = p.parse_known_args(argv)
    return {_DEST_TO_FIELD.get(k, k) for k in vars(given)}


def _json_out():
    """In JSON mode the real stdout is reserved for events: everything else that prints goes to stderr."""
    real = sys.stdout
    sys.stdout = sys.stderr
    return real


def cmd_train(argv: list[str]) -> int:
    from .launch import run as run_launch, under_launcher, watch_launcher, world_size
    from .train import CancelFlag, Events, TrainConfig, train

    args = _train_parser().parse_args(argv)
    explicit = _explicit_fields(argv)
    stream = _json_out() if args.json_progress else sys.stdout
    events = Events(args.json_progress, stream)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    cfg = TrainConfig(
        base=args.base, revision=args.revision, concepts=_concepts(args.concepts), out=args.out, name=args.name,
        quant=args.quant or "none", device=args.device, epochs=args.epochs, max_steps=args.max_steps,
        num_generations=args.num_generations, grad_accum=args.grad_accum,
        per_device_batch=args.per_device_batch,
        max_completion_length=args.max_completion_length, learning_rate=args.learning_rate, beta=args.beta,
        lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_lm_head=args.lora_lm_head,
        reward_fixes=list(args.reward_fix), max_pixels=args.max_pixels, max_per_cell=args.max_per_cell,
        heldout_fraction=args.heldout_fraction, eval_max_new_tokens=args.eval_max_new_tokens,
        skip_eval=args.skip_eval, save_steps=args.save_steps, seed=args.seed, data_seed=args.data_seed,
        resume=args.resume, allow_cpu_quantization=args.allow_cpu_quantization, cpu_threads=args.cpu_threads,
        vllm=args.vllm, vllm_server_url=args.vllm_server_url, explicit=explicit)
    if under_launcher():
        if args.processes is not None and args.processes != world_size():
            events.emit("error", message=f"--processes {args.processes} does not match the {world_size()} processes "
                                         "`accelerate launch` started")
            return EXIT_ERROR
        watch_launcher()
    elif (args.processes or 1) > 1:
        # this process launches the ranks (each runs this same command) and waits for them
        return run_launch(argv, processes=args.processes, device=args.device, distributed=args.distributed,
                          cpu_threads=args.cpu_threads, events=events, json_mode=args.json_progress, stream=stream)
    flag = CancelFlag()
    flag.install()  # once, for the whole run: train() checks the flag between every stage
    try:
        with _open_library(args.library) as library:
            result = train(cfg, library, events, cancel_flag=flag)
    except (RepicError, FileNotFoundError, ValueError) as exc:  # written for the user: one event, no traceback
        events.emit("error", message=str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        events.emit("error", message="cancelled (interrupted twice): stopped at once; the last saved checkpoint "
                    "is kept", cancelled=True)
        return EXIT_CANCELLED
    except Exception as exc:  # noqa: BLE001 - the GUI must always get an event, never a silent death
        logging.getLogger("repic.trainer").exception("training failed")
        events.emit("error", message=f"training failed: {type(exc).__name__}: {exc}")
        return EXIT_ERROR
    finally:
        flag.restore()
    if "rank" in result:
        # another rank of a multi-process run: rank 0 reports, and a non-zero code here would make the
        # launcher stop rank 0 before it has (a cancel included)
        return 0
    if result.get("cancelled"):
        saved = "checkpoint saved, continue with --resume" if result["checkpoint"] else "nothing was saved"
        events.emit("error", message=f"cancelled at step {result['step']}; {saved}",
                    cancelled=True, step=result["step"], checkpoint=result["checkpoint"], out=result["out"])
        return EXIT_CANCELLED
    events.emit("done", **result)
    return 0


def _dataset_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="repic-train dataset", description="Build the training data and show its summary.")
    p.add_argument("--library")
    p.add_argument("--concepts", type=_concept_list)
    p.add_argument("--max-pixels", type=max_pixels, default=1024 * 28 * 28)
    p.add_argument("--max-per-cell", type=whole_number(1, 10 ** 6))
    p.add_argument("--data-seed", type=whole_number(0, SEED_MAX), default=2024)
    p.add_argument("--json", action="store_true")
    return p


def cmd_dataset(argv: list[str]) -> int:
    from .dataset import build_dataset

    args = _dataset_parser().parse_args(argv)
    try:
        with _open_library(args.library) as library:
            ds = build_dataset(library, _concepts(args.concepts), seed=args.data_seed, max_pixels=args.max_pixels,
                               max_per_cell=args.max_per_cell)
    except (RepicError, FileNotFoundError, ValueError) as exc:
        if args.json:
            print(json.dumps({"event": "error", "message": str(exc)}, ensure_ascii=False), flush=True)
        else:
            print(error_line(f"repic-train: error: {exc}"), file=sys.stderr)
        return EXIT_ERROR
    summary = ds.summary()
    if args.json:
        print(json.dumps({"event": "dataset", "summary": summary}, ensure_ascii=False), flush=True)
        return 0
    print(f"training samples: {summary['train']}  (ICT {summary['tasks']['ict']}, OCT {summary['tasks']['oct']}, "
          f"VLT {summary['tasks']['vlt']});  held-out photos: {summary['heldout']}")
    for name, counts in summary["concepts"].items():
        ph = summary["photos"].get(name, {})
        print(f"  <{name}>: {ph.get('photos', 0)} photos ({ph.get('heldout', 0)} held out), "
              f"{ph.get('references', 0)} reference(s); ICT {counts['ict']}, OCT {counts['oct']}, VLT {counts['vlt']}")
    for w in summary["warnings"]:
        print(f"warning: {w}")
    return 0


def _adapters_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="repic-train adapters", description="Trained LoRA adapters of a library.")
    p.add_argument("--library")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("list")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("activate", help="use it for captioning (sets the model settings)")
    s.add_argument("name")
    s.add_argument("--force", action="store_true", help="activate even a flagged adapter")
    s = sub.add_parser("remove")
    s.add_argument("name")
    s.add_argument("--delete-files", action="store_true", help="also delete its folder")
    s = sub.add_parser("export", help="copy the adapter files to a new folder")
    s.add_argument("name")
    s.add_argument("dest")
    s = sub.add_parser("merge", help="merge into the base model (fp32) in a new folder")
    s.add_argument("name")
    s.add_argument("dest")
    return p


def cmd_adapters(argv: list[str]) -> int:
    from . import adapters as ad

    args = _adapters_parser().parse_args(argv)
    try:
        with _open_library(args.library) as library:
            if args.cmd == "list":
                rows = ad.adapter_rows(library)
                if args.json:
                    print(json.dumps(rows, ensure_ascii=False, indent=2))
                elif not rows:
                    print("no adapters yet: train one with `repic-train --base MODEL`")
                for r in rows if not args.json else []:
                    m = r["metrics"]
                    f1 = lambda k: (m.get(k) or {}).get("f1")  # noqa: E731
                    score = "" if f1("after") is None else f"  F1 {f1('before'):.2f} -> {f1('after'):.2f}"
                    if r["status"] != "ready":
                        ckpt = f"; {r['checkpoints']} checkpoint(s), --resume continues" if r["checkpoints"] else ""
                        print(f"{r['name']} [{r['status']}]  {r['reason']}{ckpt}  (remove with `repic-train "
                              f"adapters remove {r['name']} --delete-files`)")
                        continue
                    marks = (" [active]" if r["active"] else "") + (" [flagged]" if r["flagged"] else "") + \
                        ("" if r["exists"] else " [folder missing]")
                    print(f"{r['name']}{marks}  base {r['base_model']}  concepts {', '.join(r['concepts'])}{score}")
                return 0
            if args.cmd == "activate":
                out: dict[str, Any] = ad.activate(library, args.name, force=args.force)
                print(f"activated {out['name']}: captions now use {out['source']} + {out['adapter']}")
            elif args.cmd == "remove":
                out = ad.remove(library, args.name, delete_files=args.delete_files)
                if out.get("run"):
                    print(f"deleted the files of the unfinished run {out['name']} in {out['path']}")
                else:
                    print(f"removed {out['name']}" + (" (deactivated)" if out["deactivated"] else "")
                          + (" and deleted its files" if out["deleted"] else f"; its files stay in {out['path']}"))
            elif args.cmd == "export":
                out = ad.export(library, args.name, args.dest)
                print(f"exported {out['name']} to {out['path']}")
            elif args.cmd == "merge":
                out = ad.merge(library, args.name, args.dest)
                print(f"merged {out['name']} into {out['path']} (float32 safetensors)")
    except (RepicError, OSError) as exc:
        print(error_line(f"repic-train: error: {exc}"), file=sys.stderr)
        return EXIT_ERROR
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # training never downloads: `repic model download` does
    # `repic --library P caption` habits: accept the library option before the subcommand too
    if len(argv) >= 2 and argv[0].startswith("--library=") and argv[1] in ("dataset", "adapters"):
        argv = [argv[1], argv[0], *argv[2:]]
    elif len(argv) >= 3 and argv[0] == "--library" and argv[2] in ("dataset", "adapters"):
        argv = [argv[2], *argv[:2], *argv[3:]]
    if argv and argv[0] == "dataset":
        return cmd_dataset(argv[1:])
    if argv and argv[0] == "adapters":
        return cmd_adapters(argv[1:])
    return cmd_train(argv)


if __name__ == "__main__":
    sys.exit(main())

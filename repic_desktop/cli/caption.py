"""`repic prompt`, `repic caption`, `repic captions list`: the captioning commands of the CLI."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from ..captioning import models as caption_models
from ..captioning.engine import CaptionEngine
from ..captioning.jobs import MAX_REFS_RANGE, JobParamsError, job_params, resumable_jobs, run_caption_job
from ..captioning.models import (
    ModelError,
    ModelLoadError,
    ModelSpec,
    QuantizationUnavailable,
    resolve_adapter_source,
)
from ..captioning.prompt import (
    MAX_PIXELS,
    REFERENCE_STYLES,
    SYSTEM_PROMPTS,
    PromptError,
    build_prompt,
    max_pixels,
    render,
    resolve_request,
    visual_tokens,
)
from ..core import paths
from ..core.arg_types import nonempty_text, number, record_id, whole_number
from ..core.images import inspect_image
from ..core.jobs import JobStore
from ..core.library import Library
from ..core.settings import Settings
from ..retrieval.service import auto_params, retrieval_settings
from .common import UserError
from .output import terminal_safe, write_json


def _user_error(msg: str) -> Exception:
    return UserError(msg)


def _emit_json(data: Any) -> None:
    write_json(data, indent=None)  # one line per photo: a run streams its results


# ---------------------------------------------------------------------------------------------- prompt

def cmd_prompt(args: argparse.Namespace) -> int:
    with Library(paths.resolve_library_path(args.library)) as lib:
        photo = lib.resolve_photo(args.photo)
        try:
            request = resolve_request(args.request, args.request_preset)
            prompt = build_prompt(lib, photo.id, names=args.concept, max_refs=args.max_refs, request=request,
                                  system_preset=args.system_preset, style=args.style)
            text = render(prompt)
        except PromptError as exc:
            raise _user_error(str(exc)) from None
        images = []
        for ref in prompt.images():
            size = None
            try:
                info = inspect_image(ref.path)
                w, h = (ref.box[2], ref.box[3]) if ref.box else (info.width, info.height)
                size = [w, h]
                tokens = visual_tokens(h, w, max_pixels=args.max_pixels)
            except Exception as exc:  # shown, not fatal: the point of this command is inspection
                tokens = f"unreadable: {exc}"
            images.append({"path": ref.path, "box": list(ref.box) if ref.box else None, "size": size,
                           "visual_tokens": tokens})
    data = {"photo": photo.id, "prompt": text, "images": images, "concepts": prompt.expected_names(),
            "prompt_hash": prompt.prompt_hash()}
    if args.json:
        _emit_json(data)
    else:
        lines = [text.rstrip("\n"), "---- images, in prompt order:"]
        for i, im in enumerate(images, 1):
            box = f" box {','.join(map(str, im['box']))}" if im["box"] else ""
            lines.append(f"{i}. {im['path']}{box}  ({im['visual_tokens']} visual tokens)")
        print(terminal_safe("\n".join(lines)))
    return 0


# ---------------------------------------------------------------------------------------------- captions list

def cmd_captions_list(args: argparse.Namespace) -> int:
    with Library(paths.resolve_library_path(args.library)) as lib:
        photo = lib.resolve_photo(args.photo)
        history = [c.as_dict() for c in lib.caption_history(photo.id)]
        current = photo.current_caption_id
    if args.json:
        _emit_json({"photo": photo.id, "path": photo.path, "current": current, "captions": history})
        return 0
    if not history:
        print(terminal_safe(f"{photo.path}: no captions yet"))
        return 0
    for c in history:
        mark = "*" if c["id"] == current else " "
        prov = c["provenance"]
        who = c["model_id"] or c["source"]
        if prov.get("quantization") not in (None, "none"):
            who += f" ({prov['quantization']})"
        print(terminal_safe(f"{mark} {c['id']:>5} [{c['status']}] {who}: {c['text']}"))
    return 0


# ---------------------------------------------------------------------------------------------- jobs

def _job_line(job) -> str:
    counts = ", ".join(f"{n} {k}" for k, n in sorted(job.counts.items())) or "no photos"
    return f"{job.id:>5} {job.kind:<8} {job.status:<9} {counts}" + (f"  ({job.error})" if job.error else "")


def cmd_jobs_list(args: argparse.Namespace) -> int:
    with Library(paths.resolve_library_path(args.library)) as lib:
        jobs = JobStore(lib).list(args.kind)
    if args.json:
        _emit_json([j.as_dict() for j in jobs])
    else:
        print(terminal_safe("\n".join(_job_line(j) for j in jobs) if jobs else "no jobs"))
    return 0


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    with Library(paths.resolve_library_path(args.library)) as lib:
        job = JobStore(lib).cancel(args.job)
    if args.json:
        _emit_json(job.as_dict())
    else:
        print(terminal_safe(f"cancelled job {job.id}"))
    return 0


def cmd_jobs_remove(args: argparse.Namespace) -> int:
    with Library(paths.resolve_library_path(args.library)) as lib:
        job = JobStore(lib).remove(args.job, force=args.force)
    if args.json:
        _emit_json({"removed": job.id})
    else:
        print(f"removed job {job.id} (its captions stay)")
    return 0


# ---------------------------------------------------------------------------------------------- caption

def _select_photos(lib: Library, args: argparse.Namespace) -> list[int]:
    if args.photos:
        return [lib.resolve_photo(p).id for p in args.photos]
    if args.all:
        return [p.id for p in lib.list_photos()]
    if args.uncaptioned:
        return [p.id for p in lib.list_photos(uncaptioned=True)]
    raise _user_error("say which photos: PHOTO ..., --all or --uncaptioned (or --resume)")


def cmd_caption(args: argparse.Namespace) -> int:
    lib = Library(paths.resolve_library_path(args.library))
    try:
        store = JobStore(lib)
        settings = Settings.load()
        if args.resume:
            if args.photos or args.all or args.uncaptioned:
                raise _user_error("--resume continues the last unfinished job: give no photos with it")
            jobs, unrunnable = resumable_jobs(store)
            for bad, reason in unrunnable:
                if not args.json:
                    print(f"job {bad.id}: marked failed: {reason}", file=sys.stderr)
            if not jobs:
                raise _user_error("no unfinished captioning job to resume")
            job = jobs[0]
            spec = ModelSpec(**job.params["model"])
        else:
            try:  # a folder, or the name of an adapter repic-train registered in this library
                adapter = resolve_adapter_source(args.adapter, lib)
            except ModelLoadError as exc:
                raise _user_error(str(exc)) from None
            overrides = {k: v for k, v in dict(source=args.model, adapter=adapter, quantization=args.quant,
                                               device=args.device, max_pixels=args.max_pixels).items()
                         if v is not None}
            try:
                spec = ModelSpec.from_user_settings(settings, lib, **overrides)
            except ValueError as exc:
                raise _user_error(str(exc)) from None
            try:  # an explicit --request wins over the user's default preset
                preset = args.request_preset or (None if args.request else settings.caption_default("request_preset"))
                request = resolve_request(args.request, preset, settings.caption_default("request_presets"))
            except PromptError as exc:
                raise _user_error(str(exc)) from None
            # `is None`, not `or`: an explicit 0 is a mistake to report, not "use the default"
            batch_size = args.batch_size if args.batch_size is not None else int(settings.caption_default("batch_size"))
            max_new_tokens = (args.max_new_tokens if args.max_new_tokens is not None
                              else int(settings.caption_default("max_new_tokens")))
            try:
                params = job_params(model=dataclasses.asdict(spec), concepts=args.concept, request=request,
                                    system_preset=args.system_preset or settings.caption_default("system_preset"),
                                    max_refs=args.max_refs, batch_size=batch_size, max_pixels=spec.max_pixels,
                                    max_new_tokens=max_new_tokens, min_new_tokens=args.min_new_tokens)
            except JobParamsError as exc:
                raise _user_error(str(exc)) from None
            for name in args.concept or []:
                lib.concept(name)  # a typo fails now, not after the model has loaded
            photo_ids = _select_photos(lib, args)
            skipped = []
            if not args.force:
                captioned = [lib.photo(pid).current_caption_id is not None for pid in photo_ids]
                skipped = [pid for pid, done in zip(photo_ids, captioned) if done]
                photo_ids = [pid for pid, done in zip(photo_ids, captioned) if not done]
            for pid in skipped:
                if args.json:
                    _emit_json({"photo": pid, "skipped": "already captioned (use --force to caption again)"})
            if not photo_ids:
                msg = "nothing to caption" + (f": {len(skipped)} photo(s) already captioned (use --force)"
                                              if skipped else "")
                if not args.json:
                    print(msg, file=sys.stderr)
                return 0
            if args.auto or args.auto_include_suggestions:
                params.update(_auto_params(lib, photo_ids, args, settings))
            # Load before creating the job: a model that cannot load leaves no job behind to "resume".
            loaded = _load(spec)
            job = store.create(photo_ids, params)
        if args.resume:
            try:
                loaded = _load(spec)
            except Exception as exc:
                store.set_status(job.id, "paused", str(exc))
                raise
        return _run(lib, store, job.id, loaded, args)
    finally:
        lib.close()


def _auto_params(lib: Library, photo_ids: list[int], args: argparse.Namespace, settings) -> dict[str, Any]:
    """--auto: each photo's concepts are its confirmed ones plus, when allowed, its pending suggestions,
    in RePIC's order. Fixed when the job is created, so `--resume` captions with the same names."""
    if args.concept:
        raise _user_error("--auto picks each photo's own concepts: do not combine it with --concept")
    cfg = retrieval_settings(settings)
    include = bool(args.auto_include_suggestions or cfg.get("auto_include_suggestions"))
    threshold = args.auto_threshold if args.auto_threshold is not None else cfg.get("threshold")
    top_k = args.auto_top_k if args.auto_top_k is not None else cfg.get("top_k")
    return auto_params(lib, photo_ids, include_suggestions=include, threshold=threshold, top_k=top_k)


def _load(spec):
    try:
        return caption_models.load_model(spec)  # looked up at call time: tests replace the loader
    except (ModelError, QuantizationUnavailable) as exc:
        raise _user_error(str(exc)) from None


def _run(lib: Library, store, job_id: int, loaded, args: argparse.Namespace) -> int:
    job = store.get(job_id)
    p = job.params
    if not args.json:
        print(f"job {job_id}: {job.remaining} photo(s) to caption with {loaded.id_string()}", file=sys.stderr)
    engine = CaptionEngine.from_loaded(loaded, batch_size=p["batch_size"], max_new_tokens=p["max_new_tokens"],
                                       min_new_tokens=p.get("min_new_tokens"))
    bar = None
    if not args.json and not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=job.remaining, unit="photo", desc="captioning", file=sys.stderr, disable=None)

    def progress(done: int, total: int, eta: float | None, key: Any) -> None:
        if bar is not None:
            bar.n = done
            bar.refresh()

    def on_outcome(outcome) -> None:
        if args.json:
            _emit_json(outcome.as_dict())
        elif outcome.error:
            (bar.write if bar is not None else print)(f"photo {outcome.photo_id}: skipped: {outcome.error}")

    try:
        summary = run_caption_job(lib, job_id, engine, model_provenance=loaded.provenance(), progress=progress,
                                  on_outcome=on_outcome)
    finally:
        if bar is not None:
            bar.close()
    # No engine.unload(): the process ends here, and freeing the model first costs a full gc pass over
    # every torch and transformers object (0.1-0.3 s) for nothing.
    if not args.json:
        print(f"job {job_id}: {summary.done} captioned, {summary.failed} failed, {summary.remaining} left "
              f"({summary.seconds:.1f} s)", file=sys.stderr)
    return 0 if summary.failed == 0 else 3


# ---------------------------------------------------------------------------------------------- parser

def add_caption_commands(sub, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("prompt", parents=[common], help="show the exact RePIC prompt for a photo")
    s.add_argument("photo", help="photo id or path")
    s.add_argument("--concept", action="append", type=nonempty_text, metavar="NAME",
                   help="concept to include (default: the photo's own)")
    s.add_argument("--request", type=nonempty_text, help="caption request text")
    s.add_argument("--request-preset", type=nonempty_text, metavar="NAME")
    s.add_argument("--system-preset", default="repic", choices=list(SYSTEM_PROMPTS))
    s.add_argument("--style", default="eval", choices=list(REFERENCE_STYLES))
    s.add_argument("--max-refs", type=whole_number(*MAX_REFS_RANGE), default=1,
                   help="reference photos per concept (default 1, as RePIC)")
    s.add_argument("--max-pixels", type=max_pixels, default=MAX_PIXELS)
    s.set_defaults(func=cmd_prompt)

    s = sub.add_parser("caption", parents=[common], help="caption photos (a durable job; --resume continues it)")
    s.add_argument("photos", nargs="*", metavar="PHOTO", help="photo ids or paths")
    s.add_argument("--all", action="store_true", help="every photo in the library")
    s.add_argument("--uncaptioned", action="store_true", help="photos without a caption")
    s.add_argument("--concept", action="append", type=nonempty_text, metavar="NAME",
                   help="use these concepts for every photo (default: each photo's own)")
    s.add_argument("--model", type=nonempty_text, metavar="SPEC", help="hub id or local folder (default: settings)")
    s.add_argument("--adapter", type=nonempty_text, metavar="NAME|DIR",
                   help="LoRA adapter applied unmerged: a name from `repic-train adapters list` or a folder")
    s.add_argument("--quant", choices=["none", "4bit", "8bit"])
    s.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--batch-size", type=int, help="photos per batch (default: settings, 4)")
    s.add_argument("--max-pixels", type=int, help=f"per image (default {MAX_PIXELS}, as RePIC)")
    s.add_argument("--max-new-tokens", type=int, help="default: settings, 1024 as RePIC")
    s.add_argument("--min-new-tokens", type=int, help=argparse.SUPPRESS)  # benchmarks / tests
    s.add_argument("--max-refs", type=int, default=1)
    s.add_argument("--auto", action="store_true",
                   help="each photo's confirmed people/pets (see `repic suggest`), closest match first")
    s.add_argument("--auto-include-suggestions", action="store_true",
                   help="with --auto (implied): also unconfirmed suggestions above the threshold")
    s.add_argument("--auto-threshold", type=number(0, 1, lo_open=True), metavar="SIM",
                   help="similarity a suggestion needs (default: settings, else every stored suggestion)")
    s.add_argument("--auto-top-k", type=whole_number(1, 1000), metavar="K",
                   help="at most K concepts per photo with suggestions")
    s.add_argument("--request", type=nonempty_text, help="caption request text")
    s.add_argument("--request-preset", type=nonempty_text, metavar="NAME")
    s.add_argument("--system-preset", choices=list(SYSTEM_PROMPTS))
    s.add_argument("--resume", action="store_true", help="finish the last unfinished job")
    s.add_argument("--force", action="store_true", help="caption photos that already have a caption")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_caption)

    jobs = sub.add_parser("jobs", help="captioning and indexing jobs").add_subparsers(dest="sub", metavar="SUBCOMMAND")
    jobs.required = True
    s = jobs.add_parser("list", parents=[common], help="every job, newest first")
    s.add_argument("--kind", choices=["caption", "index"])
    s.set_defaults(func=cmd_jobs_list)
    s = jobs.add_parser("cancel", parents=[common], help="stop offering an unfinished job for resume")
    s.add_argument("job", type=record_id)
    s.set_defaults(func=cmd_jobs_cancel)
    s = jobs.add_parser("remove", parents=[common], help="delete a job (its captions stay)")
    s.add_argument("job", type=record_id)
    s.add_argument("--force", action="store_true", help="also a job marked running (its process is gone)")
    s.set_defaults(func=cmd_jobs_remove)

    captions = sub.add_parser("captions", help="caption history").add_subparsers(dest="sub", metavar="SUBCOMMAND")
    captions.required = True
    s = captions.add_parser("list", parents=[common], help="every caption a photo has had")
    s.add_argument("photo", help="photo id or path")
    s.set_defaults(func=cmd_captions_list)

"""`repic prompt`, `repic caption`, `repic captions list|accept|edit|revert`: the captioning commands of the CLI.

Jobs are planned by app/caption_jobs.py and review steps are app/caption_review.py's, the same code the
GUI's caption dialog and photo panel run, so both fronts make the same jobs and keep the same history."""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from typing import Any

from ..app import caption_review as review
from ..app.caption_jobs import (CaptionOptions, backend_choice, create_caption_job, plan_caption_job,
                                plan_prompt)
from ..captioning import models as caption_models
from ..captioning.backends import LocalBackend, remote_backend_for_job
from ..captioning.device import advice_for_spec
from ..captioning.jobs import MAX_REFS_RANGE, resumable_jobs, run_caption_job
from ..captioning.models import ModelSpec
from ..captioning.prompt import MAX_PIXELS, REFERENCE_STYLES, SYSTEM_PROMPTS, max_pixels, render, visual_tokens
from ..core import paths
from ..core.arg_types import nonempty_text, number, record_id, whole_number
from ..core.images import inspect_image
from ..core.jobs import JobStore
from ..core.library import Library
from ..core.settings import Settings
from .common import UserError
from .output import terminal_safe, write_json
from .server import check_remote_args


def _user_error(msg: str) -> Exception:
    return UserError(msg)


def _emit_json(data: Any) -> None:
    write_json(data, indent=None)  # one line per photo: a run streams its results


# ---------------------------------------------------------------------------------------------- prompt

def _options(args: argparse.Namespace, **extra: Any):
    """The command line's choices as app.caption_jobs options (None: the user's settings)."""
    auto = {"include_suggestions": True if args.auto_include_suggestions else None,
            "threshold": args.auto_threshold, "top_k": args.auto_top_k}
    return CaptionOptions(concepts=args.concept, request=args.request, request_preset=args.request_preset,
                          system_preset=args.system_preset, max_refs=args.max_refs, **auto, **extra)


def _check_auto(args: argparse.Namespace) -> None:
    if args.concept and (getattr(args, "auto", False) or args.auto_include_suggestions
                         or args.auto_threshold is not None or args.auto_top_k is not None):
        raise _user_error("--auto picks each photo's own concepts: do not combine it with --concept")


def cmd_prompt(args: argparse.Namespace) -> int:
    """What `repic caption` with the same options would send for this photo (app/caption_jobs.py)."""
    _check_auto(args)
    settings = Settings.load()
    pixels = args.max_pixels if args.max_pixels is not None else int(settings.caption_default("max_pixels"))
    with Library(paths.resolve_library_path(args.library)) as lib:
        photo = lib.photos.resolve(args.photo)
        prompt = plan_prompt(lib, settings, photo.id, _options(args), style=args.style)
        text = render(prompt)
        images = []
        for ref in prompt.images():
            size = None
            try:
                info = inspect_image(ref.path)
                w, h = (ref.box[2], ref.box[3]) if ref.box else (info.width, info.height)
                size = [w, h]
                tokens = visual_tokens(h, w, max_pixels=pixels)
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
        photo = lib.photos.resolve(args.photo)
        history = [c.as_dict() for c in lib.captions.history(photo.id)]
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


# ---------------------------------------------------------------------------------------------- review

def _review_line(lib: Library, change, verb: str) -> str:
    cap = lib.captions.current(change.photo_id)
    text = f"photo {change.photo_id}: {verb} caption {change.current_after}"
    return text + (f": {cap.text}" if cap is not None else "")


def _review_row(lib: Library, change) -> dict[str, Any]:
    cap = lib.captions.current(change.photo_id)
    return {**change.as_dict(), "caption": cap.id if cap else None, "text": cap.text if cap else None,
            "caption_status": cap.status if cap else None}


def cmd_captions_accept(args: argparse.Namespace) -> int:
    if bool(args.photos) == bool(args.all_drafts):
        raise _user_error("say which captions: PHOTO ... or --all-drafts")
    with Library(paths.resolve_library_path(args.library)) as lib:
        ids = ([lib.photos.resolve(p).id for p in args.photos] if args.photos else review.draft_photo_ids(lib))
        for pid in ids:  # every photo checked before any is changed: a typo changes nothing
            if lib.captions.current(pid) is None:
                raise _user_error(f"photo {pid} has no caption to accept (caption it first: `repic caption {pid}`)")
        for pid in dict.fromkeys(ids):
            change = review.accept_caption(lib, pid)
            if args.json:
                _emit_json(_review_row(lib, change))
            else:
                print(terminal_safe(_review_line(lib, change, "accepted" if change.changed else "already accepted")))
    if not args.json and not ids:
        print("no draft captions to accept", file=sys.stderr)
    return 0


def _edit_in_editor(initial: str) -> str:
    """$VISUAL or $EDITOR on a temporary file holding the caption; what is saved is the new text."""
    import tempfile
    from pathlib import Path

    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not editor:
        raise _user_error("--editor needs $VISUAL or $EDITOR (or give the text with --text)")
    with tempfile.TemporaryDirectory(prefix="repic-caption-") as folder:  # private (0700), removed after
        path = Path(folder) / "caption.txt"
        path.write_text(initial + "\n", encoding="utf-8")
        try:
            done = subprocess.run([*shlex.split(editor), str(path)])
        except OSError as exc:
            raise _user_error(f"cannot start the editor {editor!r}: {exc.strerror or exc}") from None
        if done.returncode != 0:
            raise _user_error(f"the editor exited with status {done.returncode}: the caption was not changed")
        return path.read_text(encoding="utf-8", errors="replace")


def cmd_captions_edit(args: argparse.Namespace) -> int:
    if (args.text is None) == (not args.editor):
        raise _user_error("give the new caption with --text TEXT or --editor")
    with Library(paths.resolve_library_path(args.library)) as lib:
        photo = lib.photos.resolve(args.photo)
        text = args.text
        if args.editor:
            cur = lib.captions.current(photo.id)
            text = _edit_in_editor(cur.text if cur else "")
        change = review.edit_caption(lib, photo.id, text)
        if args.json:
            _emit_json(_review_row(lib, change))
        else:
            print(terminal_safe(_review_line(lib, change, "new" if change.changed else "unchanged")))
    return 0


def cmd_captions_revert(args: argparse.Namespace) -> int:
    with Library(paths.resolve_library_path(args.library)) as lib:
        photo = lib.photos.resolve(args.photo)
        change = review.revert_caption(lib, photo.id, args.to)
        if args.json:
            _emit_json(_review_row(lib, change))
        else:
            print(terminal_safe(_review_line(lib, change, "back to" if change.changed else "already at")))
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
        return [lib.photos.resolve(p).id for p in args.photos]
    if args.all:
        return [p.id for p in lib.photos.list()]
    if args.uncaptioned:
        return [p.id for p in lib.photos.list(uncaptioned=True)]
    raise _user_error("say which photos: PHOTO ..., --all or --uncaptioned (or --resume)")


def cmd_caption(args: argparse.Namespace) -> int:
    settings = Settings.load()
    lib = Library(paths.resolve_library_path(args.library))
    try:
        store = JobStore(lib)
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
            params = dict(job.params)
            remote = _remote_choice(args, settings, job.params.get("backend"), resume=True)
            if remote is not None:
                params["backend"] = remote
            elif args.local:
                params.pop("backend", None)
            try:
                backend = _backend(spec, params, args, settings)
            except Exception as exc:
                store.set_status(job.id, "paused", str(exc))
                raise
            return _run(lib, store, job.id, backend, args)
        _check_auto(args)
        check_remote_args(args)
        # The same plan the GUI's caption dialog makes: presets, skip rule, max_refs, suggestion options,
        # and where the photos go (--server, else the default server from Settings, else this computer).
        plan = plan_caption_job(lib, settings, _select_photos(lib, args), _options(
            args, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, min_new_tokens=args.min_new_tokens,
            model=args.model, adapter=args.adapter, quantization=args.quant, device=args.device,
            max_pixels=args.max_pixels, skip_captioned=not args.force, **_server_options(args)))
        for pid in plan.skipped:
            if args.json:
                _emit_json({"photo": pid, "skipped": "already captioned (use --force to caption again)"})
        if plan.empty:
            if not args.json:
                print("nothing to caption" + (f": {len(plan.skipped)} photo(s) already captioned (use --force)"
                                              if plan.skipped else ""), file=sys.stderr)
            return 0
        # Load (or connect) before creating the job: a model that cannot load leaves no job behind to "resume".
        backend = _backend(plan.spec, plan.params, args, settings)
        job = create_caption_job(lib, plan)
        return _run(lib, store, job.id, backend, args)
    finally:
        lib.close()


def _check_device(spec) -> None:
    """No GPU, an old driver or too little GPU memory for the chosen precision: said before the model
    loads (minutes, for a 7B model), with what to do instead."""
    advice = advice_for_spec(spec)
    if advice.level == "stop":
        raise _user_error(advice.text())
    if advice.level == "warn":
        print(f"repic: warning: {terminal_safe(advice.text())}", file=sys.stderr)


def _server_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"servers": args.server or None, "local": bool(args.local), "served_model": args.served_model,
            "in_flight": args.in_flight, "allow_http": bool(args.allow_http)}


def _remote_choice(args: argparse.Namespace, settings, stored: dict[str, Any] | None, *,
                   resume: bool) -> dict[str, Any] | None:
    """Where a job's photos go (app.caption_jobs.backend_choice, the rule the GUI uses too)."""
    check_remote_args(args)
    return backend_choice(settings, CaptionOptions(**_server_options(args)), stored=stored, resume=resume)


def _backend(spec, params: dict[str, Any], args: argparse.Namespace, settings):
    """A connected RemoteBackend for a remote job, else a LocalBackend with the model loaded."""
    backend = params.get("backend")
    if not backend:  # a key or CA file given for a job that stays on this computer is a mistake: say so
        given = [o for o, v in (("--api-key-env", args.api_key_env), ("--ca-file", args.ca_file)) if v is not None]
        if given:
            raise _user_error(f"{given[0]} applies to a caption server: give --server URL (or set one in Settings)")
    if backend and backend.get("kind") == "remote":
        # RemoteError is a RepicError: main() prints it as one line
        remote = remote_backend_for_job(params, settings=settings, api_key_env=args.api_key_env,
                                        ca_file=args.ca_file, allow_http=args.allow_http)
        remote.connect()
        return remote
    _check_device(spec)
    return LocalBackend.from_loaded(_load(spec), batch_size=params["batch_size"],
                                    max_new_tokens=params["max_new_tokens"], min_new_tokens=params.get("min_new_tokens"))


def _load(spec):
    # looked up at call time: tests replace the loader; its errors are ModelErrors (RepicError), one line
    # from main()
    return caption_models.load_model(spec)


def _run(lib: Library, store, job_id: int, backend, args: argparse.Namespace) -> int:
    job = store.get(job_id)
    local = isinstance(backend, LocalBackend)
    if not args.json:
        what = backend.loaded.id_string() if local else \
            f"{backend.provenance()['served_model']} on {', '.join(backend.urls)} (photos are sent there)"
        print(f"job {job_id}: {job.remaining} photo(s) to caption with {what}", file=sys.stderr)
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
        summary = run_caption_job(lib, job_id, backend, model_provenance=backend.provenance(), progress=progress,
                                  on_outcome=on_outcome)
    finally:
        if bar is not None:
            bar.close()
        if not local:  # a remote client: close its connections
            backend.unload()
        # A local model is not unloaded: the process ends here, and freeing it first costs a full gc pass
        # over every torch and transformers object (0.1-0.3 s) for nothing.
    if args.json and summary.stopped:
        _emit_json({"job": job_id, "paused": summary.stopped, "remaining": summary.remaining})
    if not args.json:
        print(f"job {job_id}: {summary.done} captioned, {summary.failed} failed, {summary.remaining} left "
              f"({summary.seconds:.1f} s)", file=sys.stderr)
    if summary.stopped:
        raise _user_error(f"job {job_id} paused: {summary.stopped}")
    return 0 if summary.failed == 0 else 3


# ---------------------------------------------------------------------------------------------- parser

def _add_suggestion_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--auto-include-suggestions", action="store_true",
                   help="each photo's own: also unconfirmed suggestions above the threshold (default: settings)")
    s.add_argument("--auto-threshold", type=number(0, 1, lo_open=True), metavar="SIM",
                   help="similarity a suggestion needs (default: settings, else every stored suggestion)")
    s.add_argument("--auto-top-k", type=whole_number(1, 1000), metavar="K",
                   help="at most K concepts per photo with suggestions")


def add_caption_commands(sub, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("prompt", parents=[common],
                       help="show the exact prompt `repic caption` with the same options sends for a photo")
    s.add_argument("photo", help="photo id or path")
    s.add_argument("--concept", action="append", type=nonempty_text, metavar="NAME",
                   help="concept to include (default: the photo's own)")
    s.add_argument("--request", type=nonempty_text, help="caption request text")
    s.add_argument("--request-preset", type=nonempty_text, metavar="NAME", help="default: settings")
    s.add_argument("--system-preset", choices=list(SYSTEM_PROMPTS), help="default: settings")
    s.add_argument("--style", default="eval", choices=list(REFERENCE_STYLES),
                   help="reference lines as RePIC's eval scripts (default, what jobs send) or its notebook")
    s.add_argument("--max-refs", type=whole_number(*MAX_REFS_RANGE),
                   help="reference photos per concept (default: settings, 1 as RePIC)")
    s.add_argument("--max-pixels", type=max_pixels, help=f"for the visual token counts (default: settings, {MAX_PIXELS})")
    _add_suggestion_options(s)
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
    s.add_argument("--max-refs", type=int, help="reference photos per concept (default: settings, 1 as RePIC)")
    s.add_argument("--auto", action="store_true",
                   help="each photo's own people/pets, closest match first (the default without --concept)")
    _add_suggestion_options(s)
    s.add_argument("--request", type=nonempty_text, help="caption request text")
    s.add_argument("--request-preset", type=nonempty_text, metavar="NAME")
    s.add_argument("--system-preset", choices=list(SYSTEM_PROMPTS))
    s.add_argument("--resume", action="store_true", help="finish the last unfinished job")
    s.add_argument("--force", action="store_true", help="caption photos that already have a caption")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--server", action="append", metavar="URL",
                   help="caption on this OpenAI-compatible server (vLLM, `repic serve`); repeat for several. "
                        "Photos are sent there. Default: the server in Settings, if any")
    s.add_argument("--local", action="store_true", help="caption on this computer even if Settings name a server")
    s.add_argument("--in-flight", type=whole_number(1, 256), metavar="N",
                   help="requests at the server(s) at once (default 8)")
    from .server import add_remote_options

    add_remote_options(s)
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
    s = captions.add_parser("accept", parents=[common], help="accept photos' current captions (also `repic caption accept`)")
    s.add_argument("photos", nargs="*", metavar="PHOTO", help="photo ids or paths")
    s.add_argument("--all-drafts", action="store_true", help="every photo whose current caption is a draft")
    s.set_defaults(func=cmd_captions_accept)
    s = captions.add_parser("edit", parents=[common],
                            help="write a new version of a photo's caption (a draft; the old one stays in the history)")
    s.add_argument("photo", help="photo id or path")
    s.add_argument("--text", type=nonempty_text, help="the new caption")
    s.add_argument("--editor", action="store_true", help="edit the current caption in $VISUAL / $EDITOR")
    s.set_defaults(func=cmd_captions_edit)
    s = captions.add_parser("revert", parents=[common],
                            help="go back to the previous caption, or to --to VERSION (see `repic captions list`)")
    s.add_argument("photo", help="photo id or path")
    s.add_argument("--to", type=record_id, metavar="VERSION", help="a caption id from `repic captions list PHOTO`")
    s.set_defaults(func=cmd_captions_revert)

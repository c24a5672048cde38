"""`repic model ...`: download, list and choose the captioning model (settings' ``model`` section).

    repic model download [ID] [--revision R] [--cache-dir DIR] [--set-default]
    repic model list [--cache-dir DIR] [--all] [--json]
    repic model set [--source S] [--revision R] [--adapter A] [--quant none|4bit|8bit] [--device D]
                    [--cache-dir DIR]

Registered by ``repic_desktop.cli.build_parser`` through ``add_model_command``.  User errors are raised as
``repic_desktop.cli.UserError`` (imported inside functions: cli imports this module).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

_CLEAR = {"none", "null", "-", ""}


def _user_error(message: str) -> Exception:
    from .cli import UserError

    return UserError(message)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if getattr(args, "json", False):
        json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    elif text:
        print(text)


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _local_or_value(value: str) -> str:
    """An existing folder is stored as an absolute path (so it works from any working directory)."""
    expanded = os.path.expanduser(value)
    return os.path.abspath(expanded) if os.path.isdir(expanded) else value


# ----------------------------------------------------------------------------------------------- download


def cmd_model_download(args: argparse.Namespace) -> int:
    from .captioning.model_manager import DownloadError, download_model, is_local_path
    from .core.settings import Settings

    settings = Settings.load()
    repo_id = args.id or settings.model.source
    if is_local_path(repo_id):
        raise _user_error(f"{repo_id} is a local folder, nothing to download: give a Hugging Face id such as "
                          f"Yeongtak/RePIC_Qwen2.5VL_7B")
    cache_dir = args.cache_dir if args.cache_dir is not None else settings.model.cache_dir
    try:  # progress: huggingface_hub's own tqdm bars, on stderr (stdout stays clean for --json)
        path = download_model(repo_id, revision=args.revision, cache_dir=cache_dir)
    except DownloadError as exc:
        raise _user_error(str(exc)) from None
    data: dict[str, Any] = {"id": repo_id, "revision": args.revision, "path": str(path),
                            "commit": path.name, "cache_dir": cache_dir, "set_default": bool(args.set_default)}
    if args.set_default:
        settings.model.source = repo_id
        settings.model.revision = args.revision
        settings.model.cache_dir = cache_dir
        settings.save()
    text = f"{repo_id} is ready in {path}"
    if args.set_default:
        text += "\nit is now the default model"
    _emit(args, data, text)
    return 0


# ---------------------------------------------------------------------------------------------------- list


def cmd_model_list(args: argparse.Namespace) -> int:
    from .captioning.model_manager import list_models
    from .core.settings import Settings

    settings = Settings.load()
    cache_dir = args.cache_dir if args.cache_dir is not None else settings.model.cache_dir
    models = list_models(cache_dir, all_models=args.all)
    rows = [m.as_dict() for m in models]
    for r in rows:
        r["default"] = r["repo_id"] == settings.model.source

    lines = []
    for m, r in zip(models, rows):
        revs = ", ".join(rv.commit[:12] + (f" ({', '.join(rv.refs)})" if rv.refs else "")
                         + ("" if rv.complete else " [incomplete]") for rv in m.revisions)
        mark = "*" if r["default"] else " "
        lines.append(f"{mark} {m.repo_id:<40} {m.kind:<7} {_human_size(m.size_on_disk):>9}  {revs}")
    if not lines:
        lines.append("no models downloaded yet: run `repic model download` (default "
                     f"{settings.model.source})" if not args.all else "the Hugging Face cache is empty")
    _emit(args, rows, "\n".join(lines))
    return 0


# ----------------------------------------------------------------------------------------------------- set


def cmd_model_set(args: argparse.Namespace) -> int:
    from .captioning.models import ModelSpec
    from .core.settings import Settings

    changes = {k: getattr(args, k) for k in ("source", "revision", "adapter", "quantization", "device", "cache_dir")
               if getattr(args, k) is not None}
    if not changes:
        raise _user_error("nothing to change: give --source, --revision, --adapter, --quant, --device or --cache-dir")
    settings = Settings.load()
    m = settings.model
    if "source" in changes:
        if changes["source"].strip().lower() in _CLEAR:
            raise _user_error("--source cannot be empty: give a Hugging Face id or a model folder")
        m.source = _local_or_value(changes["source"])
    for key in ("revision", "adapter", "cache_dir"):
        if key in changes:
            value = changes[key]
            value = None if value.strip().lower() in _CLEAR else value
            if value is not None and key != "revision":
                value = _local_or_value(value)
            setattr(m, key, value)
    if "quantization" in changes:
        m.quantization = changes["quantization"]
    if "device" in changes:
        m.device = changes["device"]
    try:  # validate the combination the same way the loader will
        ModelSpec.from_settings(m)
    except ValueError as exc:
        raise _user_error(str(exc)) from None
    settings.save()
    data = {"model": vars(m), "settings_file": str(Settings.path())}
    text = "\n".join([f"model:        {m.source}" + (f" @ {m.revision}" if m.revision else ""),
                      f"adapter:      {m.adapter or '-'}",
                      f"quantization: {m.quantization}",
                      f"device:       {m.device}",
                      f"cache:        {m.cache_dir or 'Hugging Face default'}"])
    _emit(args, data, text)
    return 0


# -------------------------------------------------------------------------------------------------- parser


def add_model_command(subparsers: Any, common_parent: argparse.ArgumentParser) -> None:
    """Register `repic model {download,list,set}` on the top-level subparsers."""
    model = subparsers.add_parser("model", help="download, list and choose the captioning model")
    sub = model.add_subparsers(dest="sub", metavar="SUBCOMMAND")
    sub.required = True

    s = sub.add_parser("download", parents=[common_parent],
                       help="download a model or LoRA adapter from the Hugging Face Hub (resumable)")
    s.add_argument("id", nargs="?", help="Hugging Face id (default: the model in the settings)")
    s.add_argument("--revision", help="branch, tag or commit to pin (default: main)")
    s.add_argument("--cache-dir", help="Hugging Face cache folder (default: the settings' cache_dir)")
    s.add_argument("--set-default", action="store_true",
                   help="afterwards make it the model used for captioning (source, revision, cache dir)")
    s.set_defaults(func=cmd_model_download)

    s = sub.add_parser("list", parents=[common_parent], help="models and adapters in the Hugging Face cache")
    s.add_argument("--cache-dir", help="Hugging Face cache folder (default: the settings' cache_dir)")
    s.add_argument("--all", action="store_true", help="also list cached repos that are not Qwen2.5-VL models")
    s.set_defaults(func=cmd_model_list)

    s = sub.add_parser("set", parents=[common_parent], help="change the model settings ('none' clears a value)")
    s.add_argument("--source", help="Hugging Face id or local model folder")
    s.add_argument("--revision", help="pinned revision, or 'none' for main")
    s.add_argument("--adapter", help="LoRA adapter folder or Hugging Face id, or 'none'")
    s.add_argument("--quant", dest="quantization", choices=["none", "4bit", "8bit"],
                   help="bitsandbytes quantization (needs an NVIDIA GPU)")
    s.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--cache-dir", help="Hugging Face cache folder, or 'none' for the default")
    s.set_defaults(func=cmd_model_set)

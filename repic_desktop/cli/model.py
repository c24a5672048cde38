"""`repic model ...`: download, list and choose the captioning model (settings' ``model`` section).

    repic model download [ID] [--revision R] [--cache-dir DIR] [--set-default | --use-for clip|dinov2|detector]
    repic model list [--cache-dir DIR] [--all] [--json]
    repic model set [--source S] [--revision R] [--adapter A] [--quant none|4bit|8bit] [--device D]
                    [--cache-dir DIR] [--clip F] [--dinov2 F] [--detector F] [--matcher M]

The suggestion matchers' folders (CLIP, DINOv2, the OWLv2 detector) live in the settings'
``extra["retrieval"]`` section, which ``retrieval.service.retrieval_settings`` reads.

Registered by ``repic_desktop.cli.build_parser`` through ``add_model_command``.  User errors are raised as
``repic_desktop.cli.UserError`` (imported inside functions: cli imports this module).
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from ..captioning import model_manager as mm
from ..captioning.model_manager import list_models, retrieval_section, set_matcher_folder
from ..captioning.models import ModelSpec
from ..core import paths
from ..core.arg_types import nonempty_text
from ..core.library import Library
from ..core.settings import DEFAULT_MODEL_SOURCE, Settings
from ..retrieval.registry import DEFAULT_MATCHER, DETECTOR_MODEL, MATCHER_MODELS, MATCHERS
from ..retrieval.service import available_matchers
from .common import UserError
from .output import emit as _emit

_CLEAR = {"none", "null", "-", ""}


def _user_error(message: str) -> Exception:
    return UserError(message)




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
    settings = Settings.load()
    use = getattr(args, "use_for", None)
    if use and args.set_default:
        raise _user_error("--set-default is for the captioning model; --use-for sets a suggestion matcher's "
                          "weights: give one of them")
    repo_id = args.id or (MATCHER_MODELS[use].default_id if use else settings.model.source)
    if mm.is_local_path(repo_id):
        hint = f"repic model set --{use} {repo_id}" if use else "repic model set --source FOLDER"
        raise _user_error(f"{repo_id} is a local folder, nothing to download: give a Hugging Face id such as "
                          f"{DEFAULT_MODEL_SOURCE}, or use `{hint}`")
    cache_dir = args.cache_dir if args.cache_dir is not None else settings.model.cache_dir
    kwargs: dict[str, Any] = {"allow_patterns": mm.MATCHER_ALLOW_PATTERNS} if use else {}
    try:  # progress: huggingface_hub's own tqdm bars, on stderr (stdout stays clean for --json)
        path = mm.download_model(repo_id, revision=args.revision, cache_dir=cache_dir, **kwargs)
    except mm.DownloadError as exc:
        raise _user_error(str(exc)) from None
    data: dict[str, Any] = {"id": repo_id, "revision": args.revision, "path": str(path),
                            "commit": path.name, "cache_dir": cache_dir, "set_default": bool(args.set_default),
                            "use_for": use}
    text = f"{repo_id} is ready in {path}"
    if use:
        # A wrong repo (say a BERT given for --use-for clip) is caught here, not at the first index run.
        problem = mm.matcher_folder_problem(path, use)
        if problem:
            raise _user_error(f"{repo_id} was downloaded but cannot be used as {MATCHER_MODELS[use].label}: "
                              f"{problem}")
        mm.set_matcher_folder(settings, use, str(path))
        settings.save()
        text += f"\nthe suggestion matchers now use it as {MATCHER_MODELS[use].label}"
    if args.set_default:
        settings.model.source = repo_id
        settings.model.revision = args.revision
        settings.model.cache_dir = cache_dir
        settings.save()
        text += "\nit is now the default model"
    _emit(args, data, text)
    return 0


# ---------------------------------------------------------------------------------------------------- list


def cmd_model_list(args: argparse.Namespace) -> int:
    settings = Settings.load()
    cache_dir = args.cache_dir if args.cache_dir is not None else settings.model.cache_dir
    models = list_models(cache_dir, all_models=args.all)
    rows = [m.as_dict() for m in models]
    used = _matcher_folders(settings)
    for r in rows:
        r["default"] = r["repo_id"] == settings.model.source
        snaps = {os.path.realpath(rv["path"]) for rv in r["revisions"]}
        r["used_for"] = [use for use, folder in used.items() if folder in snaps]

    lines = []
    for m, r in zip(models, rows):
        revs = ", ".join(rv.commit[:12] + (f" ({', '.join(rv.refs)})" if rv.refs else "")
                         + ("" if rv.complete else " [incomplete]") for rv in m.revisions)
        mark = "*" if r["default"] else " "
        uses = f"  [used by {', '.join(r['used_for'])}]" if r["used_for"] else ""
        lines.append(f"{mark} {m.repo_id:<40} {m.kind:<8} {_human_size(m.size_on_disk):>9}  {revs}{uses}")
    if not lines:
        lines.append("no models downloaded yet: run `repic model download` (default "
                     f"{settings.model.source})" if not args.all else "the Hugging Face cache is empty")
    _emit(args, rows, "\n".join(lines))
    return 0


def _matcher_folders(settings) -> dict[str, str]:
    """use -> real path of the folder the settings point that matcher at."""
    cfg = settings.extra.get("retrieval") if isinstance(settings.extra.get("retrieval"), dict) else {}
    return {use: os.path.realpath(os.path.expanduser(cfg[m.settings_key]))
            for use, m in MATCHER_MODELS.items() if cfg.get(m.settings_key)}


# ----------------------------------------------------------------------------------------------------- set


def _matcher_folder_value(value: str, use: str, cache_dir: str | None) -> str | None:
    """--clip/--dinov2/--detector: a folder, a cached hub id (resolved to its snapshot), or 'none'."""
    if value.strip().lower() in _CLEAR:
        return None
    label = MATCHER_MODELS[use].label
    if mm.is_local_path(value):
        folder = _local_or_value(value)
    else:
        try:
            folder = str(mm.resolve_local(value, cache_dir=cache_dir, what=f"{label} model",
                                          allow_patterns=mm.MATCHER_ALLOW_PATTERNS)[0])
        except mm.ModelNotAvailable as exc:
            raise _user_error(str(exc).replace("`repic model download " + value + "`",
                                               f"`repic model download {value} --use-for {use}`")) from None
    problem = mm.matcher_folder_problem(folder, use)
    if problem:
        raise _user_error(f"{label}: {problem}")
    return folder


def _retrieval_text(settings) -> list[str]:
    cfg = retrieval_section(settings)
    lines = [f"{(m.label + ':'):<14}{cfg.get(m.settings_key) or '-'}" for m in MATCHER_MODELS.values()]
    lines.append(f"{'matcher:':<14}{cfg.get('default_matcher') or DEFAULT_MATCHER}")
    return lines


def cmd_model_set(args: argparse.Namespace) -> int:
    changes = {k: getattr(args, k) for k in ("source", "revision", "adapter", "quantization", "device", "cache_dir")
               if getattr(args, k) is not None}
    matcher_changes = {k: getattr(args, k, None) for k in (*MATCHER_MODELS, "matcher")
                       if getattr(args, k, None) is not None}
    if not changes and not matcher_changes:
        raise _user_error("nothing to change: give --source, --revision, --adapter, --quant, --device, --cache-dir, "
                          "--clip, --dinov2, --detector or --matcher")
    settings = Settings.load()
    m = settings.model
    if "source" in changes:
        if changes["source"].strip().lower() in _CLEAR:
            raise _user_error("--source cannot be empty: give a Hugging Face id or a model folder")
        m.source = _local_or_value(changes["source"])
    lib_path = paths.resolve_library_path(getattr(args, "library", None))
    for key in ("revision", "adapter", "cache_dir"):
        if key in changes:
            value = changes[key]
            value = None if value.strip().lower() in _CLEAR else value
            if value is not None and key != "revision":
                value = _local_or_value(value)
            if key == "adapter":  # an adapter belongs to one library (core/settings.py)
                if lib_path.exists():
                    with Library(lib_path, create=False) as lib:
                        settings.set_active_adapter(lib, value)
                else:
                    settings.set_active_adapter(lib_path, value)
                continue
            setattr(m, key, value)
    if "quantization" in changes:
        m.quantization = changes["quantization"]
    if "device" in changes:
        m.device = changes["device"]
    if lib_path.exists():  # this library's adapter, an older global one included when registered here
        with Library(lib_path, create=False) as lib:
            adapter = settings.active_adapter(lib)
    else:
        adapter = settings.active_adapter(lib_path)
    if changes:  # validate the combination the same way the loader will
        try:
            ModelSpec.from_settings(m, adapter=adapter)
        except ValueError as exc:
            raise _user_error(str(exc)) from None
    for use in MATCHER_MODELS:
        if use in matcher_changes:
            set_matcher_folder(settings, use, _matcher_folder_value(matcher_changes[use], use, m.cache_dir))
    if "matcher" in matcher_changes:
        retrieval_section(settings)["default_matcher"] = matcher_changes["matcher"]
    settings.save()
    model = dict(vars(m))
    model["adapter"] = adapter
    data = {"model": model, "library": str(lib_path), "retrieval": dict(settings.extra.get("retrieval") or {}),
            "settings_file": str(Settings.path())}
    lines = [f"model:        {m.source}" + (f" @ {m.revision}" if m.revision else ""),
             f"adapter:      {adapter or '-'}" + (f"  (library {lib_path})" if adapter else ""),
             f"quantization: {m.quantization}",
             f"device:       {m.device}",
             f"cache:        {m.cache_dir or 'Hugging Face default'}"]
    if matcher_changes:
        lines += _retrieval_text(settings)

        # Say at once when the chosen matcher still cannot run (missing detector folder, no dlib...).
        chosen = retrieval_section(settings).get("default_matcher") or DEFAULT_MATCHER
        info = next((x for x in available_matchers(settings) if x["id"] == chosen), None)
        if info is not None and not info["ready"]:
            lines.append(f"note: {info['name']} is not ready yet: {info['why']}")
    text = "\n".join(lines)
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
    s.add_argument("id", nargs="?", type=nonempty_text, help="Hugging Face id (default: the model in the settings)")
    s.add_argument("--revision", type=nonempty_text, help="branch, tag or commit to pin (default: main)")
    s.add_argument("--cache-dir", type=nonempty_text,
                   help="Hugging Face cache folder (default: the settings' cache_dir)")
    s.add_argument("--set-default", action="store_true",
                   help="afterwards make it the model used for captioning (source, revision, cache dir)")
    s.add_argument("--use-for", choices=list(MATCHER_MODELS),
                   help="weights for the suggestion matchers: safetensors and configs only, and the settings then "
                        "point that matcher at the download (default ids: "
                        + ", ".join(m.default_id for m in MATCHER_MODELS.values()) + ")")
    s.set_defaults(func=cmd_model_download)

    s = sub.add_parser("list", parents=[common_parent], help="models and adapters in the Hugging Face cache")
    s.add_argument("--cache-dir", type=nonempty_text,
                   help="Hugging Face cache folder (default: the settings' cache_dir)")
    s.add_argument("--all", action="store_true", help="also list cached repos that are not Qwen2.5-VL models")
    s.set_defaults(func=cmd_model_list)

    s = sub.add_parser("set", parents=[common_parent], help="change the model settings ('none' clears a value)")
    s.add_argument("--source", type=nonempty_text, help="Hugging Face id or local model folder")
    s.add_argument("--revision", type=nonempty_text, help="pinned revision, or 'none' for main")
    s.add_argument("--adapter", type=nonempty_text, help="LoRA adapter folder or Hugging Face id, or 'none'")
    s.add_argument("--quant", dest="quantization", choices=["none", "4bit", "8bit"],
                   help="bitsandbytes quantization (needs an NVIDIA GPU)")
    s.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--cache-dir", type=nonempty_text, help="Hugging Face cache folder, or 'none' for the default")
    for m in MATCHER_MODELS.values():  # --clip, --dinov2, --detector
        extra = " (then whole photo + face boxes)" if m is DETECTOR_MODEL else ""
        s.add_argument(f"--{m.use}", type=nonempty_text, metavar="DIR|ID",
                       help=f"{m.label} weights for suggestions: folder, downloaded id, or 'none'{extra}")
    s.add_argument("--matcher", choices=list(MATCHERS), help="default matcher for suggestions")
    s.set_defaults(func=cmd_model_set)

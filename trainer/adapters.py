"""Trained adapters: list, activate, remove, export, merge (the `repic-train adapters` commands).

Activation makes the adapter folder the active adapter *of this library only* (settings keyed by the
library, see core/settings.py) and the base model the model; a *flagged* adapter
(it did not beat the base model on the held-out photos) is refused unless forced, so an adapter that
makes captions worse is never switched on silently. Merging runs in fp32 and saves fp32 safetensors:
RePIC's bf16 merge cost 6-8 % recall (repic-method.md §5.1), because a bf16 weight cannot hold the small
LoRA delta of a 1e-5 learning rate.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from repic_desktop.core.settings import Settings, same_folder
from repic_desktop.app.adapters import read_manifest
from repic_desktop.core.errors import RepicError


class AdapterError(RepicError, RuntimeError):
    """The message is for the user."""


def incomplete_runs(library) -> list[dict[str, Any]]:
    """Run folders under the library's adapters folder that never became a registered adapter: the
    run failed, was cancelled, or was killed. Runs with their own --out elsewhere are not searched."""
    root = Path(library.data_dir) / "adapters"
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []
    registered = {_resolved(a.path) for a in library.adapters.all()}
    runs = []
    for run in folders:
        if not (run / "run_config.json").is_file() or _resolved(run / "adapter") in registered:
            continue
        try:
            rc = json.loads((run / "run_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            rc = None
        rc = rc if isinstance(rc, dict) else {}
        ended = rc.get("ended") if isinstance(rc.get("ended"), dict) else {}
        how = ended.get("state") if ended.get("state") in ("failed", "cancelled") else "incomplete"
        reason = ended.get("reason") or ("no reason recorded: it is still running, or the trainer was killed"
                                         if how == "incomplete" else "")
        cps = [p for p in (run / "checkpoints").glob("checkpoint-*") if p.name.split("-")[-1].isdigit()] \
            if (run / "checkpoints").is_dir() else []
        config = rc.get("config") if isinstance(rc.get("config"), dict) else {}
        runs.append({"name": run.name, "run": str(run), "status": how, "reason": str(reason),
                     "base_model": config.get("base"), "concepts": rc.get("concepts") or [],
                     "created": rc.get("created"), "checkpoints": len(cps)})
    return runs


def _resolved(p) -> str:
    try:
        return str(Path(p).resolve())
    except (OSError, RuntimeError):
        return str(p)


def adapter_rows(library) -> list[dict[str, Any]]:
    """Registered adapters (status "ready"), then failed or unfinished runs (status "failed",
    "cancelled" or "incomplete", with the reason), which `adapters remove NAME --delete-files` deletes."""
    rows = []
    settings = Settings.load()
    active = settings.active_adapter(library)
    for a in library.adapters.all():
        m = read_manifest(a.manifest)
        rows.append({"name": a.name, "path": a.path, "base_model": a.base_model, "base_revision": a.base_revision,
                     "concepts": m.concepts, "flagged": m.flagged, "improved": m.improved, "metrics": m.metrics,
                     "created": m.created, "active": same_folder(active, a.path),
                     "exists": Path(a.path).is_dir(), "status": "ready", "reason": None})
    for r in incomplete_runs(library):
        rows.append({"name": r["name"], "path": str(Path(r["run"]) / "adapter"), "base_model": r["base_model"],
                     "base_revision": None, "concepts": r["concepts"], "flagged": False, "improved": False,
                     "metrics": {}, "created": r["created"], "active": False, "exists": Path(r["run"]).is_dir(),
                     "status": r["status"], "reason": r["reason"], "run": r["run"], "checkpoints": r["checkpoints"]})
    return rows


def activate(library, name: str, *, force: bool = False) -> dict[str, Any]:
    a = library.adapters.get(name)
    if not (Path(a.path) / "adapter_model.safetensors").exists():
        raise AdapterError(f"the adapter {a.name!r} has no adapter_model.safetensors in {a.path}")
    if read_manifest(a.manifest).flagged and not force:
        raise AdapterError(f"the adapter {a.name!r} is flagged: it did not beat the base model on your held-out "
                           "photos, so it may make captions worse. Activate it anyway with --force")
    settings = Settings.load()
    settings.set_active_adapter(library, a.path)
    settings.model.source = a.base_model
    settings.model.revision = a.base_revision
    settings.save()
    return {"name": a.name, "adapter": a.path, "source": a.base_model, "revision": a.base_revision}


def deactivate_if_active(library, path: str) -> bool:
    settings = Settings.load()
    if same_folder(settings.active_adapter(library), path):
        settings.set_active_adapter(library, None)
        settings.save()
        return True
    return False


# What a training run writes (trainer/train.py): <run>/adapter/, <run>/checkpoints/checkpoint-N/ and
# <run>/run_config.json. Nothing else is ever deleted: `--out` may have been a user's own folder.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "manifest.json",
                 "README.md")
RUN_FILES = ("run_config.json",)


def _rmdir_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def delete_run_files(adapter_dir: Path) -> None:
    """Delete an adapter folder's own files and, when it is a run's ``adapter/`` folder, the run's
    checkpoints and run config; folders are removed only once empty (a user's files always stay)."""
    for f in ADAPTER_FILES:
        (adapter_dir / f).unlink(missing_ok=True)
    _rmdir_if_empty(adapter_dir)
    if adapter_dir.name != "adapter":
        return
    run = adapter_dir.parent
    ckpts = run / "checkpoints"
    if ckpts.is_dir():
        for cp in ckpts.glob("checkpoint-*"):
            if cp.is_dir() and not cp.is_symlink() and cp.name.split("-")[-1].isdigit():
                shutil.rmtree(cp)
        _rmdir_if_empty(ckpts)
    for f in RUN_FILES:
        (run / f).unlink(missing_ok=True)
    _rmdir_if_empty(run)


def remove(library, name: str, *, delete_files: bool = False) -> dict[str, Any]:
    if not any(a.name == name for a in library.adapters.all()):
        run = next((r for r in incomplete_runs(library) if r["name"] == name), None)
        if run is not None:
            if not delete_files:
                raise AdapterError(f"{name!r} is a {run['status']} training run, not a registered adapter: "
                                   f"`repic-train adapters remove {name} --delete-files` deletes what it wrote")
            delete_run_files(Path(run["run"]) / "adapter")
            return {"name": name, "path": run["run"], "deactivated": False, "deleted": True, "run": True}
    # deactivated first: a legacy global setting is recognised as this library's only while registered
    deactivated = deactivate_if_active(library, library.adapters.get(name).path)
    a = library.adapters.remove(name)
    deleted = False
    if delete_files and Path(a.path).is_dir():
        delete_run_files(Path(a.path))
        deleted = True
    return {"name": a.name, "path": a.path, "deactivated": deactivated, "deleted": deleted}


def export(library, name: str, dest: str) -> dict[str, Any]:
    """Copy the adapter (config, safetensors, manifest) to `dest`, a new folder."""
    a = library.adapters.get(name)
    src, out = Path(a.path), Path(dest)
    if out.exists():
        raise AdapterError(f"{out} already exists: choose a new folder")
    files = [p for p in src.iterdir() if p.is_file() and (p.suffix in (".json", ".safetensors", ".md"))]
    if not any(p.name == "adapter_model.safetensors" for p in files):
        raise AdapterError(f"the adapter {a.name!r} has no adapter_model.safetensors in {src}")
    out.mkdir(parents=True)
    for p in files:
        shutil.copy2(p, out / p.name)
    return {"name": a.name, "path": str(out), "files": sorted(p.name for p in files)}


_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json",
                    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                    "chat_template.json", "chat_template.jinja", "generation_config.json", "added_tokens.json",
                    "repic_demo_model.json")


def merge(library, name: str, dest: str, *, cache_dir: str | None = None) -> dict[str, Any]:
    """Base + adapter merged in fp32 into a new model folder (safetensors), for tools that cannot apply
    an adapter. Unmerged use (the default in the app) stays the more faithful option."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from repic_desktop.captioning.model_manager import resolve_local
    from repic_desktop.captioning.models import MERGE_MARKER, file_sha256

    a = library.adapters.get(name)
    if not (Path(a.path) / "adapter_model.safetensors").is_file():
        # peft would fall back to a pickled adapter_model.bin, i.e. run code from the file
        raise AdapterError(f"{a.path} has no adapter_model.safetensors: only safetensors adapters are loaded")
    out = Path(dest)
    if out.exists() and not out.is_dir():
        raise AdapterError(f"{out} is a file: choose a new folder")
    if out.exists() and any(out.iterdir()):
        raise AdapterError(f"{out} already exists and is not empty: choose a new folder")
    base_path, _ = resolve_local(a.base_model, revision=a.base_revision, cache_dir=cache_dir)
    base = AutoModelForImageTextToText.from_pretrained(base_path, dtype=torch.float32, use_safetensors=True,
                                                       trust_remote_code=False, local_files_only=True)
    merged = PeftModel.from_pretrained(base, a.path).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    # The processor files are copied from the base folder rather than re-saved: a processor saved
    # without torchvision lacks its video section and then fails to load where torchvision exists.
    for fname in _PROCESSOR_FILES:
        if (base_path / fname).exists() and not (out / fname).exists():
            shutil.copy2(base_path / fname, out / fname)
    # The marker lets the loader refuse this adapter on this model (its delta would count twice); the
    # hash names the adapter wherever a copy of it lies.
    info = {"merged_from": {"base_model": a.base_model, "base_revision": a.base_revision, "adapter": a.name,
                            "adapter_path": a.path,
                            "adapter_sha256": file_sha256(Path(a.path) / "adapter_model.safetensors")},
            "dtype": "float32"}
    (out / MERGE_MARKER).write_text(json.dumps(info, indent=2), encoding="utf-8")
    return {"name": a.name, "path": str(out), "dtype": "float32"}

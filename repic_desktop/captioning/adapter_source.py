"""Which LoRA adapter to load and whether it may be: ``--adapter`` / the setting resolved to a folder, a
registered adapter or a hub id; the adapter folder checked (safetensors only); a LoRA refused on a
model it is already merged into (``repic-train adapters merge`` leaves a marker)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .model_errors import ModelLoadError
from .model_manager import resolve_local

if TYPE_CHECKING:
    from .models import ModelSpec

MERGE_MARKER = "repic_merge.json"  # written by `repic-train adapters merge` into the merged model's folder


def file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_not_merged_into(model_path: Path, adapter_path: Path, spec: "ModelSpec") -> None:
    """Refuse a LoRA on a model it is already merged into: the weights would carry its delta twice.
    The merge marker names the adapter by the hash of its weights (an exported copy is the same
    adapter) and by its folder (markers of older merges have no hash)."""
    try:
        info = json.loads((model_path / MERGE_MARKER).read_text(encoding="utf-8"))
        merged = info["merged_from"]
        if not isinstance(merged, dict):
            return
    except (OSError, ValueError, KeyError, TypeError):
        return
    same = False
    folder = merged.get("adapter_path")
    if isinstance(folder, str) and folder:
        try:
            same = Path(folder).resolve() == adapter_path.resolve()
        except (OSError, RuntimeError):
            same = False
    digest = merged.get("adapter_sha256")
    if not same and isinstance(digest, str) and digest:
        same = file_sha256(adapter_path / "adapter_model.safetensors") == digest
    if same:
        raise ModelLoadError(f"The adapter {spec.adapter} is already merged into {spec.source} (`repic-train "
                             f"adapters merge`): applying it again would count it twice. Use the merged model "
                             f"without an adapter, or the adapter on its base {merged.get('base_model') or 'model'}.")


def resolve_adapter_source(value: str | None, library: Any = None) -> str | None:
    """What ``--adapter`` / the adapter setting names, as ``ModelSpec.adapter`` wants it: an existing
    folder (returned as an absolute path), else the name of an adapter registered in ``library``
    (``repic-train`` registers every adapter it trains), else a hub id (``owner/name``) left for
    ``load_model`` to resolve in the cache. A folder wins over a registered name, so a path typed by
    the user always means that path."""
    if value is None or not str(value).strip():
        return None
    value = str(value).strip()
    path = Path(os.path.expanduser(value))
    if path.is_dir():
        return str(path.resolve())
    if library is not None:
        from ..core.library import NotFound

        try:
            adapter = library.adapters.get(value)
        except NotFound:
            adapter = None
        if adapter is not None:
            if not Path(adapter.path).is_dir():
                raise ModelLoadError(f"The adapter {adapter.name!r} is registered but its folder {adapter.path} is "
                                     f"gone: remove it with `repic-train adapters remove {adapter.name}`.")
            return adapter.path
    if "/" in value and not value.startswith((".", "/", "~")):
        return value  # a hub id: load_model resolves it in the local cache
    if library is None:
        raise ModelLoadError(f"{value!r} is not an adapter folder.")
    raise ModelLoadError(f"{value!r} is neither an adapter folder nor an adapter registered in this library: "
                         f"see `repic-train adapters list`.")


def resolve_adapter(spec: "ModelSpec", model_path: Path) -> tuple[Path | None, str | None]:
    """The adapter's local folder and commit (None, None without one), checked to be a safetensors LoRA
    that is not already merged into the model."""
    if not spec.adapter:
        return None, None
    adapter_path, adapter_commit = resolve_local(spec.adapter, cache_dir=spec.cache_dir, what="adapter")
    if not (adapter_path / "adapter_config.json").exists():
        raise ModelLoadError(f"{spec.adapter} is not a LoRA adapter folder (it has no adapter_config.json).")
    if not (adapter_path / "adapter_model.safetensors").exists():
        raise ModelLoadError(f"The adapter {spec.adapter} has no adapter_model.safetensors, and RePIC Desktop "
                             f"only loads safetensors (never pickled .bin files).")
    check_not_merged_into(model_path, adapter_path, spec)
    return adapter_path, adapter_commit

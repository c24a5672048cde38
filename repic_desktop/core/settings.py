"""User settings (model choice, cache folder, ...) in one JSON file in the config dir.

Settings are per user, not per library: the same GPU and model serve every album. Unknown keys in the
file are kept on save so a newer version's settings survive a downgrade round trip.

The one exception is the active LoRA adapter: an adapter is trained on one library's people, so each
library has its own (``library_adapters``, keyed by the library file's resolved path; a top-level key, so
an older version keeps it on save) and a library never captions with another's. It is kept here rather
than in the library file so that choosing an adapter needs no schema change and a read-only library can
still have one; the adapter registry already holds absolute folders, so a moved library re-registers its
adapters either way. The global ``model.adapter`` of older versions stays valid only for the library
that registered that folder.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import paths
from .errors import RepicError

DEFAULT_MODEL_SOURCE = "Yeongtak/RePIC_Qwen2.5VL_7B"
QUANTIZATIONS = ("none", "4bit", "8bit")

# Captioning preferences kept in Settings.extra (shared by the GUI's settings dialog and `repic caption`).
CAPTION_DEFAULTS: dict = {
    "attention": "auto",  # auto | flash_attention_2 | sdpa
    "batch_size": 4,
    "max_pixels": 1024 * 28 * 28,  # per image: 1024 visual tokens, RePIC's setting
    "max_new_tokens": 1024,
    "max_refs": 1,  # reference photos per concept, RePIC's setting (no dialog field: `repic caption --max-refs`)
    "request_preset": "personalized",
    "request_presets": {},  # the user's own: name -> request text
    "system_preset": "repic",
}


@dataclass
class ModelSettings:
    source: str = DEFAULT_MODEL_SOURCE  # hub id or local folder
    revision: str | None = None  # pinned hub revision (commit); None = the hub's main
    adapter: str | None = None  # legacy global adapter (older versions): see active_adapter()
    quantization: str = "none"
    device: str = "auto"
    cache_dir: str | None = None  # None = huggingface_hub's default cache


@dataclass
class Settings:
    model: ModelSettings = field(default_factory=ModelSettings)
    extra: dict = field(default_factory=dict)  # keys this version does not know, preserved

    def caption_default(self, key: str):
        """A captioning preference from `extra`, or its default when unset."""
        value = self.extra.get(key)
        return CAPTION_DEFAULTS[key] if value is None else value

    @staticmethod
    def path() -> Path:
        return paths.config_dir() / "settings.json"

    @classmethod
    def load(cls) -> "Settings":
        p = cls.path()
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise SettingsError(f"cannot read settings file {p}: {exc}") from exc
        if not isinstance(raw, dict):
            raise SettingsError(f"settings file {p} is not a JSON object")
        model_raw = raw.pop("model", {}) or {}
        known = {f.name for f in dataclasses.fields(ModelSettings)}
        model = ModelSettings(**{k: v for k, v in model_raw.items() if k in known})
        if model.quantization not in QUANTIZATIONS:
            raise SettingsError(f"settings file {p}: quantization must be one of {', '.join(QUANTIZATIONS)}")
        return cls(model=model, extra=raw)

    def active_adapter(self, library) -> str | None:
        """The adapter folder ``library`` captions with, or None: its own choice, else the legacy global
        adapter only when it is one of the adapters registered in this library."""
        own = self._library_adapters().get(library_key(_library_path(library)))
        if own:
            return own
        legacy = self.model.adapter
        if legacy and _registered_here(library, legacy):
            return legacy
        return None

    def set_active_adapter(self, library, folder: str | None) -> None:
        """Make ``folder`` (None: no adapter) the adapter of ``library`` only. A legacy global adapter
        that belongs to this library moves here, so no other library can pick it up afterwards."""
        if self.model.adapter and _registered_here(library, self.model.adapter):
            self.model.adapter = None
        key = library_key(_library_path(library))
        chosen = self._library_adapters()
        if folder:
            chosen[key] = str(folder)
        else:
            chosen.pop(key, None)
        self.extra["library_adapters"] = chosen

    def _library_adapters(self) -> dict[str, str]:
        """library_key -> adapter folder (a damaged entry is ignored, not an error)."""
        raw = self.extra.get("library_adapters")
        if not isinstance(raw, dict):
            return {}
        return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str) and v}

    def save(self) -> Path:
        p = self.path()
        p.parent.mkdir(parents=True, exist_ok=True)
        data = dict(self.extra)
        data["model"] = dataclasses.asdict(self.model)
        # Atomic replace: a crash mid-write must not leave a half-written settings file.
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".settings-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return p


def library_key(path: str | os.PathLike) -> str:
    """A path as this module compares paths: resolved and case-normalised (a library's key in
    ``library_adapters``, and what same_folder compares)."""
    return os.path.normcase(str(Path(path).expanduser().resolve()))


def same_folder(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    try:
        return library_key(a) == library_key(b)
    except (OSError, RuntimeError, ValueError):
        return a == b


def _library_path(library) -> str | os.PathLike:
    """``library`` is a Library, or the path of one that does not exist yet (no adapters registered)."""
    return library if isinstance(library, (str, os.PathLike)) else library.path


def _registered_here(library, folder: str) -> bool:
    if isinstance(library, (str, os.PathLike)):
        return False
    return any(same_folder(a.path, folder) for a in library.adapters.all())


class SettingsError(RepicError):
    pass

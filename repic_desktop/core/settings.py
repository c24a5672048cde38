"""User settings (model choice, cache folder, ...) in one JSON file in the config dir.

Settings are per user, not per library: the same GPU and model serve every album. Unknown keys in the
file are kept on save so a newer version's settings survive a downgrade round trip.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import paths

DEFAULT_MODEL_SOURCE = "Yeongtak/RePIC_Qwen2.5VL_7B"
QUANTIZATIONS = ("none", "4bit", "8bit")

# Captioning preferences kept in Settings.extra (shared by the GUI's settings dialog and `repic caption`).
CAPTION_DEFAULTS: dict = {
    "attention": "auto",  # auto | flash_attention_2 | sdpa
    "batch_size": 4,
    "max_pixels": 1024 * 28 * 28,  # per image: 1024 visual tokens, RePIC's setting
    "max_new_tokens": 1024,
    "request_preset": "personalized",
    "request_presets": {},  # the user's own: name -> request text
    "system_preset": "repic",
}


@dataclass
class ModelSettings:
    source: str = DEFAULT_MODEL_SOURCE  # hub id or local folder
    revision: str | None = None  # pinned hub revision (commit); None = the hub's main
    adapter: str | None = None  # LoRA adapter folder, applied unmerged
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


class SettingsError(Exception):
    pass

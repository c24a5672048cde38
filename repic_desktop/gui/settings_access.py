"""Reading the user's settings for the GUI (no widgets): the settings file with a readable fallback, and
which model choice (demo, local folder, hub) the stored source belongs to. Captioning defaults are
`Settings.caption_default(key)`, the model spec `ModelSpec.from_user_settings(settings, library)`, prompt
presets `app.caption_jobs.request_presets`.

Shared by the captioning controller, the queue dock, the caption and settings dialogs and the welcome;
the dialogs that edit the settings live in `dialogs/settings.py`.
"""
from __future__ import annotations

from pathlib import Path

from ..core.settings import DEFAULT_MODEL_SOURCE, Settings, SettingsError
from ..app.caption_jobs import demo_model_dir


def load_settings() -> tuple[Settings, str | None]:
    """The user's settings, or defaults plus a readable reason when the file cannot be read."""
    try:
        return Settings.load(), None
    except SettingsError as exc:
        return Settings(), f"{exc}. Defaults are shown; saving replaces the file."


def is_demo_source(source: str | None) -> bool:
    if not source:
        return False
    from ..captioning.demo_model import is_demo_model

    p = Path(source).expanduser()
    return p == demo_model_dir() or is_demo_model(p)


def model_choice(settings: Settings) -> str:
    """"demo" | "local" | "hub" — which radio button the stored source belongs to."""
    src = settings.model.source or DEFAULT_MODEL_SOURCE
    if is_demo_source(src):
        return "demo"
    p = Path(src).expanduser()
    return "local" if p.is_absolute() or src.startswith(("~", ".")) or p.is_dir() else "hub"

"""The colour theme the user chose (Settings → Appearance): follow the system, light or dark.

Stored in QSettings (a per-user preference of this app, like its window layout), not in the captioning
settings file the CLI shares. REPIC_THEME=dark|light still overrides it, for screenshots.
"""
from __future__ import annotations

THEMES = (("system", "Same as the system"), ("light", "Light"), ("dark", "Dark"))
KEY = "appearance/theme"


def saved_theme() -> str:
    from PySide6.QtCore import QSettings

    value = str(QSettings().value(KEY, "system") or "system")
    return value if value in dict(THEMES) else "system"


def set_theme(app, name: str, *, save: bool = True) -> None:
    """Apply `name` now (every open window repaints); with `save`, also at the next start."""
    from PySide6.QtCore import QSettings

    from .app import apply_color_scheme

    if name not in dict(THEMES):
        raise ValueError(f"unknown theme {name!r}")
    apply_color_scheme(app, name)
    # A widget with a style sheet keeps the palette it was polished with (a light button in a dark
    # window): setting its sheet again re-polishes it with the new palette.
    for w in app.allWidgets():
        sheet = w.styleSheet()
        if sheet:
            w.setStyleSheet(sheet)
    if save:
        QSettings().setValue(KEY, name)

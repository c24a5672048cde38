"""Where the app keeps its files: platform data/config/cache dirs, with environment overrides.

Overrides exist so tests, portable installs and power users can relocate everything:
REPIC_LIBRARY (library file), REPIC_CONFIG_DIR, REPIC_CACHE_DIR.
"""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_DIR_NAME = "RePIC Desktop"
LIBRARY_FILENAME = "library.sqlite"


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_DIR_NAME, appauthor=False))


def config_dir() -> Path:
    env = os.environ.get("REPIC_CONFIG_DIR")
    return Path(env) if env else Path(platformdirs.user_config_dir(APP_DIR_NAME, appauthor=False))


def cache_dir() -> Path:
    env = os.environ.get("REPIC_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir(APP_DIR_NAME, appauthor=False))


def thumbnail_dir() -> Path:
    return cache_dir() / "thumbnails"


def default_library_path() -> Path:
    return data_dir() / LIBRARY_FILENAME


def resolve_library_path(explicit: str | os.PathLike | None = None) -> Path:
    """--library beats REPIC_LIBRARY beats the platform default."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("REPIC_LIBRARY")
    if env:
        return Path(env).expanduser()
    return default_library_path()

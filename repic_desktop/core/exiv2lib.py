"""The one way any of our code imports pyexiv2 (metadata/pyexiv2_edit.py for writing, core/raw.py for RAW
facts): exiv2 prints its warnings ("[warn] Directory Canon, entry 0x0200 has unknown Exif (TIFF) type
...") from C++ straight to the process's stdout at its default log level, which breaks `repic ... --json`
and mixes noise into text output. The level is set to mute (4) before the module is handed out; errors
still arrive as Python exceptions.

Here in core (not metadata/) because core must not import the layers above it. No Qt, no torch.
"""
from __future__ import annotations

import threading

_mod = None
_error: str | None = None
_lock = threading.Lock()


def load():
    """The pyexiv2 module with exiv2's log muted, or None when it cannot be imported (see load_error)."""
    global _mod, _error
    with _lock:
        if _mod is None and _error is None:
            try:
                import pyexiv2
                pyexiv2.set_log_level(4)
                _mod = pyexiv2
            except Exception as exc:  # ImportError, or a wheel whose bundled libexiv2 cannot load
                _error = f"{type(exc).__name__}: {exc}"
    return _mod


def load_error() -> str | None:
    return _error

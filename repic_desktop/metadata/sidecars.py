"""Sidecars: where a photo's .xmp goes, which ones exist, and the effective values a reader sees
(embedded < photo.xmp < photo.ext.xmp, per key).
"""
from __future__ import annotations

import os
from typing import Any, Iterable

from .backends import Backends
from .edit import BackendError
from .safety import CheckedFile

def sidecar_path(path: str) -> str:
    """Where we write a photo's sidecar: `photo.ext.xmp` (an existing `photo.ext.XMP` is reused)."""
    upper = path + ".XMP"
    return upper if not os.path.exists(path + ".xmp") and os.path.exists(upper) else path + ".xmp"


def sidecar_candidates(path: str) -> list[str]:
    """Existing sidecars, most specific first: photo.ext.xmp (digiKam, darktable), photo.xmp (Adobe)."""
    stem = os.path.splitext(path)[0]
    out: list[str] = []
    for p in (path + ".xmp", path + ".XMP", stem + ".xmp", stem + ".XMP"):
        if os.path.isfile(p) and not any(os.path.samefile(p, q) for q in out):
            out.append(p)
    return out


def read_embedded(cf: CheckedFile, backends: Backends) -> dict[str, Any]:
    """Canonical values embedded in the photo (HEIC: exiftool first; pyexiv2 finds no XMP there)."""
    order = ["exiftool", "pyexiv2"] if cf.format == "HEIF" else ["pyexiv2", "exiftool"]
    if backends.preference != "auto":
        order = [backends.preference]
    last = None
    for name in order:
        if name not in backends.available:
            continue
        try:
            return backends.get(name).read(cf.path, cf.data, cf.format)
        except BackendError as exc:
            last = exc
    if last is not None:
        raise last
    return {}


def read_sidecar(path: str, backends: Backends) -> dict[str, Any]:
    be = backends.for_format("XMP")
    if be is None:
        return {}
    with open(path, "rb") as f:
        data = f.read()
    return be.read(path, data, "XMP")


def effective_values(layers: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Later layers win per key (embedded < photo.xmp < photo.ext.xmp), as readers merge them."""
    out: dict[str, Any] = {}
    for layer in layers:
        out.update(layer)
    return out


__all__ = ["effective_values", "read_embedded", "read_sidecar", "sidecar_candidates", "sidecar_path"]

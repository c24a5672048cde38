"""What every metadata backend shares: the `Edit` interface, its error, the formats each backend
embeds into, and the UTF-16 stand-ins both use for characters outside the BMP.

An edit is `backend.open(path, data, fmt)` -> `Edit` with `.old` (canonical values found) and
`.render(changes, tmp)`, which makes the complete new file at `tmp` (or returns its bytes); the
writer then does the atomic replace. Nothing here ever writes to the original file.
"""
from __future__ import annotations

from typing import Any

EMBED_FORMATS = {"pyexiv2": frozenset({"JPEG", "PNG", "TIFF", "WEBP", "XMP"}),
                 "exiftool": frozenset({"JPEG", "PNG", "TIFF", "WEBP", "HEIF", "XMP"})}


class BackendError(Exception):
    """A backend failed on one file; str(exc) is the reason."""


class Edit:
    old: dict[str, Any]
    has_iptc: bool

    def render(self, changes: dict[str, Any], tmp: str) -> bytes | None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Edit":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# exiv2 converts a "charset=Unicode" UserComment with iconv to UCS-2, which has no characters outside the
# BMP: an emoji makes iconv fail and exiv2 stores the raw UTF-8 bytes as if they were UCS-2 (mojibake in
# every reader). EXIF readers (exiftool, Windows) read the Unicode comment as UTF-16, so the comment is
# written with one private-use stand-in per UTF-16 code unit and the stand-ins are then replaced by the
# real surrogate pairs in the output bytes (same length, so no offset moves).
_HI, _LO = "\ue000", "\ue001"


def _bmp_stand_in(text: str) -> str:
    return "".join(_HI + _LO if ord(c) > 0xFFFF else c for c in text)

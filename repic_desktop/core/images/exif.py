"""EXIF facts the library keeps: orientation and date taken; a broken EXIF block never makes a photo
unusable."""
from __future__ import annotations

import re
from typing import Any

from PIL import (
    Image,
)
from .files import Buf
from .png import _png_late_exif


_EXIF_DATE = re.compile(r"^\s*(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_EXIF_OFFSET = re.compile(r"^[+-]\d{2}:\d{2}$")


def _exif_date(value: Any, offset: Any = None) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str):
        return None
    m = _EXIF_DATE.match(value.strip("\x00"))
    if not m:
        return None
    y, mo, d, hh, mi, ss = (int(g) for g in m.groups())
    if y < 1800 or not (1 <= mo <= 12 and 1 <= d <= 31 and hh <= 23 and mi <= 59 and ss <= 60):
        return None  # "0000:00:00 00:00:00" and friends: cameras write that when the clock was unset
    iso = f"{y:04d}-{mo:02d}-{d:02d}T{hh:02d}:{mi:02d}:{min(ss, 59):02d}"
    if isinstance(offset, bytes):
        offset = offset.decode("ascii", errors="replace")
    if isinstance(offset, str) and _EXIF_OFFSET.match(offset.strip("\x00").strip()):
        iso += offset.strip("\x00").strip()
    return iso


def _exif_facts(im: Image.Image, fmt: str, data: Buf | None = None) -> tuple[int, str | None]:
    """(orientation, date_taken); a broken EXIF block never makes a photo unusable."""
    orientation, date = 1, None
    try:
        if fmt == "PNG" and data is not None:
            if "exif" not in im.info and (late := _png_late_exif(data)):
                im.info["exif"] = late
            exif = Image.Image.getexif(im)  # PngImageFile.getexif would decode every pixel first
        else:
            exif = im.getexif()
        if fmt == "HEIF":
            orientation = im.info.get("original_orientation") or 1
        else:
            orientation = exif.get(0x0112, 1)
        try:
            sub = exif.get_ifd(0x8769)
        except Exception:
            sub = {}
        date = _exif_date(sub.get(0x9003), sub.get(0x9011)) or _exif_date(exif.get(0x0132), sub.get(0x9010))
    except Exception:
        pass
    if isinstance(orientation, (tuple, list)):
        orientation = orientation[0] if orientation else 1
    if not isinstance(orientation, int) or not 1 <= orientation <= 8:
        orientation = 1
    return orientation, date

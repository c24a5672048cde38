"""Region boxes between the library's frame and the MWG/MP frame.

The library keeps boxes in pixels of the photo *as displayed* (EXIF orientation applied). MWG 2.0
(section 5.9) says region metadata "is applied to the stored image": when a reader applies the EXIF
Orientation it must rotate the regions too. digiKam, Lightroom, exiftool's rotate_regions.config and
Immich (since PR #18021, `orientRegionInfo`) all follow that, so we write boxes in the stored frame
and `AppliedToDimensions` is the stored pixel size (width and height swapped for orientations 5-8).
Microsoft MP rectangles are written in the same stored frame (digiKam derives both from one box).

Normalised coordinates (0..1) make the maps simple. For a point (u, v) of the stored image, the
displayed point (p, q) for each EXIF orientation is:

    1: (u, v)      2: (1-u, v)     3: (1-u, 1-v)   4: (u, 1-v)
    5: (v, u)      6: (1-v, u)     7: (1-v, 1-u)   8: (v, 1-u)

(6 = "rotate 90 CW to display": exiftool's RotateMWGRegionCW90 is X' = 1-Y, Y' = X.) A box maps by
mapping two opposite corners and taking min/max.
"""
from __future__ import annotations

_TO_DISPLAY = {
    1: lambda u, v: (u, v),
    2: lambda u, v: (1 - u, v),
    3: lambda u, v: (1 - u, 1 - v),
    4: lambda u, v: (u, 1 - v),
    5: lambda u, v: (v, u),
    6: lambda u, v: (1 - v, u),
    7: lambda u, v: (1 - v, 1 - u),
    8: lambda u, v: (v, 1 - u),
}
_TO_STORED = {
    1: lambda p, q: (p, q),
    2: lambda p, q: (1 - p, q),
    3: lambda p, q: (1 - p, 1 - q),
    4: lambda p, q: (p, 1 - q),
    5: lambda p, q: (q, p),
    6: lambda p, q: (q, 1 - p),
    7: lambda p, q: (1 - q, 1 - p),
    8: lambda p, q: (1 - q, p),
}

Box = tuple[float, float, float, float]  # x, y (top-left), w, h


def _orientation(o: int | None) -> int:
    return o if isinstance(o, int) and 1 <= o <= 8 else 1


def swaps_axes(orientation: int | None) -> bool:
    return _orientation(orientation) >= 5


def stored_size(display_w: int, display_h: int, orientation: int | None) -> tuple[int, int]:
    """Pixel size of the stored image from the displayed size."""
    return (display_h, display_w) if swaps_axes(orientation) else (display_w, display_h)


def _map(box: Box, fn) -> Box:
    x, y, w, h = box
    a = fn(x, y)
    b = fn(x + w, y + h)
    x0, x1 = sorted((a[0], b[0]))
    y0, y1 = sorted((a[1], b[1]))
    return (x0, y0, x1 - x0, y1 - y0)


def display_to_stored(box: Box, orientation: int | None) -> Box:
    """Normalised top-left box in the displayed frame -> the same box in the stored frame."""
    return _map(box, _TO_STORED[_orientation(orientation)])


def stored_to_display(box: Box, orientation: int | None) -> Box:
    return _map(box, _TO_DISPLAY[_orientation(orientation)])


def clamp01(box: Box) -> Box:
    x, y, w, h = box
    x0, y0 = min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)
    x1, y1 = min(max(x + w, 0.0), 1.0), min(max(y + h, 0.0), 1.0)
    return (x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0))


def to_center(box: Box) -> Box:
    """Top-left box -> MWG's centre-based (cx, cy, w, h)."""
    x, y, w, h = box
    return (x + w / 2, y + h / 2, w, h)


def from_center(area: Box) -> Box:
    cx, cy, w, h = area
    return (cx - w / 2, cy - h / 2, w, h)


def pixels_to_norm(box_px: tuple[int, int, int, int], width: int, height: int) -> Box:
    x, y, w, h = box_px
    return (x / width, y / height, w / width, h / height)


def norm_to_pixels(box: Box, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Normalised box -> integer pixel box inside the image, or None when nothing is left of it."""
    x, y, w, h = clamp01(box)
    x0, y0 = round(x * width), round(y * height)
    x1, y1 = round((x + w) * width), round((y + h) * height)
    x1, y1 = min(x1, width), min(y1, height)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return (x0, y0, x1 - x0, y1 - y0)

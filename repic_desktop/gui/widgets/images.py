"""Decoding photos for display off the GUI thread (previews, face crops, reference boxes).

A QImage may be made in any thread, a QPixmap only in the GUI thread: these run in workers and return a
QImage that owns its pixels; the GUI thread turns it into a pixmap once.
"""
from __future__ import annotations

from PySide6.QtGui import QImage


def pil_to_qimage(image) -> QImage:
    """PIL image -> QImage that owns its pixels (safe to hand to another thread)."""
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    fmt = QImage.Format.Format_RGBA8888 if image.mode == "RGBA" else QImage.Format.Format_RGB888
    data = image.tobytes("raw", image.mode)
    bpl = image.width * (4 if image.mode == "RGBA" else 3)
    return QImage(data, image.width, image.height, bpl, fmt).copy()


def load_image_scaled(path: str, max_side: int | None, box=None,
                      full_size: tuple[int, int] | None = None) -> tuple[QImage, int, int]:
    """Worker helper: decode a photo as displayed (EXIF-oriented), optionally crop to `box` (pixels of the
    full-size displayed photo), scale to `max_side`. Returns (image, full_width, full_height)."""
    from ...core.images import open_oriented

    if box is None:
        im = open_oriented(path, max_side=max_side)
        full_w, full_h = im.size
        if full_size and all(full_size):
            full_w, full_h = full_size
        elif max_side:
            from ...core.images import inspect_image
            info = inspect_image(path)
            full_w, full_h = info.width, info.height
        return pil_to_qimage(im), full_w, full_h
    im = open_oriented(path)
    full_w, full_h = im.size
    im = im.crop((box.x, box.y, box.x + box.w, box.y + box.h))
    if max_side and max(im.size) > max_side:
        im.thumbnail((max_side, max_side))
    return pil_to_qimage(im), full_w, full_h

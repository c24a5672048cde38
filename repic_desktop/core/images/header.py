"""Opening a file's header: Pillow's image object constructed (nothing decoded) and its pixel count
checked against our own limit before any pixel is decoded."""
from __future__ import annotations

import re
import struct
from typing import BinaryIO

from PIL import (
    Image,
    WebPImagePlugin,
)
from .files import Buf
from .formats import FORMAT_NAMES
from .limits import UnusableImage, _check_pixels, _truncated
from .plugins import _CLASSES, _heif_class
from .png import _is_png_text_limit, _open_png_without_text
from .structure import _check_jpeg_header, _looks_truncated_header


def _webp_header_size(head: bytes) -> tuple[int, int] | None:
    """Canvas size from the first 30 bytes of a WebP, so a bomb is refused before libwebp allocates it."""
    kind = head[12:16]
    try:
        if kind == b"VP8X":
            return (int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1)
        if kind == b"VP8L" and head[20] == 0x2F:
            bits = int.from_bytes(head[21:25], "little")
            return ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        if kind == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
            w, h = struct.unpack("<HH", head[26:30])
            return (w & 0x3FFF, h & 0x3FFF)
    except (IndexError, struct.error):
        return None
    return None


def _open_header(fmt: str, fp: BinaryIO, head: bytes, data: Buf, filename: str | bytes = "") -> Image.Image:
    """Construct Pillow's image object (parses the header, decodes nothing) and check its pixel count."""
    if fmt == "WEBP":
        if not getattr(WebPImagePlugin, "SUPPORTED", True):
            raise UnusableImage("unsupported format: this Pillow build has no WebP support")
        size = _webp_header_size(head)
        if size:
            _check_pixels(*size)
    if fmt == "JPEG":
        _check_jpeg_header(data)
    cls = _heif_class() if fmt == "HEIF" else _CLASSES[fmt]
    fp.seek(0)
    try:
        im = cls(fp, filename)
    except Image.DecompressionBombError as exc:
        m = re.search(r"\((\d+) pixels\)", str(exc))
        raise UnusableImage(f"image is {round(int(m.group(1)) / 1e6) if m else '?'} megapixels, over the "
                            f"safety limit (decompression bomb?)") from exc
    except MemoryError as exc:
        raise UnusableImage("not enough memory to open this image") from exc
    except ValueError as exc:
        if not (fmt == "PNG" and _is_png_text_limit(exc)):
            if _looks_truncated_header(fmt, data):
                raise _truncated(fmt) from exc
            raise UnusableImage(f"corrupt {FORMAT_NAMES[fmt]} file: {exc or type(exc).__name__}") from exc
        try:
            im = _open_png_without_text(fp, data, filename)
        except Exception as exc2:
            if _looks_truncated_header(fmt, data):
                raise _truncated(fmt) from exc2
            raise UnusableImage(f"corrupt PNG file: {exc2 or type(exc2).__name__}") from exc2
    except UnusableImage as exc:
        if _looks_truncated_header(fmt, data):
            raise _truncated(fmt) from exc
        raise
    except Exception as exc:  # Pillow raises SyntaxError/OSError/struct.error/... for bad headers
        if _looks_truncated_header(fmt, data):
            raise _truncated(fmt) from exc
        raise UnusableImage(f"corrupt {FORMAT_NAMES[fmt]} file: {exc or type(exc).__name__}") from exc
    _check_pixels(*im.size)
    return im

"""Decoding for display and for the model: EXIF orientation applied, reduced while decoding where the
format allows it (JPEG DCT scaling, HEIF thumbnails, PNG stripes), RAWs through their embedded preview."""
from __future__ import annotations

import io
import math
import os
import struct

from PIL import (
    Image,
)
from . import limits
from .exif import _exif_facts
from .files import _FileView, _open_readonly, _read_small
from .formats import FORMAT_NAMES, _describe_other, is_raw_name, sniff_format
from .header import _open_header
from .limits import UnusableImage, _bomb, _os_error, _truncated
from .pixels import to_rgb_or_rgba
from .plugins import _unsupported_codec, _unsupported_tiff_codec
from .png import _is_png_text_limit, _open_png_without_text
from .png_stripes import _png_stream_factor, _png_stream_reduced
from .probe import _raw_info
from .structure import _looks_truncated_header


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    w, h = size
    scale = max_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def open_oriented(path: str | bytes | os.PathLike, max_side: int | None = None, *,
                  keep_pixels: int | None = None) -> Image.Image:
    """Decode a photo as displayed: EXIF orientation applied, RGB (RGBA when transparency matters),
    at most `max_side` pixels on its longer side when given (JPEG and HEIF then decode at reduced size,
    via JPEG DCT scaling / HEIF's embedded thumbnails; PNGs of STREAM_DECODE_PIXELS or more are decoded
    in reduced row stripes). The file is closed when this returns.

    `keep_pixels` is for callers that resize the image themselves (the captioner): a JPEG or PNG of
    STREAM_DECODE_PIXELS or more may then come back smaller than stored, but with at least that many
    pixels; smaller photos decode in full, so their pixels stay exactly those of a full decode.

    Raises UnusableImage for anything unreadable, truncated or over MAX_PIXELS."""
    if max_side is not None and max_side < 1:
        raise ValueError("max_side must be a positive number of pixels")
    if keep_pixels is not None and keep_pixels < 1:
        raise ValueError("keep_pixels must be a positive number of pixels")
    if is_raw_name(path):
        return _open_raw(path, max_side)
    f, st = _open_readonly(path)
    with f:
        if st.st_size == 0:
            raise UnusableImage("empty file (0 bytes)")
        try:
            fb = io.BufferedReader(f, 1 << 16)  # Pillow parses headers with many tiny reads
            head = fb.read(32)
            fmt = sniff_format(head)
            if fmt is None:
                raise UnusableImage(_describe_other(head))
            view = _FileView(fb, st.st_size)
            im = _open_header(fmt, fb, head, view, os.fspath(path))
            try:
                orientation, _ = _exif_facts(im, fmt, view)
                if fmt == "HEIF":
                    orientation = 1  # libheif already applied it
                _draft(im, fmt, max_side, keep_pixels)
                factor = _png_stream_factor(im, view, max_side, keep_pixels) if fmt == "PNG" else 0
                for attempt in (1, 2):
                    try:
                        if factor:
                            reduced = _png_stream_reduced(im, view, factor)
                            im.close()
                            im = reduced
                        else:
                            im.load()
                        break
                    except Image.DecompressionBombError as exc:
                        raise _bomb(*im.size) from exc
                    except MemoryError as exc:
                        raise UnusableImage("not enough memory to decode this image") from exc
                    except (OSError, EOFError, ValueError, SyntaxError, struct.error, IndexError) as exc:
                        if attempt == 1 and fmt == "PNG" and _is_png_text_limit(exc):
                            # oversized text after the pixels (load() reads it last): again without text
                            im.fp = im._fp = None  # frees the pixels but keeps our file open
                            im.close()
                            im = _open_png_without_text(fb, view, os.fspath(path))
                            continue
                        raise _decode_error(exc, im, fmt, view) from exc
                try:
                    out = to_rgb_or_rgba(im, fmt)
                except ValueError as exc:  # a mode Pillow decodes but cannot convert
                    raise UnusableImage(f"unsupported pixel format {im.mode}") from exc
            except BaseException:
                im.close()
                raise
        except OSError as exc:
            raise _os_error(exc) from exc
    if out is not im:
        im.close()  # frees the decoded full-size pixels now, not at garbage collection
    return _displayed(out, max_side, orientation)


def _draft(im: Image.Image, fmt: str, max_side: int | None, keep_pixels: int | None) -> None:
    """Ask a JPEG (DCT scaling) or HEIF (thumbnails) to decode reduced where the caller wants it smaller."""
    if max_side and max(im.size) > max_side:
        im.draft(None, _fit(im.size, max_side))
    elif keep_pixels and fmt == "JPEG" and im.size[0] * im.size[1] >= limits.STREAM_DECODE_PIXELS:
        scale = math.sqrt(keep_pixels / (im.size[0] * im.size[1]))
        if scale < 0.5:
            im.draft(None, (math.ceil(im.size[0] * scale), math.ceil(im.size[1] * scale)))


def _decode_error(exc: BaseException, im: Image.Image, fmt: str, view: _FileView) -> UnusableImage:
    """Why decoding failed, in words: cut short, a TIFF codec this libtiff lacks, or corrupt."""
    if "truncated" in str(exc) or isinstance(exc, EOFError) or _looks_truncated_header(fmt, view):
        return _truncated(fmt)
    codec = _unsupported_tiff_codec(im) if fmt == "TIFF" else None
    if codec:
        return _unsupported_codec(codec)
    return UnusableImage(f"corrupt {FORMAT_NAMES[fmt]} file: {exc}")


def _displayed(out: Image.Image, max_side: int | None, orientation: int) -> Image.Image:
    """Decoded pixels -> as displayed: at most `max_side` on the longer side, EXIF orientation applied."""
    if max_side and max(out.size) > max_side:
        out = out.resize(_fit(out.size, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    method = _TRANSPOSE.get(orientation)
    if method is not None:
        out = out.transpose(method)
    return out


def _open_raw(path: str | bytes | os.PathLike, max_side: int | None) -> Image.Image:
    """A RAW photo as displayed: its embedded preview with the RAW's orientation applied."""
    from .. import raw
    data, _ = _read_small(path)
    info, facts = _raw_info(data)
    im = raw.open_preview(data, facts)
    try:
        if max_side and max(im.size) > max_side:
            im.draft(None, _fit(im.size, max_side))
        try:
            im.load()
        except MemoryError as exc:
            raise UnusableImage("not enough memory to decode this image") from exc
        except (OSError, EOFError, ValueError, SyntaxError, struct.error, IndexError) as exc:
            raise UnusableImage(f"corrupt preview in camera RAW file: {exc}") from exc
        out = to_rgb_or_rgba(im, "JPEG")
    except BaseException:
        im.close()
        raise
    if out is not im:
        im.close()
    return _displayed(out, max_side, info.orientation)

"""Cheap structural checks for truncation, without decoding every photo: JPEG's end marker after its
first scan, PNG's IEND, WebP's RIFF length, HEIF's top-level boxes, TIFF's first-page strips. BMP and
GIF are decoded fully (rare and cheap)."""
from __future__ import annotations

import struct

from PIL import (
    Image,
)
from .files import Buf
from .formats import FORMAT_NAMES
from .limits import UnusableImage, _bomb, _truncated
from .plugins import _unsupported_codec, _unsupported_tiff_codec


def _check_jpeg(data: Buf) -> None:
    """Walk the marker segments to the first scan (SOS); an EOI marker must follow it. 0xFFD9 cannot
    occur inside entropy-coded data (0xFF is stuffed as FF00 there), so any EOI after the scan header
    means the image data is complete; trailers after EOI (MPF images, maker notes) are fine."""
    n = len(data)
    pos = 2
    while True:
        if pos >= n:
            raise _truncated("JPEG", "no image data before the end of the file")
        if data[pos] != 0xFF:
            nxt = data[pos:pos + 65536].find(b"\xff")  # tolerate junk between segments, as decoders do
            if nxt < 0:
                raise UnusableImage("corrupt JPEG: garbage where a marker should be")
            pos += nxt
            continue
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            raise _truncated("JPEG", "no image data before the end of the file")
        marker = data[pos]
        pos += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers (TEM, RSTn, a stray SOI)
            continue
        if marker == 0xD9:
            raise UnusableImage("corrupt JPEG: the file has no image data (end marker before any scan)")
        if pos + 2 > n:
            raise _truncated("JPEG", "no image data before the end of the file")
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2:
            raise UnusableImage("corrupt JPEG: invalid segment length")
        if pos + length > n:
            raise _truncated("JPEG", "no image data before the end of the file")
        pos += length
        if marker == 0xDA:  # SOS: entropy-coded data follows
            break
    if data.endswith(b"\xff\xd9") or data.rfind(b"\xff\xd9", pos) >= 0:
        return
    raise _truncated("JPEG")


# Pillow walks a JPEG header one byte at a time wherever a marker should be (junk, fill bytes, FF00,
# standalone markers) and without a limit, so a JPEG start followed by megabytes of zeros took 0.1-0.3 s
# per MB to reject. Real headers have a few dozen segments and at most a few junk bytes between them.
_JPEG_HEADER_MAX_SEGMENTS = 4096
_JPEG_HEADER_MAX_JUNK = 64 * 1024


def _check_jpeg_header(data: Buf) -> None:
    """Before Pillow parses a JPEG header: bounded walk to the first scan, refusing what would make
    Pillow crawl. Everything else (cut short, bad lengths) is left to Pillow and _check_jpeg."""
    n, pos, junk, segments = len(data), 2, 0, 0
    while pos < n:
        if data[pos] != 0xFF:
            window = data[pos:pos + _JPEG_HEADER_MAX_JUNK - junk + 1]
            nxt = window.find(b"\xff")
            if nxt < 0 and len(window) <= _JPEG_HEADER_MAX_JUNK - junk:
                return  # the file ends inside the junk: cut short, worded by the callers
            if nxt < 0:
                if not window.strip(b"\x00"):
                    raise UnusableImage("corrupt JPEG: zero bytes where a marker should be (the rest of the "
                                        "file was never written?)")
                raise UnusableImage("corrupt JPEG: garbage where a marker should be")
            junk += nxt
            pos += nxt
            continue
        start = pos
        while pos < n and data[pos] == 0xFF and pos - start <= _JPEG_HEADER_MAX_JUNK:
            pos += 1
        junk += pos - start - 1
        segments += 1
        if junk > _JPEG_HEADER_MAX_JUNK or segments > _JPEG_HEADER_MAX_SEGMENTS:
            raise UnusableImage("corrupt JPEG: garbage where a marker should be")
        if pos + 3 > n:
            return
        marker = data[pos]
        pos += 1
        if marker == 0x00 or marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no segment length follows
            junk += 2
            continue
        if marker == 0xD9:
            return
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2:
            return
        pos += length
        if marker == 0xDA:
            return


_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _check_png(data: Buf) -> None:
    if data.endswith(_IEND):
        return
    n, pos = len(data), 8
    while pos + 8 <= n:
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        ctype = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > n:
            break
        if ctype == b"IEND":
            return  # bytes after IEND are ignored, as every viewer does
        pos = end
    raise _truncated("PNG", "no IEND chunk")


def _check_webp(data: Buf) -> None:
    riff_size = struct.unpack("<I", data[4:8])[0]
    if len(data) < 8 + riff_size:
        raise _truncated("WEBP")


def _check_heif(data: Buf) -> None:
    """ISO-BMFF: every top-level box (ftyp, meta, mdat, ...) must fit inside the file."""
    n, pos = len(data), 0
    while pos + 8 <= n:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if size == 1:
            if pos + 16 > n:
                raise _truncated("HEIF")
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
        elif size == 0:  # box runs to the end of the file
            return
        if size < 8:
            raise UnusableImage(f"corrupt HEIC/HEIF: invalid box size for {kind!r}")
        if pos + size > n:
            raise _truncated("HEIF", f"the {kind.decode('latin-1')} box is cut short")
        pos += size


def _check_tiff(im: Image.Image, data: Buf) -> None:
    tags = getattr(im, "tag_v2", None)
    codec = _unsupported_tiff_codec(im)
    if codec:  # an optional codec: decode now, so a libtiff without it is found at import, not at caption time
        try:
            _load_fully(im, "TIFF")
        except UnusableImage as exc:
            if exc.reason.startswith("corrupt"):
                raise _unsupported_codec(codec) from exc
            raise
        return
    offsets = counts = None
    if tags is not None:
        offsets, counts = tags.get(273), tags.get(279)  # StripOffsets, StripByteCounts
        if offsets is None:
            offsets, counts = tags.get(324), tags.get(325)  # TileOffsets, TileByteCounts
    if offsets is None or counts is None:
        _load_fully(im, "TIFF")
        return
    if isinstance(offsets, int):
        offsets = (offsets,)
    if isinstance(counts, int):
        counts = (counts,)
    end = max((o + c for o, c in zip(offsets, counts)), default=0)
    if end > len(data):
        raise _truncated("TIFF")


def _load_fully(im: Image.Image, fmt: str) -> None:
    try:
        im.load()
    except Image.DecompressionBombError as exc:
        raise _bomb(*im.size) from exc
    except (OSError, EOFError, ValueError, SyntaxError, struct.error, IndexError) as exc:
        if "truncated" in str(exc) or isinstance(exc, EOFError):
            raise _truncated(fmt) from exc
        raise UnusableImage(f"corrupt {FORMAT_NAMES[fmt]}: {exc}") from exc


# Formats whose completeness can be checked from the container structure alone (no decoding).
_CONTAINER_CHECKS = {"JPEG": _check_jpeg, "PNG": _check_png, "WEBP": _check_webp, "HEIF": _check_heif}


def _looks_truncated_header(fmt: str, data: Buf) -> bool:
    """After Pillow failed to parse the header: was it because the file is cut short?"""
    try:
        if fmt in _CONTAINER_CHECKS:
            _CONTAINER_CHECKS[fmt](data)
        elif fmt == "TIFF" and data[:4] in (b"II*\x00", b"MM\x00*"):  # classic TIFF: the first IFD fits?
            end = "<" if data[:2] == b"II" else ">"
            ifd = struct.unpack(end + "I", data[4:8])[0]
            if ifd + 2 > len(data):
                return True
            count = struct.unpack(end + "H", data[ifd:ifd + 2])[0]
            return ifd + 2 + 12 * count + 4 > len(data)
        else:
            return len(data) < 64
    except UnusableImage as exc:
        return str(exc).startswith("truncated")
    return False

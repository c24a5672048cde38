"""Camera RAW files as library photos, through the JPEG preview every camera embeds in them.

Why a preview and not a RAW decoder: demosaicing needs LibRaw (no wheel we may depend on), and the
captioner sees at most ~1 MP anyway. Cameras store a full- or half-size JPEG of the shot inside the RAW
(CR2/NEF/ARW/PEF/ORF/RW2/DNG: TIFF structures; CR3: ISO-BMFF boxes; RAF: its own header), which is
exactly what the camera's own screen shows. So a RAW photo's *displayed frame* is that preview, after
the RAW's orientation: thumbnails, the captioner and region boxes all use it, and MWG regions are
written relative to it (they are stored normalised, so any reader maps them onto its own rendering).

How previews are found, without trusting the file:
1. TIFF-based RAWs: walk IFD0, its chain, SubIFDs and the EXIF IFD (bounded: at most 64 IFDs, offsets
   checked against the file size) and collect JPEGInterchangeFormat/-Length pairs and single-strip
   JPEG-compressed images. The RAW's own orientation and date come from the same walk.
2. Any RAW (and as a fallback): scan for JPEG start markers, walk each candidate's segments to its scan
   and take the first end marker after it (0xFFD9 cannot occur inside entropy-coded data). The scan's
   work is bounded whatever the bytes (a shared segment budget, no repeated end-marker search).
Each candidate must be a complete, decodable baseline header within the pixel limit; the one with the
most pixels wins. A RAW without one is skipped with a reason ("no embedded preview"), like any other
unusable file. Metadata for RAW photos goes to .xmp sidecars (metadata/writer.py); the RAW is only read.

Nothing here imports Qt or torch.
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from PIL import Image, JpegImagePlugin

from . import exiv2lib

MAX_IFDS = 64
MAX_SCAN_CANDIDATES = 64
# The marker scan's work is bounded whatever the bytes are: a file of repeated FF D8 FF (102 KB) made the
# old scan walk from every start marker to the end of the file (quadratic: minutes). A real JPEG header
# has a few dozen segments before its scan; a real RAW has a handful of start markers outside previews.
MAX_HEADER_SEGMENTS = 1024
MAX_SCAN_STEPS = 1 << 16
# An EXIF-size thumbnail (160x120) is the least that still shows who is in a photo; the 16-64 px icons
# some RAWs also carry would give the captioner nothing to see.
MIN_PREVIEW_SIDE = 160

_TAG_SUBFILE_WIDTH, _TAG_HEIGHT, _TAG_COMPRESSION = 0x100, 0x101, 0x103
_TAG_STRIP_OFFSETS, _TAG_ORIENTATION, _TAG_STRIP_COUNTS = 0x111, 0x112, 0x117
_TAG_SUBIFDS, _TAG_JPEG_OFFSET, _TAG_JPEG_LENGTH = 0x14A, 0x201, 0x202
_TAG_EXIF_IFD, _TAG_DATE_ORIGINAL, _TAG_DATETIME, _TAG_OFFSET_ORIGINAL = 0x8769, 0x9003, 0x132, 0x9011
# Only these tags' values are read, at most MAX_TAG_VALUES of each, from at most MAX_IFD_ENTRIES entries
# per IFD: decoding every entry's values (up to 4096 each) let a 112 KB file of 8,000 entries take 2 s
# and 250 MB. Real IFDs have tens of entries, sorted by tag, and the tags below come early.
MAX_IFD_ENTRIES = 1024
MAX_TAG_VALUES = 64
_WANTED_TAGS = frozenset({_TAG_COMPRESSION, _TAG_STRIP_OFFSETS, _TAG_ORIENTATION, _TAG_STRIP_COUNTS, _TAG_SUBIFDS,
                          _TAG_JPEG_OFFSET, _TAG_JPEG_LENGTH, _TAG_EXIF_IFD, _TAG_DATE_ORIGINAL, _TAG_DATETIME,
                          _TAG_OFFSET_ORIGINAL})
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8}


class NoPreview(Exception):
    """The RAW holds no usable JPEG preview; str(exc) is the user-facing reason."""


@dataclass(frozen=True)
class RawFacts:
    width: int               # of the chosen preview, as stored (before orientation)
    height: int
    orientation: int         # the RAW's EXIF orientation (1-8), which the preview's pixels follow
    date_taken: str | None   # raw EXIF string, e.g. "2024:05:01 10:00:00" (core/images normalises it)
    date_offset: str | None
    preview: tuple[int, int]  # (offset, length) of the preview JPEG inside the file


def _tiff_walk(data: bytes) -> tuple[list[tuple[int, int]], int | None, str | None, str | None]:
    """(jpeg (offset, length) candidates, orientation, date, offset) from a TIFF-structured RAW."""
    head = data[:4]
    if head[:2] == b"II":
        e = "<"
    elif head[:2] == b"MM":
        e = ">"
    else:
        return [], None, None, None
    n = len(data)
    try:
        first = struct.unpack_from(e + "I", data, 4)[0]
    except struct.error:
        return [], None, None, None
    todo, seen = [(first, True)], set()
    found: list[tuple[int, int]] = []
    orientation = date = offset_time = None

    def value(typ: int, count: int, raw_off: int) -> list[int] | bytes | None:
        size = _TYPE_SIZES.get(typ, 0) * count
        if size == 0:
            return None
        pos = raw_off if size <= 4 else struct.unpack_from(e + "I", data, raw_off)[0]
        if pos < 0 or pos + size > n:
            return None
        if typ in (2, 7, 1, 6):
            return data[pos:pos + min(size, MAX_TAG_VALUES)]
        fmt = {3: "H", 8: "h", 4: "I", 9: "i", 13: "I"}.get(typ)
        if fmt is None:
            return None
        return list(struct.unpack_from(e + fmt * min(count, MAX_TAG_VALUES), data, pos))

    while todo and len(seen) < MAX_IFDS:
        off, main_chain = todo.pop(0)
        if off in seen or off <= 0 or off + 2 > n:
            continue
        seen.add(off)
        try:
            count = struct.unpack_from(e + "H", data, off)[0]
            if off + 2 + 12 * count + 4 > n:
                continue
            tags: dict[int, object] = {}
            for i in range(min(count, MAX_IFD_ENTRIES)):
                tag, typ, cnt = struct.unpack_from(e + "HHI", data, off + 2 + 12 * i)
                if tag in _WANTED_TAGS and tag not in tags:
                    tags[tag] = value(typ, cnt, off + 2 + 12 * i + 8)
            nxt = struct.unpack_from(e + "I", data, off + 2 + 12 * count)[0]
        except struct.error:
            continue
        jo, jl = tags.get(_TAG_JPEG_OFFSET), tags.get(_TAG_JPEG_LENGTH)
        if isinstance(jo, list) and isinstance(jl, list) and jo and jl:
            found.append((jo[0], jl[0]))
        so, sc, comp = tags.get(_TAG_STRIP_OFFSETS), tags.get(_TAG_STRIP_COUNTS), tags.get(_TAG_COMPRESSION)
        if (isinstance(so, list) and isinstance(sc, list) and len(so) == 1 and len(sc) == 1
                and isinstance(comp, list) and comp and comp[0] in (6, 7)):
            found.append((so[0], sc[0]))
        if off == first:
            o = tags.get(_TAG_ORIENTATION)
            if isinstance(o, list) and o:
                orientation = o[0]
            d = tags.get(_TAG_DATETIME)
            if isinstance(d, bytes) and date is None:
                date = d.decode("ascii", "replace")
        d = tags.get(_TAG_DATE_ORIGINAL)
        if isinstance(d, bytes):
            date = d.decode("ascii", "replace")
        t = tags.get(_TAG_OFFSET_ORIGINAL)
        if isinstance(t, bytes):
            offset_time = t.decode("ascii", "replace")
        for key in (_TAG_SUBIFDS, _TAG_EXIF_IFD):
            sub = tags.get(key)
            if isinstance(sub, list):
                todo.extend((s, False) for s in sub[:16])
        if main_chain and nxt:
            todo.append((nxt, True))
    return found, orientation, date, offset_time


def _jpeg_end(data: bytes, start: int, steps: list[int] | None = None,
              no_eoi_after: list[int] | None = None) -> int | None:
    """End (exclusive) of a complete JPEG starting at `start`, or None when it is cut short or invalid.

    `steps` (one-element list) is a budget of segments shared by a whole scan, spent here; when it runs
    out the candidate counts as invalid. `no_eoi_after` (one-element list) remembers a position after
    which the file holds no end marker, so many headers without one do not each search to the end."""
    n, pos = len(data), start + 2
    segments = 0
    while True:
        if pos + 4 > n or data[pos] != 0xFF:
            return None
        segments += 1
        if segments > MAX_HEADER_SEGMENTS:
            return None
        if steps is not None:
            steps[0] -= 1
            if steps[0] < 0:
                return None
        fill = pos
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if steps is not None:
            steps[0] -= (pos - fill) >> 6  # a long run of fill bytes costs too
        if pos >= n:
            return None
        marker = data[pos]
        pos += 1
        if marker == 0xD8:  # a second start marker inside a header: not a JPEG (FF D8 FF D8 ... files)
            return None
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue
        if marker == 0xD9 or pos + 2 > n:
            return None
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2 or pos + length > n:
            return None
        pos += length
        if marker == 0xDA:
            if no_eoi_after is not None and pos >= no_eoi_after[0]:
                return None
            end = data.find(b"\xff\xd9", pos)
            if end < 0:
                if no_eoi_after is not None:
                    no_eoi_after[0] = min(no_eoi_after[0], pos)
                return None
            return end + 2


def _scan_jpegs(data: bytes) -> list[tuple[int, int]]:
    out, pos = [], 0
    steps, no_eoi_after = [MAX_SCAN_STEPS], [len(data) + 1]
    while len(out) < MAX_SCAN_CANDIDATES and steps[0] > 0:
        i = data.find(b"\xff\xd8\xff", pos)
        if i < 0:
            break
        steps[0] -= 1
        end = _jpeg_end(data, i, steps, no_eoi_after)
        if end is None:
            pos = i + 3
            continue
        out.append((i, end - i))
        pos = end  # previews do not nest at the top level; skipping the body keeps the scan linear
    return out


def _jpeg_size(data: bytes, off: int, length: int, max_pixels: int,
               memo: dict[int, tuple[int | None, tuple[int, int] | None]] | None = None) -> tuple[int, int] | None:
    """Pixel size of the complete JPEG at data[off:off + length], or None. Nothing is copied, and `memo`
    (per offset) keeps many candidates at one offset (IFDs may all point there) from each parsing it."""
    if off < 0 or length < 4 or off + length > len(data) or data[off:off + 3] != b"\xff\xd8\xff":
        return None
    if memo is None or off not in memo:
        # The first end marker after the scan does not depend on the length the IFD claims: a candidate
        # is complete when that end lies within it.
        end, size = _jpeg_end(data, off), None
        if end is not None:
            f = io.BytesIO(data)  # shares the bytes (no copy); Pillow reads the header from here on
            f.seek(off)
            try:
                im = JpegImagePlugin.JpegImageFile(f)
            except Exception:
                im = None
            if im is not None:
                try:
                    size = im.size
                finally:
                    im.close()
        if memo is not None:
            memo[off] = (end, size)
    else:
        end, size = memo[off]
    if end is None or end > off + length or size is None:
        return None
    w, h = size
    if w <= 0 or h <= 0 or w * h > max_pixels or max(w, h) < MIN_PREVIEW_SIDE:
        return None
    return w, h


def _exiv2_facts(data: bytes) -> tuple[int | None, str | None]:
    """Orientation and date for RAW containers that are not TIFF (CR3, RAF, ...), via exiv2."""
    pyexiv2 = exiv2lib.load()
    if pyexiv2 is None:
        return None, None
    try:
        with pyexiv2.ImageData(data) as img:
            exif = img.read_exif()
    except Exception:
        return None, None
    o = exif.get("Exif.Image.Orientation")
    try:
        orientation = int(str(o).split()[0]) if o else None
    except ValueError:
        orientation = None
    return orientation, exif.get("Exif.Photo.DateTimeOriginal") or exif.get("Exif.Image.DateTime")


def raw_facts(data: bytes, max_pixels: int) -> RawFacts:
    """Find the best embedded preview and the RAW's orientation/date; raises NoPreview."""
    if not data:
        raise NoPreview("empty file (0 bytes)")
    candidates, orientation, date, date_offset = _tiff_walk(data)
    if orientation is None and date is None:
        orientation, date = _exiv2_facts(data)
    candidates = list(dict.fromkeys(candidates + _scan_jpegs(data)))
    best: tuple[int, tuple[int, int], tuple[int, int]] | None = None
    memo: dict[int, tuple[int | None, tuple[int, int] | None]] = {}
    for off, length in candidates:
        size = _jpeg_size(data, off, length, max_pixels, memo)
        if size and (best is None or size[0] * size[1] > best[0]):
            best = (size[0] * size[1], size, (off, length))
    if best is None:
        raise NoPreview("camera RAW without a usable embedded JPEG preview (RAW decoding is not supported:"
                        " export a JPEG or TIFF from your RAW editor to caption it)")
    if not isinstance(orientation, int) or not 1 <= orientation <= 8:
        orientation = 1
    (w, h), preview = best[1], best[2]
    return RawFacts(w, h, orientation, date, date_offset, preview)


def open_preview(data: bytes, facts: RawFacts) -> Image.Image:
    """The preview JPEG as a Pillow image (not yet loaded; the caller applies the RAW's orientation)."""
    off, length = facts.preview
    return Image.open(io.BytesIO(data[off:off + length]), formats=["JPEG"])

"""Where metadata sits inside a file's bytes: a JPEG's header segments, and the TIFF block that holds the
EXIF of a JPEG, PNG or WebP (or is the file, for a TIFF).

One walker for the IIM byte-keeping (iim.py), the MWG digest check (mwg.py), the rdf:about repair
(writer.py), the maker-note placement check (verify.py) and the XPComment reader (exiftool_edit.py): each of
them used to walk the JPEG header itself, with slightly different rules for fill bytes, standalone markers
and truncated segments.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

SOI = b"\xff\xd8"
XMP_APP1 = b"http://ns.adobe.com/xap/1.0/\x00"
EXIF_APP1 = b"Exif\x00\x00"
PHOTOSHOP_APP13 = b"Photoshop 3.0\x00"


def jpeg_segments(data: bytes) -> tuple[list[tuple[int, int, int]], bool]:
    """The header segments of a JPEG up to its image data, as (marker, start, end): `start` is the marker's
    first byte, `data[start + 4:end]` the payload. The flag is False when the header is malformed (no SOI,
    a byte where a marker must be, a length that does not fit): the segments read until then come back,
    a truncated last one cut at the end of the data."""
    if data[:2] != SOI:
        return [], False
    out: list[tuple[int, int, int]] = []
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return out, False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers: no length follows
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI, SOS: no metadata after this
            return out, True
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2:
            return out, False
        end = pos + 2 + length
        if end > n:
            out.append((marker, pos, n))
            return out, False
        out.append((marker, pos, end))
        pos = end
    return out, True


def jpeg_payloads(data: bytes, marker: int, header: bytes) -> list[tuple[int, int]]:
    """(start, end) of what follows `header` in every segment `marker` whose payload starts with it."""
    return [(start + 4 + len(header), end) for m, start, end in jpeg_segments(data)[0]
            if m == marker and data[start + 4:start + 4 + len(header)] == header]


def tiff_start(data: bytes, fmt: str) -> int | None:
    """Offset of the TIFF header that holds the EXIF (a TIFF: the file itself), or None."""
    if fmt == "TIFF":
        return 0
    if fmt == "JPEG":
        found = jpeg_payloads(data, 0xE1, EXIF_APP1)
        return found[0][0] if found else None
    if fmt == "PNG":
        i = 8
        while i + 8 <= len(data):
            length, kind = struct.unpack(">I4s", data[i:i + 8])
            if kind == b"eXIf":
                return i + 8
            if kind == b"IDAT":
                return None
            i += 12 + length
        return None
    if fmt == "WEBP":
        i = 12
        while i + 8 <= len(data):
            kind, length = struct.unpack("<4sI", data[i:i + 8])
            if kind == b"EXIF":
                return i + 8 + (6 if data[i + 8:i + 14] == EXIF_APP1 else 0)
            i += 8 + length + (length & 1)
        return None
    return None


# ---- TIFF directories (an EXIF block is a TIFF) ---------------------------------------------------------

TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}


class IfdEntry(NamedTuple):
    type: int
    count: int
    value: int   # the 4-byte value/offset field read as a number (an offset from the TIFF header when > 4 bytes)
    at: int      # where that field is in the data

    def raw(self, data: bytes, base: int) -> bytes:
        """The value's bytes as they lie in the file (inline, or at its offset)."""
        size = TIFF_TYPE_SIZES.get(self.type, 1) * self.count
        start = self.at if size <= 4 else base + self.value
        return data[start:start + size]


def tiff_order(data: bytes, base: int) -> str | None:
    """The struct byte order of the TIFF header at `base` ("<" or ">"), or None."""
    return {b"II": "<", b"MM": ">"}.get(data[base:base + 2])


def ifd0_offset(data: bytes, base: int, bo: str) -> int | None:
    if base + 8 > len(data):
        return None
    return struct.unpack(bo + "I", data[base + 4:base + 8])[0]


def ifd_entry(data: bytes, base: int, ifd: int, tag: int, bo: str) -> IfdEntry | None:
    """The entry of `tag` in the IFD at `ifd` (offsets from the TIFF header at `base`), or None."""
    p = base + ifd
    if p + 2 > len(data):
        return None
    n = struct.unpack(bo + "H", data[p:p + 2])[0]
    for i in range(n):
        e = p + 2 + 12 * i
        if e + 12 > len(data):
            return None
        t, typ, count, val = struct.unpack(bo + "HHII", data[e:e + 12])
        if t == tag:
            return IfdEntry(typ, count, val, e + 8)
    return None

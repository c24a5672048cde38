"""The Metadata Working Group's rules for reading a caption and keywords that EXIF, IPTC-IIM and XMP
hold in several copies which may disagree (MWG "Guidelines for Handling Image Metadata" 2.0, as
exiftool's MWG composite tags implement them - `exiftool -MWG:all` is our oracle in the tests):

- Description: a non-blank EXIF ImageDescription wins. Otherwise XMP dc:description wins when the file
  has no IPTC block, or when XMP has it and the Photoshop IPTCDigest is absent or still matches the
  IPTC block (XMP and IPTC are in sync, XMP is the richer copy). Otherwise - the IPTC was changed by a
  tool that does not know XMP, so its digest no longer matches - IPTC Caption-Abstract wins.
- Keywords: the same IPTC/XMP choice between IPTC Keywords and XMP dc:subject (no EXIF copy).
- An IPTC value cut at the IIM length limit is replaced by the XMP value it is the start of.

The IPTC digest is an MD5 of the IPTC-IIM block; the stored copy is Photoshop image resource 0x0425.
Nothing here imports Qt, torch or a metadata library.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any

from .containers import PHOTOSHOP_APP13, ifd0_offset, ifd_entry, jpeg_payloads, tiff_order


@dataclass(frozen=True)
class IptcDigests:
    current: str | None = None   # MD5 hex of the IPTC block in the file (None: the file has no IPTC)
    stored: str | None = None    # Photoshop IPTCDigest (None: absent)

    @property
    def xmp_in_charge(self) -> bool:
        """True when XMP may be trusted over IPTC (see the module docstring)."""
        return self.current is None or self.stored is None or self.stored == self.current


def _irb_resources(irb: bytes) -> dict[int, bytes]:
    """Photoshop image resource blocks ("8BIM" id, Pascal name, size, data) by id."""
    out: dict[int, bytes] = {}
    pos, n = 0, len(irb)
    while pos + 12 <= n and irb[pos:pos + 4] in (b"8BIM", b"PHUT", b"DCSR", b"AgHg", b"MeSa"):
        rid = struct.unpack_from(">H", irb, pos + 4)[0]
        name_len = irb[pos + 6]
        pos += 6 + ((name_len + 2) & ~1)  # the Pascal name with its length byte, padded to even
        if pos + 4 > n:
            break
        size = struct.unpack_from(">I", irb, pos)[0]
        pos += 4
        out.setdefault(rid, irb[pos:pos + size])
        pos += size + (size & 1)
    return out


def _jpeg_irb(data: bytes) -> bytes:
    """The Photoshop IRB of a JPEG (APP13 "Photoshop 3.0" segments, joined in order)."""
    return b"".join(data[start:end] for start, end in jpeg_payloads(data, 0xED, PHOTOSHOP_APP13))


def _tiff_ifd0_raw(data: bytes, wanted: tuple[int, ...]) -> dict[int, bytes]:
    """The raw value bytes (file order) of some IFD0 tags of a classic TIFF. IPTC is often typed LONG,
    but its bytes are the IIM stream, so they are taken as they lie in the file."""
    bo = tiff_order(data, 0) if data[:4] in (b"II*\x00", b"MM\x00*") else None
    ifd0 = ifd0_offset(data, 0, bo) if bo is not None else None
    if ifd0 is None:
        return {}
    entries = {tag: ifd_entry(data, 0, ifd0, tag, bo) for tag in wanted}
    return {tag: e.raw(data, 0) for tag, e in entries.items() if e is not None}


def iptc_digests(data: bytes | None, fmt: str) -> IptcDigests:
    """The IPTC digests of a JPEG or TIFF file's bytes (other formats: no IPTC, XMP is in charge)."""
    if not data:
        return IptcDigests()
    iptc = stored = None
    try:
        if fmt == "JPEG":
            res = _irb_resources(_jpeg_irb(data))
            iptc, stored = res.get(0x0404), res.get(0x0425)
        elif fmt == "TIFF":
            raw = _tiff_ifd0_raw(data, (33723, 34377))  # IPTC-NAA, Photoshop IRB
            iptc = raw.get(33723)
            stored = _irb_resources(raw[34377]).get(0x0425) if 34377 in raw else None
    except Exception:  # unreadable structure: no digest, XMP keeps the lead (MWG default)
        return IptcDigests()
    return IptcDigests(current=hashlib.md5(iptc).hexdigest() if iptc else None,
                       stored=stored.hex() if stored and len(stored) == 16 else None)


def _recover_truncated(iptc: Any, xmp: Any, limit: int) -> Any:
    """An IPTC value cut at the IIM limit -> the XMP value it is the start of (exiftool's rule)."""
    if xmp is None:
        return iptc
    if isinstance(iptc, list):
        xl = xmp if isinstance(xmp, list) else [xmp]
        return [_recover_truncated(v, xl[i] if i < len(xl) else None, limit) for i, v in enumerate(iptc)]
    if isinstance(iptc, str) and len(iptc.encode("utf-8")) == limit:
        x = xmp[0] if isinstance(xmp, list) and xmp else xmp
        if isinstance(x, str) and len(x.encode("utf-8")) > limit and x.encode("utf-8")[:limit] == iptc.encode("utf-8"):
            return x
    return iptc


def description(values: dict[str, Any], digests: IptcDigests, *, usable=lambda s: bool(s and s.strip())
                ) -> tuple[str | None, str | None]:
    """(text, key) of the MWG Description; `usable` rejects values the caller does not count as one."""
    exif = values.get("IFD0:ImageDescription")
    if isinstance(exif, str) and usable(exif):
        return exif, "IFD0:ImageDescription"
    xmp, iptc = values.get("XMP-dc:Description"), values.get("IPTC:Caption-Abstract")
    if digests.current is None or (xmp is not None and digests.xmp_in_charge):
        pick, key = xmp, "XMP-dc:Description"
    else:
        pick, key = _recover_truncated(iptc, xmp, 2000), "IPTC:Caption-Abstract"
    if isinstance(pick, str) and usable(pick):
        return pick, key
    return None, None


def keywords(values: dict[str, Any], digests: IptcDigests) -> tuple[list[str], str | None]:
    """(keywords, key) of the MWG Keywords."""
    xmp, iptc = values.get("XMP-dc:Subject"), values.get("IPTC:Keywords")
    if digests.current is None or (xmp is not None and digests.xmp_in_charge):
        return list(xmp or []), "XMP-dc:Subject" if xmp else None
    return list(_recover_truncated(list(iptc or []), xmp, 64)), "IPTC:Keywords" if iptc else None

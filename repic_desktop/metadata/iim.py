"""IPTC-IIM in JPEG, at the byte level: after a backend has rewritten a photo's IIM block, put back every
dataset we did not mean to change exactly as another tool wrote it, declare one charset for all of them,
and keep Photoshop's IPTCDigest true.

Why this exists (issue #13, seen on real agency files):
- Both backends declare the block UTF-8 (CodedCharacterSet ESC % G) but leave older datasets as they
  are, so a Latin-1 CopyrightNotice "\\xa9 2004" becomes invalid UTF-8 and readers show "?".
- exiv2 re-encodes every dataset from its parsed value, so an AP TimeCreated "165100" comes back as
  "165100+0000" (and other non-standard values change too).
- Neither backend updates Photoshop's IPTCDigest (8BIM 0x0425, MD5 of the IIM block), so Photoshop,
  Lightroom and MWG readers take the IIM for "edited by a tool that does not know XMP".

Charset decision: when our write declares UTF-8 and the block was not UTF-8 before, the other tools'
text datasets are transcoded to UTF-8 (a block has one charset, and our names, e.g. Chinese ones, do not
fit Latin-1, so "keep the file's charset" would need a second path that still fails for them). An
undeclared block is read as exiftool and the IPTC/MWG guidance do: cp1252 ("Latin"). A value that is
already valid UTF-8 is left as it is: agencies often wrote UTF-8 without declaring it (Corbis' "\\xc2\\xa9"),
and declaring UTF-8 then makes it read as meant; ASCII (dates, times, numbers) is unchanged either way.

IPTCDigest decision (what exiftool's `-IPTCDigest-=old -IPTCDigest=new` does): a digest that matched the
old block is set to the MD5 of the new one; a digest that was already stale is left stale, because it
says "the IIM was edited without the XMP" about fields we did not bring in sync.

Only the common layout is handled: one APP13 "Photoshop 3.0" segment holding the IIM resource, in the
old and in the new file. Anything else (an IRB split over several segments, extended-length datasets)
is left exactly as the backend wrote it. TIFF (IIM in tag 33723) is not handled here.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from .containers import PHOTOSHOP_APP13, jpeg_segments

PS_HEADER = PHOTOSHOP_APP13
RES_IPTC, RES_DIGEST = 0x0404, 0x0425
UTF8_DECL = b"\x1b%G"
# Exiftool key -> IIM (record, dataset) for the datasets we write (fields.py).
DATASETS = {"IPTC:CodedCharacterSet": (1, 90), "IPTC:Caption-Abstract": (2, 120), "IPTC:Keywords": (2, 25),
            "IPTC:ObjectName": (2, 5)}
# Binary datasets (record/file format versions, preview data): never transcoded.
_BINARY = {(1, 0), (1, 20), (1, 22), (1, 90), (2, 0), (2, 200), (2, 201), (2, 202)}


@dataclass
class _Block:
    seg_start: int             # the APP13 marker
    seg_end: int
    res_start: int             # the IIM resource's header ("8BIM")
    data_start: int            # its data
    data_len: int
    res_end: int               # after the data and its pad byte
    digest: tuple[int, int] | None  # (offset, length) of the IPTCDigest data in the same segment

    def data(self, buf: bytes) -> bytes:
        return buf[self.data_start:self.data_start + self.data_len]


def _photoshop_segments(buf: bytes) -> list[tuple[int, int]] | None:
    """(start, end) of the APP13 Photoshop segments; None when the header is not one we can rewrite."""
    segs, ok = jpeg_segments(buf)
    if not ok:
        return None
    return [(start, end) for m, start, end in segs
            if m == 0xED and buf[start + 4:start + 4 + len(PS_HEADER)] == PS_HEADER]


def _find(buf: bytes) -> _Block | None | bool:
    """The IIM resource (None: there is none; False: a layout we leave alone)."""
    segs = _photoshop_segments(buf)
    if segs is None or len(segs) > 1:
        return False if segs else None
    if not segs:
        return None
    s, e = segs[0]
    p = s + 4 + len(PS_HEADER)
    iptc = digest = None
    while p + 12 <= e:
        rtype, rid, nl = buf[p:p + 4], int.from_bytes(buf[p + 4:p + 6], "big"), buf[p + 6]
        q = p + 7 + nl + ((1 + nl) % 2)
        if q + 4 > e:
            return False
        size = int.from_bytes(buf[q:q + 4], "big")
        end = q + 4 + size + (size % 2)
        if q + 4 + size > e:
            return False
        if rtype == b"8BIM" and rid == RES_IPTC and iptc is None:
            iptc = (p, q + 4, size, min(end, e))
        elif rtype == b"8BIM" and rid == RES_DIGEST and size == 16:
            digest = (q + 4, 16)
        p = end
    if iptc is None:
        return None
    return _Block(s, e, iptc[0], iptc[1], iptc[2], iptc[3], digest)


def datasets(block: bytes) -> list[tuple[int, int, bytes]] | None:
    """(record, dataset, value) in file order; None for what we do not parse (extended lengths)."""
    out, p = [], 0
    while p < len(block):
        if block[p] != 0x1C:
            return out if not block[p:].strip(b"\0") else None  # trailing pad is allowed
        if p + 5 > len(block):
            return None
        n = int.from_bytes(block[p + 3:p + 5], "big")
        if n & 0x8000 or p + 5 + n > len(block):
            return None
        out.append((block[p + 1], block[p + 2], block[p + 5:p + 5 + n]))
        p += 5 + n
    return out


def _encode(sets: list[tuple[int, int, bytes]]) -> bytes | None:
    if any(len(v) > 0x7FFF for _, _, v in sets):
        return None
    return b"".join(b"\x1c" + bytes((r, d)) + len(v).to_bytes(2, "big") + v for r, d, v in sets)


def cp1252_to_utf8(value: bytes) -> bytes:
    """Legacy IIM text as UTF-8: valid UTF-8 stays, else cp1252 (its 5 undefined bytes as Latin-1)."""
    try:
        value.decode("utf-8")
        return value
    except UnicodeDecodeError:
        pass
    chars = []
    for b in value:
        try:
            chars.append(bytes((b,)).decode("cp1252"))
        except UnicodeDecodeError:
            chars.append(chr(b))
    return "".join(chars).encode("utf-8")


def legacy_text(value: bytes) -> str:
    """An IIM text value as read here: UTF-8 when valid, else cp1252 (see the module docstring)."""
    return cp1252_to_utf8(value).decode("utf-8")


def ours_as_read(buf: bytes) -> dict[str, Any] | None:
    """The IIM values of our keys in a JPEG, decoded with legacy_text (lists for repeatable ones), or
    None when there is no IIM block we parse. exiftool decodes an undeclared block with one charset
    for all values and turns every byte it cannot decode into "?", which a merge would then write back."""
    blk = _find(buf)
    sets = datasets(blk.data(buf)) if blk else None
    if sets is None:
        return None
    out: dict[str, Any] = {}
    for key, tag in DATASETS.items():
        vals = [legacy_text(v) for r, d, v in sets if (r, d) == tag]
        if vals and key != "IPTC:CodedCharacterSet":
            out[key] = vals if key == "IPTC:Keywords" else vals[0]
    return out


def _utf8(sets) -> bool:
    return any((r, d) == (1, 90) and v == UTF8_DECL for r, d, v in sets)


def _latin(sets) -> bool:
    """The blocks read as cp1252, as exiftool does: any CodedCharacterSet except an "ESC %" coding
    system (UTF-8, or one nobody decodes: such a block is left as it is rather than guessed)."""
    return not any(v.startswith(b"\x1b%") for r, d, v in sets if (r, d) == (1, 90))


def reconcile(old: bytes, new: bytes, changed: set[tuple[int, int]]) -> bytes:
    """`new` (a backend's rewrite of `old`) with the IIM datasets not in `changed` put back as `old` had
    them (transcoded to UTF-8 when the block now says UTF-8) and a valid IPTCDigest kept valid."""
    ob, nb = _find(old), _find(new)
    if not ob or not nb:
        return new
    old_block, new_block = ob.data(old), nb.data(new)
    old_sets, new_sets = datasets(old_block), datasets(new_block)
    if old_sets is None or new_sets is None:
        return new
    transcode = _utf8(new_sets) and not _utf8(old_sets) and _latin(old_sets)
    by_tag: dict[tuple[int, int], list[bytes]] = {}
    for r, d, v in old_sets:
        by_tag.setdefault((r, d), []).append(v)

    def theirs(tag):
        r, d = tag
        fix = transcode and r in (1, 2) and tag not in _BINARY
        return [(r, d, cp1252_to_utf8(v) if fix else v) for v in by_tag[tag]]

    final, done = [], set()
    for r, d, v in new_sets:
        tag = (r, d)
        if tag in changed or tag not in by_tag:
            final.append((r, d, v))
        elif tag not in done:
            done.add(tag)
            final += theirs(tag)
    for tag in by_tag:  # a dataset the backend dropped goes back (records stay in ascending order)
        if tag not in done and tag not in changed:
            done.add(tag)
            final += theirs(tag)
    final.sort(key=lambda x: x[0])
    block = _encode(final)
    if block is None:
        return new
    out = new
    if block != new_block:
        res_len = nb.data_start - nb.res_start
        header = new[nb.res_start:nb.data_start - 4] + len(block).to_bytes(4, "big")
        resource = header + block + (b"\0" if len(block) % 2 else b"")
        payload = new[nb.seg_start + 4:nb.res_start] + resource + new[nb.res_end:nb.seg_end]
        if len(payload) + 2 > 0xFFFF or res_len <= 4:
            return new
        out = new[:nb.seg_start] + b"\xff\xed" + (len(payload) + 2).to_bytes(2, "big") + payload + new[nb.seg_end:]
    if ob.digest is not None:
        o, n = ob.digest
        was_valid = old[o:o + n] == hashlib.md5(old_block).digest()
        cur = _find(out)
        if was_valid and cur and cur.digest is not None:
            o2, _ = cur.digest
            out = out[:o2] + hashlib.md5(block).digest() + out[o2 + 16:]
    return out


__all__ = ["DATASETS", "cp1252_to_utf8", "datasets", "legacy_text", "ours_as_read", "reconcile"]

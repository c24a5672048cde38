"""pyexiv2 (exiv2 in-process), the primary backend: reading and editing in memory.

Workarounds (reference/metadata.md, all three needed and tested):
1. lang-alt values use the key form `{'lang="x-default"': text}` (`{'x-default': text}` silently writes
   "x-default <text>").
2. existing arrays/structs we rewrite are deleted first, deepest key first (else the second write of a
   file with regions fails: "XMP Toolkit error 102: Indexing applied to non-array").
3. pyexiv2 writes every XMP array as rdf:Seq; the raw packet is patched Seq -> Bag for the properties
   the standards define as Bag (dc:subject, lr:hierarchicalSubject, PersonInImage, mwg-rs:RegionList,
   MPRI:Regions). digiKam:TagsList stays a Seq, as digiKam writes it.
Plus: edits happen on `ImageData` (memory), never `Image(path)` (each modify_* call rewrites the file
and a failure half-way leaves it half-updated); `close()` may raise after a toolkit error; values are
decoded leniently (UTF-8, else Latin-1) so one odd byte in a maker note cannot block an export.
"""
from __future__ import annotations

import codecs
import os
import re
from typing import Any

from ..core import exiv2lib
from . import iim
from .edit import _HI, _LO, EMBED_FORMATS, BackendError, Edit, _bmp_stand_in
from .fields import BY_KEY, FIELDS, IPTC_UTF8, canonical_dict, fmt_num, mp_rect_text

_LENIENT = "repic-lenient-utf8"


def _lenient_search(name: str):
    if name.replace("_", "-") != _LENIENT:
        return None

    def decode(b, errors="strict"):
        b = bytes(b)
        try:
            return b.decode("utf-8"), len(b)
        except UnicodeDecodeError:
            return iim.legacy_text(b), len(b)

    def encode(s, errors="strict"):
        return s.encode("utf-8", "surrogateescape"), len(s)

    return codecs.CodecInfo(encode, decode, name=_LENIENT)


codecs.register(_lenient_search)

def _pyexiv2():
    return exiv2lib.load()  # the one accessor: exiv2's log muted (its warnings go to our stdout)


def pyexiv2_available() -> bool:
    return os.environ.get("REPIC_NO_PYEXIV2") != "1" and _pyexiv2() is not None


MWG = "Xmp.mwg-rs.Regions"
MWG_LIST = MWG + "/mwg-rs:RegionList"
MWG_DIMS = MWG + "/mwg-rs:AppliedToDimensions"
MP = "Xmp.MP.RegionInfo"
MP_LIST = MP + "/MPRI:Regions"
_ITEM = re.compile(r"^\[(\d+)\]/([\w.-]+):([\w.-]+)(/.*)?$")
_AREA = {"stArea:x": "X", "stArea:y": "Y", "stArea:w": "W", "stArea:h": "H", "stArea:unit": "Unit"}
_DIMS = {"stDim:w": "W", "stDim:h": "H", "stDim:unit": "Unit"}

# Bag properties, by local name: the prefix is whatever the XMP toolkit registered first for the
# namespace (exiv2's "iptcExt", or exiftool's/Adobe's "Iptc4xmpExt" once such a packet was parsed).
_BAG_LOCAL = ("subject", "hierarchicalSubject", "PersonInImage", "RegionList", "Regions")
_SEQ_RE = re.compile(r"(<([\w.-]+):(%s)>\s*)<rdf:Seq>(.*?)</rdf:Seq>" % "|".join(_BAG_LOCAL), re.S)


def seq_to_bag(packet: str) -> str:
    return _SEQ_RE.sub(lambda m: f"{m.group(1)}<rdf:Bag>{m.group(4)}</rdf:Bag>", packet)


def _parse_items(xmp: dict[str, Any], list_key: str) -> dict[int, dict[str, Any]]:
    items: dict[int, dict[str, Any]] = {}
    n = len(list_key)
    for k, v in xmp.items():
        if not k.startswith(list_key + "["):
            continue
        m = _ITEM.match(k[n:])
        if not m:
            continue
        i, prop, rest = int(m.group(1)), m.group(3), m.group(4)  # group 2, the prefix, varies (see above)
        item = items.setdefault(i, {})
        if rest is None:
            if not (isinstance(v, str) and v.startswith("type=")):
                item[prop] = v
        elif prop == "Area" and rest[1:] in _AREA:
            item.setdefault("Area", {})[_AREA[rest[1:]]] = v
    return items


def _regions_from_exiv2(xmp: dict[str, Any]) -> dict | None:
    if not any(k.startswith(MWG) for k in xmp):
        return None
    raw: dict[str, Any] = {}
    dims = {_DIMS[k[len(MWG_DIMS) + 1:]]: v for k, v in xmp.items()
            if k.startswith(MWG_DIMS + "/") and k[len(MWG_DIMS) + 1:] in _DIMS}
    if dims:
        raw["AppliedToDimensions"] = dims
    raw["RegionList"] = [v for _, v in sorted(_parse_items(xmp, MWG_LIST).items())]
    return raw


def _mp_from_exiv2(xmp: dict[str, Any]) -> dict | None:
    if not any(k.startswith(MP) for k in xmp):
        return None
    return {"Regions": [v for _, v in sorted(_parse_items(xmp, MP_LIST).items())]}


def _under(key: str, base: str) -> bool:
    return key == base or key.startswith(base + "/") or key.startswith(base + "[")


# exiv2's XMP namespace registry is process-global, and parsing a packet re-binds a prefix to whatever URI
# that packet declares for it: after one file with digiKam's old URI (http://www.digikam.org/, digiKam
# 4.x), every later file's Xmp.digiKam.* keys were written under the old URI, invisible to digiKam. So
# before each parse the prefixes our keys use are bound to their standard URIs again, and a packet's
# other URI for one of those prefixes gets a prefix of its own (e.g. digiKam_1): that file keeps its
# old-URI properties as they are, and ours go under the standard URI. The IPTC Extension URI is bound to
# exiv2's own prefix iptcExt, as in a fresh process: before, the prefix written depended on whether the
# process had already parsed a packet that says Iptc4xmpExt, so two processes wrote different bytes for
# the same values. (Binding Iptc4xmpExt instead makes exiv2 read back keys it does not write.)
STANDARD_NS = {
    "iptcExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "tiff": "http://ns.adobe.com/tiff/1.0/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "lr": "http://ns.adobe.com/lightroom/1.0/",
    "digiKam": "http://www.digikam.org/ns/1.0/",
    "mwg-rs": "http://www.metadataworkinggroup.com/schemas/regions/",
    "stArea": "http://ns.adobe.com/xmp/sType/Area#",
    "stDim": "http://ns.adobe.com/xap/1.0/sType/Dimensions#",
    "MP": "http://ns.microsoft.com/photo/1.2/",
    "MPRI": "http://ns.microsoft.com/photo/1.2/t/RegionInfo#",
    "MPReg": "http://ns.microsoft.com/photo/1.2/t/Region#",
}
XMLNS_RE = re.compile(rb"""xmlns:([A-Za-z_][\w.-]*)\s*=\s*["']([^"']*)["']""")
_ns_aliases: dict[str, str] = {}


def _same_ns(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")  # exiv2 adds a missing trailing slash itself


def guard_namespaces(data: bytes) -> None:
    """Call before pyexiv2 parses `data` (see STANDARD_NS)."""
    px = _pyexiv2()
    for prefix, uri in STANDARD_NS.items():
        px.registerNs(uri, prefix)
    if b"xmlns:" not in data:
        return
    for m in XMLNS_RE.finditer(data):
        prefix = m.group(1).decode("ascii", "replace")
        std = STANDARD_NS.get(prefix)
        if std is None:
            continue
        uri = m.group(2).decode("utf-8", "replace")
        if _same_ns(uri, std):
            continue
        alias = _ns_aliases.get(uri)
        if alias is None:
            alias = _ns_aliases[uri] = f"{prefix}_{len(_ns_aliases) + 1}"
        px.registerNs(uri, alias)


def _xmp_prefixes(key: str) -> set[str]:
    parts = key.split(".", 2)
    out = {parts[1]} if len(parts) > 2 else set()
    out.update(re.findall(r"/([\w.-]+):", key))
    return out


class Pyexiv2Edit(Edit):
    def __init__(self, data: bytes, fmt: str):
        px = _pyexiv2()
        self.fmt = fmt
        guard_namespaces(data)
        try:
            self.img = px.ImageData(data)
        except (RuntimeError, ValueError) as exc:
            raise BackendError(f"pyexiv2 cannot open it: {exc}") from None
        try:
            self.exif = {} if fmt == "XMP" else _read_exif(self.img, data)
            self.iptc = {} if fmt == "XMP" else self.img.read_iptc(encoding=_LENIENT)
            self.xmp = self.img.read_xmp(encoding=_LENIENT)
        except Exception as exc:
            self.close()
            raise BackendError(f"cannot read the existing metadata: {exc}") from None
        self.has_iptc = bool(self.iptc)
        raw: dict[str, Any] = {}
        for f in FIELDS:
            src = {"exif": self.exif, "iptc": self.iptc, "xmp": self.xmp}[f.container]
            if f.kind == "regions":
                v = _regions_from_exiv2(self.xmp)
            elif f.kind == "mp_regions":
                v = _mp_from_exiv2(self.xmp)
            else:
                v = src.get(f.exiv2)
            if v is not None:
                raw[f.key] = v
        self.old = canonical_dict(raw)

    def snapshot(self) -> dict[str, Any]:
        """Every key exiv2 read from the original (for verify.check_pyexiv2)."""
        return {**self.exif, **self.iptc, **self.xmp}

    def close(self) -> None:
        img, self.img = getattr(self, "img", None), None
        if img is not None:
            try:
                img.close()
            except Exception:  # pyexiv2 raises the pending toolkit error again from close()
                pass

    def render(self, changes: dict[str, Any], tmp: str) -> bytes:
        exif: dict[str, Any] = {}
        iptc: dict[str, Any] = {}
        xmp_delete: list[str] = []
        xmp_set: dict[str, Any] = {}
        bags = False
        user_comment = None
        for key, val in changes.items():
            f = BY_KEY[key]
            if f.container == "exif":
                if val is None:
                    exif[f.exiv2] = None
                elif key == "ExifIFD:UserComment":
                    exif[f.exiv2] = "charset=Unicode " + _bmp_stand_in(val)
                    user_comment = val
                else:
                    exif[f.exiv2] = val
            elif f.container == "iptc":
                iptc[f.exiv2] = IPTC_UTF8 if key == "IPTC:CodedCharacterSet" and val == "UTF8" else val
            elif f.kind == "langalt":
                cur = self.xmp.get(f.exiv2)
                langs = dict(cur) if isinstance(cur, dict) else {}
                langs.pop('lang="x-default"', None)
                xmp_delete += [k for k in self.xmp if _under(k, f.exiv2)]
                if val is not None:
                    xmp_set[f.exiv2] = {'lang="x-default"': val, **langs}  # workaround 1
                elif langs:
                    xmp_set[f.exiv2] = langs
            elif f.kind == "list":
                xmp_delete += [k for k in self.xmp if _under(k, f.exiv2)]
                if val:
                    xmp_set[f.exiv2] = list(val)
                    bags = bags or key != "XMP-digiKam:TagsList"
            elif f.kind == "regions":
                xmp_delete += [k for k in self.xmp if _under(k, MWG)]
                if val:
                    xmp_set.update(_mwg_keys(val))
                    bags = True
            elif f.kind == "mp_regions":
                xmp_delete += [k for k in self.xmp if _under(k, MP)]
                if val:
                    xmp_set.update(_mp_keys(val))
                    bags = True
        try:
            if exif:
                self.img.modify_exif(exif, encoding="utf-8")
            if iptc:
                self.img.modify_iptc(iptc, encoding="utf-8")
            if xmp_delete:  # workaround 2: clear what we rewrite, deepest keys first
                self.img.modify_xmp({k: None for k in sorted(set(xmp_delete), key=len, reverse=True)},
                                    encoding="utf-8")
            if xmp_set:
                self.img.modify_xmp(xmp_set, encoding="utf-8")
            self._untangle_prefixes()  # exiv2 serializes the XMP again even when only EXIF/IPTC changed
            if bags:  # workaround 3: rdf:Seq -> rdf:Bag where the standards say Bag
                raw = self.img.read_raw_xmp(encoding="utf-8")
                fixed = seq_to_bag(raw)
                if fixed != raw:
                    self.img.modify_raw_xmp(fixed, encoding="utf-8")
                    self._untangle_prefixes()  # parsing the packet put the attribute properties first again
            out = self.img.get_bytes()
            return _fix_user_comment(out, user_comment) if user_comment is not None else out
        except (RuntimeError, ValueError, UnicodeError) as exc:
            raise BackendError(f"pyexiv2 could not write the metadata: {exc}") from None

    def _untangle_prefixes(self) -> None:
        """exiv2's bundled XMP toolkit does not declare a prefix that ends another prefix declared before it
        (it looks for "MP:" in "...GIMP:..."): a GIMP-written file with a person region became "Not valid
        XMP". Properties are serialized in the order they were added, so the longer prefix's (simple)
        properties are removed and added again, which moves its declaration after ours."""
        xmp = self.img.read_xmp(encoding=_LENIENT)
        prefixes: set[str] = set()
        for k in xmp:
            prefixes |= _xmp_prefixes(k)
        clash = {q for q in prefixes if any(q != p and q.endswith(p) for p in prefixes)}
        if not clash:
            return
        moved = {k: v for k, v in xmp.items() if k.split(".", 2)[1] in clash}
        nested = {q for q in clash if any(q in _xmp_prefixes(k) for k in xmp if k not in moved)}
        if nested or any(not isinstance(v, str) or "/" in k or "[" in k for k, v in moved.items()):
            raise BackendError(f"pyexiv2 cannot write this XMP: the namespace prefix(es) {', '.join(sorted(clash))} "
                               f"would lose their declaration (an exiv2 bug)")
        self.img.modify_xmp({k: None for k in moved}, encoding="utf-8")
        self.img.modify_xmp(moved, encoding="utf-8")


def _fix_user_comment(data: bytes, text: str) -> bytes:
    stand_in = _bmp_stand_in(text)
    if stand_in == text:
        return data
    for enc in ("utf-16-be", "utf-16-le"):
        old = b"UNICODE\0" + stand_in.encode(enc)
        if data.count(old) == 1:
            return data.replace(old, b"UNICODE\0" + text.encode(enc))
    raise BackendError("pyexiv2 could not write the EXIF UserComment (characters outside the BMP)")


def _read_exif(img, data: bytes) -> dict[str, Any]:
    """read_exif, also for a Unicode UserComment with surrogate pairs (an emoji written by exiftool,
    Windows or us), which exiv2's UCS-2 conversion rejects for the whole EXIF block: the pairs are
    read through stand-ins from a patched copy and put back into the value."""
    try:
        return img.read_exif(encoding=_LENIENT)
    except RuntimeError as exc:
        if "UCS-2" not in str(exc):
            raise
    at = data.find(b"Exif\0\0")
    big = data[at + 6:at + 8] == b"MM" if at >= 0 else data[:2] == b"MM"
    enc = "utf-16-be" if big else "utf-16-le"
    patched, pairs = bytearray(data), []
    start = data.find(b"UNICODE\0")
    while start >= 0:
        i = start + 8
        while i + 4 <= min(len(data), start + 8 + 65536):
            hi, lo = int.from_bytes(data[i:i + 2], "big" if big else "little"), \
                int.from_bytes(data[i + 2:i + 4], "big" if big else "little")
            if hi == 0:
                break
            if 0xD800 <= hi <= 0xDBFF and 0xDC00 <= lo <= 0xDFFF:
                pairs.append(data[i:i + 4].decode(enc))
                patched[i:i + 4] = (_HI + _LO).encode(enc)
                i += 4
            else:
                i += 2
        start = data.find(b"UNICODE\0", start + 8)
    other = _pyexiv2().ImageData(bytes(patched))
    try:
        exif = other.read_exif(encoding=_LENIENT)
    finally:
        other.close()
    uc = exif.get("Exif.Photo.UserComment")
    if isinstance(uc, str) and pairs:
        it = iter(pairs)
        exif["Exif.Photo.UserComment"] = re.sub(_HI + _LO, lambda m: next(it, ""), uc)
    return exif


def _mwg_keys(val: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    d = val.get("AppliedToDimensions")
    if d:
        out[MWG_DIMS + "/stDim:w"] = str(d["W"])
        out[MWG_DIMS + "/stDim:h"] = str(d["H"])
        out[MWG_DIMS + "/stDim:unit"] = d.get("Unit", "pixel")
    out[MWG_LIST] = []  # the array container first (else error 102)
    for i, r in enumerate(val.get("RegionList", []), 1):
        p = f"{MWG_LIST}[{i}]"
        if "Name" in r:
            out[p + "/mwg-rs:Name"] = r["Name"]
        if "Type" in r:
            out[p + "/mwg-rs:Type"] = r["Type"]
        a = r.get("Area")
        if a:
            for k in ("X", "Y", "W", "H"):
                out[f"{p}/mwg-rs:Area/stArea:{k.lower()}"] = fmt_num(a[k])
            out[f"{p}/mwg-rs:Area/stArea:unit"] = a.get("Unit", "normalized")
        for k, v in r.items():
            if k not in ("Name", "Type", "Area"):
                out[f"{p}/mwg-rs:{k}"] = str(v)
        if len(out) and not any(x.startswith(p + "/") for x in out):
            out[p + "/mwg-rs:Type"] = "Face"  # an empty struct cannot be created
    return out


def _mp_keys(val: dict) -> dict[str, Any]:
    out: dict[str, Any] = {MP_LIST: []}
    for i, r in enumerate(val.get("Regions", []), 1):
        p = f"{MP_LIST}[{i}]"
        if "PersonDisplayName" in r:
            out[p + "/MPReg:PersonDisplayName"] = r["PersonDisplayName"]
        if "Rectangle" in r:
            out[p + "/MPReg:Rectangle"] = mp_rect_text(r["Rectangle"])
        for k, v in r.items():
            if k not in ("PersonDisplayName", "Rectangle"):
                out[f"{p}/MPReg:{k}"] = str(v)
    return out


class Pyexiv2Backend:
    name = "pyexiv2"

    def can_write(self, fmt: str) -> bool:
        return fmt in EMBED_FORMATS["pyexiv2"]

    def open(self, path: str, data: bytes | None, fmt: str, read_path: str | None = None) -> Pyexiv2Edit:
        if data is None:
            with open(path, "rb") as f:
                data = f.read()
        return Pyexiv2Edit(data, fmt)

    def read(self, path: str, data: bytes | None, fmt: str) -> dict[str, Any]:
        with self.open(path, data, fmt) as ed:
            return ed.old

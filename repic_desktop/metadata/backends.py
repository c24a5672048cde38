"""Two metadata backends behind one interface: pyexiv2 (primary, in-process) and exiftool (stay-open,
via PyExifTool). Both read and write the canonical values of fields.py, so they can be swapped,
compared, and tested against each other.

An edit is `backend.open(path, data, fmt)` -> `Edit` with `.old` (canonical values found) and
`.render(changes, tmp)`, which makes the complete new file at `tmp` (or returns its bytes); the
writer then does the atomic replace. Nothing here ever writes to the original file.

pyexiv2 workarounds (reference/metadata.md, all three needed and tested):
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

exiftool notes: every argument goes through `ExifTool.execute`, which is the one place that makes
exiftool's stay-open stream (one argument per line, read like a `-@` argfile) safe: it passes each
argument exactly or refuses it, and gives files separately, as absolute paths, so no file name, caption
or name can ever become an option (see `stay_open_line`). Tag values also use `-E` (HTML escapes) for
every line break, so a value is always one plain line; `|`-escaping inside struct values; `-charset
iptc=UTF8` + CodedCharacterSet; list tags are cleared (`-TAG=`) before items are added; JSON numbers are
parsed as their literal text so a caption "1.50" stays "1.50". exiftool cannot write WebP through `-o`
("Can't write RIFF files"), so every exiftool edit copies the original into the temp file and edits that
copy with -overwrite_original.
"""
from __future__ import annotations

import codecs
import html
import json
import os
import re
import shutil
import threading
from typing import Any, Iterable

from ..core import exiv2lib
from . import iim
from .containers import ifd0_offset, ifd_entry, tiff_order, tiff_start
from .fields import BY_KEY, FIELDS, IPTC_UTF8, canonical_dict, fmt_num, mp_rect_text
from .safety import Refused, write_bytes_exclusive

EMPTY_PACKET = ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
                '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
                '<rdf:Description rdf:about=""/></rdf:RDF></x:xmpmeta>\n<?xpacket end="w"?>').encode("utf-8")

EMBED_FORMATS = {"pyexiv2": frozenset({"JPEG", "PNG", "TIFF", "WEBP", "XMP"}),
                 "exiftool": frozenset({"JPEG", "PNG", "TIFF", "WEBP", "HEIF", "XMP"})}


class BackendError(Exception):
    """A backend failed on one file; str(exc) is the reason."""


class Edit:
    old: dict[str, Any]
    has_iptc: bool

    def render(self, changes: dict[str, Any], tmp: str) -> bytes | None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Edit":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ==================================================================================================
# pyexiv2
# ==================================================================================================

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


# exiv2 converts a "charset=Unicode" UserComment with iconv to UCS-2, which has no characters outside the
# BMP: an emoji makes iconv fail and exiv2 stores the raw UTF-8 bytes as if they were UCS-2 (mojibake in
# every reader). EXIF readers (exiftool, Windows) read the Unicode comment as UTF-16, so the comment is
# written with one private-use stand-in per UTF-16 code unit and the stand-ins are then replaced by the
# real surrogate pairs in the output bytes (same length, so no offset moves).
_HI, _LO = "\ue000", "\ue001"


def _bmp_stand_in(text: str) -> str:
    return "".join(_HI + _LO if ord(c) > 0xFFFF else c for c in text)


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


# ==================================================================================================
# exiftool (stay-open, via PyExifTool)
# ==================================================================================================

def exiftool_executable() -> str | None:
    """The exiftool program to use: $REPIC_EXIFTOOL (a path, or "off"), else `exiftool` on PATH."""
    env = os.environ.get("REPIC_EXIFTOOL")
    if env is not None and env.strip().lower() in ("off", "0", "none", "no"):
        return None
    if env:
        return env if os.path.isfile(env) and os.access(env, os.X_OK) else shutil.which(env)
    return shutil.which("exiftool")


def exiftool_available() -> bool:
    if exiftool_executable() is None:
        return False
    try:
        import exiftool  # noqa: F401  (PyExifTool)
    except Exception:
        return False
    return True


# exiftool itself splits only at "\n" and drops a trailing "\r"; the other characters Python or Perl may
# take for a line end are escaped too, so that nothing downstream depends on that.
_LINE_BREAKS = {ord(c): f"&#x{ord(c):x};" for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def _esc_text(s: str) -> str:
    """For -E: HTML-escape, and encode line breaks, and a leading blank (which exiftool's argfile reader
    would drop after "-TAG="), so the `-TAG=value` argument is always one plain line."""
    s = html.escape(s, quote=False).translate(_LINE_BREAKS)
    return f"&#x{ord(s[0]):x};{s[1:]}" if s[:1].isspace() else s


def _esc_struct(s: str) -> str:
    for c in "|,{}[]=":
        s = s.replace(c, "|" + c)
    return s


def _struct(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}={_struct(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ",".join(_struct(x) for x in v) + "]"
    if isinstance(v, float):
        return fmt_num(v)
    return _esc_struct(str(v))


def _mwg_struct(val: dict) -> dict:
    out: dict[str, Any] = {}
    if val.get("AppliedToDimensions"):
        out["AppliedToDimensions"] = val["AppliedToDimensions"]
    out["RegionList"] = val.get("RegionList", [])
    return out


def _mp_struct(val: dict) -> dict:
    return {"Regions": [{**{k: v for k, v in r.items() if k != "Rectangle"},
                         **({"Rectangle": mp_rect_text(r["Rectangle"])} if "Rectangle" in r else {})}
                        for r in val.get("Regions", [])]}


def exiftool_args(changes: dict[str, Any]) -> list[str]:
    """The exiftool arguments that write `changes` (canonical values; None deletes)."""
    args = ["-E", "-charset", "iptc=UTF8", "-charset", "exif=UTF8"]
    for key, val in changes.items():
        f = BY_KEY[key]
        if val is None:
            args.append(f"-{key}=")
        elif f.kind in ("text", "langalt"):
            args.append(f"-{key}={_esc_text(val)}")
        elif f.kind == "list":
            args.append(f"-{key}=")
            args += [f"-{key}={_esc_text(x)}" for x in val]
        elif f.kind == "regions":
            args.append(f"-{key}={_esc_text(_struct(_mwg_struct(val)))}")
        elif f.kind == "mp_regions":
            args.append(f"-{key}={_esc_text(_struct(_mp_struct(val)))}")
    return args


_READ_ARGS = ["-j", "-G1", "-struct", "-a", "-n", "-charset", "iptc=UTF8", "-charset", "exif=UTF8",
              *[f"-{f.key}" for f in FIELDS], "-IPTC:All"]


# exiftool reads the stay-open stream like a -@ argfile (FilterArgfileLine in exiftool 12.57 and 13.x):
# lines split at "\n"; a trailing "\r" is dropped; leading white space is dropped; an empty line or one
# that starts with "#" is skipped; "-TAG = value" loses the blanks around "=" and one after it. An argument
# none of that would change goes as it is (so any bytes, e.g. a non-UTF-8 file name, pass untouched).
# Any other goes as "#[CSTR]" + a C string (exiftool >= 11.08): its reader turns only \\ \n \r \t \a \b
# \f \" back into characters, and since 12.26 it turns a "$" or "@" in such a line into "\$" / "\@",
# so an argument that needs a C string and holds "$" or "@" cannot be passed exactly at all: refused.
_ARG_FILTER = re.compile(rb"^(-[-:\w]+#?)\s*([-+<]?=) ?")
_PERL_SPACE = b" \t\n\r\x0b\x0c\x85\xa0"


def stay_open_line(arg: bytes) -> bytes:
    """The line that makes exiftool's argfile reader see exactly `arg`; BackendError if none does."""
    if b"\0" in arg:
        raise BackendError("it contains a NUL character")
    if (arg and arg[:1] not in _PERL_SPACE and not arg.startswith(b"#") and b"\n" not in arg and b"\r" not in arg
            and _ARG_FILTER.sub(rb"\1\2", arg) == arg):
        return arg
    if b"$" in arg or b"@" in arg:
        raise BackendError("it has a line break, a leading blank or '#' together with '$' or '@', "
                           "which exiftool cannot be given exactly")
    return b"#[CSTR]" + arg.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def file_argument(path: str | bytes | os.PathLike) -> bytes:
    """A file name as exiftool must get it: its exact bytes, absolute (so it can never start with "-"
    or U+2212, which exiftool also takes for a dash, and be taken for an option, nor be "-" = stdin)."""
    p = os.fsencode(path)
    if not os.path.isabs(p):
        p = os.path.join(os.getcwdb(), p)
    if p.startswith(b"-"):  # pragma: no cover - an absolute path never does
        raise BackendError("the file name starts with '-'")
    return p


class ExifTool:
    """One exiftool -stay_open process (started on first use, shared, thread-safe). Options go over as
    UTF-8, file names (`files=`) as their exact bytes (non-UTF-8 names work), every one through
    `stay_open_line`; output comes back as bytes."""

    def __init__(self, executable: str | None = None):
        self.executable = executable or exiftool_executable()
        self._et = None
        self._lock = threading.Lock()

    def _process(self):
        if self._et is None:
            if self.executable is None:
                raise BackendError("exiftool is not installed")
            import exiftool
            et = exiftool.ExifTool(executable=self.executable, common_args=[], encoding="utf-8")
            try:
                et.run()
            except Exception as exc:
                raise BackendError(f"cannot start exiftool ({self.executable}): {exc}") from None
            self._et = et
        return self._et

    def execute(self, *args: str, files: Iterable[str | bytes | os.PathLike] = ()) -> tuple[int, str, str]:
        """Run exiftool with the options `args` (ours; user text only as the value of a `-TAG=value`)
        on `files`. Refuses (BackendError) any argument that cannot reach exiftool exactly as given."""
        lines, files = [], list(files)
        for a in args:
            try:
                lines.append(stay_open_line(a.encode("utf-8")))
            except (BackendError, UnicodeEncodeError) as exc:
                raise BackendError(f"refused to pass an argument to exiftool: {exc}") from None
        if files and os.name == "nt":  # os.fsencode gives UTF-8 there; exiftool assumes the ANSI code page
            lines += [b"-charset", b"filename=utf8"]
        for f in files:
            try:
                lines.append(stay_open_line(file_argument(f)))
            except BackendError as exc:
                raise BackendError(f"exiftool cannot be given this file name safely ({exc}); "
                                   f"rename the file") from None
        with self._lock:
            et = self._process()
            try:
                out = et.execute(*lines, raw_bytes=True)
                status, err = et.last_status, et.last_stderr
            except Exception as exc:  # the process died, or PyExifTool could not talk to it
                self._close_locked()
                raise BackendError(f"exiftool failed: {exc}") from None
            dec = lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else (b or "")  # noqa: E731
            return int(status or 0), dec(out), dec(err)

    def _close_locked(self) -> None:
        et, self._et = self._et, None
        if et is not None:
            try:
                et.terminate()
            except Exception:
                pass

    def close(self) -> None:
        with self._lock:
            self._close_locked()


def _exiftool_error(err: str, out: str) -> str:
    lines = [ln.strip() for ln in (err or out).splitlines() if ln.strip()]
    msg = next((ln for ln in lines if ln.startswith("Error")), lines[0] if lines else "unknown error")
    return re.sub(r" - \S+$", "", msg)


def _ifd0_bytes(buf: bytes | None, fmt: str, tag: int) -> bytes | None:
    """The raw bytes of a BYTE/UNDEFINED tag in IFD0 of a JPEG's EXIF or a TIFF (None: not found)."""
    if not buf:
        return None
    base = tiff_start(buf, fmt) if fmt in ("JPEG", "TIFF") else None
    if base is None:
        return None
    bo = tiff_order(buf, base)
    ifd0 = ifd0_offset(buf, base, bo) if bo is not None else None
    entry = ifd_entry(buf, base, ifd0, tag, bo) if ifd0 is not None else None
    if entry is None or entry.type not in (1, 7):
        return None
    raw = entry.raw(buf, base)
    return raw if len(raw) == entry.count else None


class ExifToolEdit(Edit):
    def __init__(self, et: ExifTool, path: str, data: bytes | None, fmt: str, read_path: str | None = None):
        """`data`: the bytes to edit (None: the file at `path`); `read_path`: the file holding those
        bytes when it is not `path` (a new sidecar seeded from photo.xmp)."""
        self.et, self.path, self.data, self.fmt = et, path, data, fmt
        src = read_path or path
        if data is not None and fmt == "XMP" and not os.path.exists(src):
            self.old, self.has_iptc = {}, False  # a new, empty sidecar: nothing to read yet
            return
        rc, out, err = et.execute(*_READ_ARGS, files=[src])
        try:
            rows = json.loads(out, parse_float=str, parse_int=str) if out.strip() else []
        except ValueError:
            rows = []
        if not rows:
            raise BackendError(f"exiftool cannot read it: {_exiftool_error(err, out)}")
        row = rows[0]
        self.has_iptc = any(k.startswith("IPTC:") for k in row)
        if fmt in ("JPEG", "TIFF") and data is None and ("IFD0:XPComment" in row or self.has_iptc):
            with open(src, "rb") as f:
                data = f.read()
        if "IFD0:XPComment" in row:  # exiftool reads XP tags as UCS-2: an emoji comes back as "??"
            xp = _ifd0_bytes(data, fmt, 0x9C9C)
            if xp is not None:
                row["IFD0:XPComment"] = xp.decode("utf-16-le", "replace")
        if fmt == "JPEG" and self.has_iptc:  # our IIM keys decoded as pyexiv2 does (no "?" for Latin-1)
            raw = iim.ours_as_read(data)
            if raw is not None:
                row = {k: v for k, v in row.items() if k not in iim.DATASETS or k == "IPTC:CodedCharacterSet"}
                row.update(raw)
        self.old = canonical_dict({k: v for k, v in row.items() if k in BY_KEY})

    def render(self, changes: dict[str, Any], tmp: str) -> None:
        if self.data is not None:
            write_bytes_exclusive(tmp, self.data)
        else:
            shutil.copyfile(self.path, tmp)
        xp = changes.get("IFD0:XPComment")
        if xp and _bmp_stand_in(xp) != xp:  # exiftool writes XP tags as UCS-2 (U+1F600 -> U+F600)
            changes = {**changes, "IFD0:XPComment": _bmp_stand_in(xp)}
        rc, out, err = self.et.execute(*exiftool_args(changes), "-overwrite_original", files=[tmp])
        if rc != 0 or "1 image files updated" not in out:
            raise BackendError(f"exiftool could not write the metadata: {_exiftool_error(err, out)}")
        if xp and _bmp_stand_in(xp) != xp:
            with open(tmp, "rb") as f:
                new = f.read()
            stand_in = _bmp_stand_in(xp).encode("utf-16-le")
            if new.count(stand_in) != 1:
                raise BackendError("exiftool could not write the XPComment (characters outside the BMP)")
            with open(tmp, "wb") as f:
                f.write(new.replace(stand_in, xp.encode("utf-16-le")))
        return None


class ExifToolBackend:
    name = "exiftool"

    def __init__(self, et: ExifTool | None = None):
        self.et = et or ExifTool()

    def can_write(self, fmt: str) -> bool:
        return fmt in EMBED_FORMATS["exiftool"]

    def open(self, path: str, data: bytes | None, fmt: str, read_path: str | None = None) -> ExifToolEdit:
        return ExifToolEdit(self.et, path, data, fmt, read_path)

    def read(self, path: str, data: bytes | None, fmt: str) -> dict[str, Any]:
        return ExifToolEdit(self.et, path, None, fmt).old

    def close(self) -> None:
        self.et.close()


# ==================================================================================================
# Choosing a backend
# ==================================================================================================

BACKEND_NAMES = ("auto", "pyexiv2", "exiftool")


def available_backends() -> list[str]:
    return [n for n, ok in (("pyexiv2", pyexiv2_available()), ("exiftool", exiftool_available())) if ok]


class Backends:
    """The backends of one session (one exiftool process for a whole export)."""

    def __init__(self, preference: str = "auto"):
        if preference not in BACKEND_NAMES:
            raise ValueError(f"backend must be one of {', '.join(BACKEND_NAMES)}")
        self.preference = preference
        self._px: Pyexiv2Backend | None = None
        self._et: ExifToolBackend | None = None
        self.available = available_backends()

    def get(self, name: str):
        if name == "pyexiv2":
            if self._px is None:
                self._px = Pyexiv2Backend()
            return self._px
        if self._et is None:
            self._et = ExifToolBackend()
        return self._et

    def for_format(self, fmt: str):
        """The backend that edits `fmt` ("XMP" = a sidecar), or None when none can."""
        if self.preference != "auto":
            if self.preference not in self.available:
                raise Refused(f"the {self.preference} backend is not installed "
                              f"(available: {', '.join(self.available) or 'none'})")
            be = self.get(self.preference)
            return be if be.can_write(fmt) else None
        for name in self.available:  # pyexiv2 first: in-process, 3-5x faster
            if fmt in EMBED_FORMATS[name]:
                return self.get(name)
        return None

    def reader(self):
        if not self.available:
            return None
        name = self.preference if self.preference != "auto" else self.available[0]
        return self.get(name) if name in self.available else None

    def close(self) -> None:
        if self._et is not None:
            self._et.close()
            self._et = None

    def __enter__(self) -> "Backends":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def no_backend_reason() -> str:
    why = f" (pyexiv2: {exiv2lib.load_error()})" if exiv2lib.load_error() else ""
    return ("no metadata library is installed: `pip install pyexiv2` (or install exiftool)" + why)


__all__ = ["Backends", "BackendError", "EMPTY_PACKET", "ExifTool", "ExifToolBackend", "Pyexiv2Backend",
           "available_backends", "exiftool_args", "exiftool_available", "pyexiv2_available", "seq_to_bag"]

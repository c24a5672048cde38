"""The field map: every user-facing field (caption, title, people & pets, regions, keywords) and every
metadata key it fills, per backend, in the style of Photini's tag table (one row per key).

Canonical values. Both backends read and write the same *canonical* form, so their results can be
compared, diffed (`repic export --dry-run`) and tested against each other:

- text fields: `str` (lang-alt fields: the `x-default` text only; other languages are left as they are)
- list fields: `list[str]` (XMP Bag/Seq, repeated IPTC datasets)
- `XMP-mwg-rs:RegionInfo`: `{"AppliedToDimensions": {"W": int, "H": int, "Unit": "pixel"},
  "RegionList": [{"Name", "Type", "Area": {"X", "Y", "W", "H", "Unit"}, **other simple fields}]}`
  with X/Y the *centre* of the box, all normalised to 0..1 of the *stored* image (MWG 2.0: "region
  metadata is applied to the stored image"; EXIF Orientation is applied by the reader).
- `XMP-MP:RegionInfoMP`: `{"Regions": [{"PersonDisplayName", "Rectangle": [x, y, w, h]}]}` with x/y the
  *top-left* corner, normalised, same stored frame (digiKam writes both structs from one box).

The key names are exiftool's "family 1 group:tag" names, so a diff reads like `exiftool -G1` output.

Nothing here imports Qt, torch or a metadata library.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

from ..core.concepts import CONTROL_TOKEN_RE, TAG_RE  # the same tag/control-token rules as the prompt

GROUPS = ("caption", "title", "people", "regions", "keywords")
# What `repic export` writes when --fields is not given (title: the library has none to write).
DEFAULT_GROUPS = ("caption", "people", "regions", "keywords")

PRIMARY, SECONDARY, AUX, READ_ONLY = "primary", "secondary", "aux", "read-only"

IPTC_CAPTION_MAX_BYTES = 2000
IPTC_KEYWORD_MAX_BYTES = 64
IPTC_OBJECTNAME_MAX_BYTES = 64
IPTC_UTF8 = "\x1b%G"          # IPTC 1:90 CodedCharacterSet value declaring UTF-8
AREA_DIGITS = 6               # decimals written for normalised region coordinates


@dataclass(frozen=True)
class Field:
    key: str                  # canonical id = exiftool family-1 tag name
    groups: tuple[str, ...]   # user-facing fields that fill this key
    container: str            # exif | iptc | xmp
    kind: str                 # text | langalt | list | regions | mp_regions
    exiv2: str                # pyexiv2 / exiv2 key
    role: str = PRIMARY       # primary: always written; secondary: kept in sync only when already present
    max_bytes: int | None = None
    readers: str = ""         # who reads it (see reference/metadata.md for the evidence)


FIELDS: tuple[Field, ...] = (
    # ---- caption: the MWG "Description" triple, kept in sync
    Field("XMP-dc:Description", ("caption",), "xmp", "langalt", "Xmp.dc.description",
          readers="Lightroom Caption, digiKam, Photini, Immich, PhotoPrism"),
    Field("IFD0:ImageDescription", ("caption",), "exif", "text", "Exif.Image.ImageDescription",
          readers="Immich reads it FIRST (a stale copy hides a new dc:description), Photini, PhotoPrism"),
    Field("IPTC:Caption-Abstract", ("caption",), "iptc", "text", "Iptc.Application2.Caption",
          max_bytes=IPTC_CAPTION_MAX_BYTES, readers="PhotoPrism, Photo Mechanic, older tools (IIM)"),
    # secondary caption copies: never added, but updated when a file already has them, so they cannot go stale
    Field("IFD0:XPComment", ("caption",), "exif", "text", "Exif.Image.XPComment", role=SECONDARY,
          readers="Windows Explorer 'Comments'"),
    Field("ExifIFD:UserComment", ("caption",), "exif", "text", "Exif.Photo.UserComment", role=SECONDARY,
          readers="some cameras and viewers"),
    Field("XMP-tiff:ImageDescription", ("caption",), "xmp", "langalt", "Xmp.tiff.ImageDescription",
          role=SECONDARY, readers="Immich (exiftool's ImageDescription falls back to it in sidecars)"),
    # ---- title
    Field("XMP-dc:Title", ("title",), "xmp", "langalt", "Xmp.dc.title", readers="Lightroom Title, Photini"),
    Field("IPTC:ObjectName", ("title",), "iptc", "text", "Iptc.Application2.ObjectName",
          max_bytes=IPTC_OBJECTNAME_MAX_BYTES, readers="Photini, IIM tools"),
    # ---- people & pets named
    Field("XMP-iptcExt:PersonInImage", ("people",), "xmp", "list", "Xmp.iptcExt.PersonInImage",
          readers="IPTC 'Person shown', Photini, PhotoPrism (fallback name source)"),
    Field("XMP-dc:Subject", ("people", "keywords"), "xmp", "list", "Xmp.dc.subject",
          readers="everyone (flat keywords)"),
    Field("IPTC:Keywords", ("people", "keywords"), "iptc", "list", "Iptc.Application2.Keywords",
          max_bytes=IPTC_KEYWORD_MAX_BYTES, readers="everyone (IIM keywords)"),
    Field("XMP-lr:HierarchicalSubject", ("people",), "xmp", "list", "Xmp.lr.hierarchicalSubject",
          readers="Lightroom (People|Name, Pets|Name), Immich (2nd choice)"),
    Field("XMP-digiKam:TagsList", ("people",), "xmp", "list", "Xmp.digiKam.TagsList",
          readers="digiKam (People/Name, Pets/Name), Immich (1st choice)"),
    # ---- regions
    Field("XMP-mwg-rs:RegionInfo", ("regions",), "xmp", "regions", "Xmp.mwg-rs.Regions",
          readers="digiKam, Lightroom, Picasa, Immich (import faces), PhotoPrism"),
    Field("XMP-MP:RegionInfoMP", ("regions",), "xmp", "mp_regions", "Xmp.MP.RegionInfo",
          readers="Windows Photo Gallery / WIC people tagging, digiKam, PhotoPrism"),
    # ---- auxiliary: written whenever any IPTC dataset is written
    Field("IPTC:CodedCharacterSet", (), "iptc", "text", "Iptc.Envelope.CharacterSet", role=AUX,
          readers="declares the IIM strings as UTF-8"),
    # ---- read only (the reader uses them to tell which application wrote a file)
    Field("XMP-xmp:CreatorTool", (), "xmp", "text", "Xmp.xmp.CreatorTool", role=READ_ONLY),
    Field("IFD0:Software", (), "exif", "text", "Exif.Image.Software", role=READ_ONLY),
)

BY_KEY: dict[str, Field] = {f.key: f for f in FIELDS}
BY_EXIV2: dict[str, Field] = {f.exiv2: f for f in FIELDS}
WRITABLE = tuple(f for f in FIELDS if f.role != READ_ONLY)
LIST_KEYS = tuple(f.key for f in FIELDS if f.kind == "list")
REGION_KEYS = ("XMP-mwg-rs:RegionInfo", "XMP-MP:RegionInfoMP")

# Which metadata blocks each container can hold (as written by our backends).
# PNG has no standard IPTC block (exiftool warns "Creating non-standard IPTC in PNG"), WebP and HEIF
# have none at all; a sidecar (.xmp) holds XMP only.
CONTAINERS: dict[str, frozenset[str]] = {
    "JPEG": frozenset({"exif", "iptc", "xmp"}),
    "TIFF": frozenset({"exif", "iptc", "xmp"}),
    "PNG": frozenset({"exif", "xmp"}),
    "WEBP": frozenset({"exif", "xmp"}),
    "HEIF": frozenset({"exif", "xmp"}),
    "XMP": frozenset({"xmp"}),
}

# Hierarchical keyword roots for people and pets (digiKam / Lightroom convention).
HIERARCHY_ROOTS = {"person": "People", "pet": "Pets"}
# digiKam's internal face tags that are not names.
NOT_A_NAME = frozenset({"unknown", "unconfirmed", "ignored", "people", "pets", "unknown person"})


def fields_for(groups: Iterable[str]) -> list[Field]:
    gs = set(groups)
    return [f for f in WRITABLE if gs & set(f.groups)]


def field_table() -> list[dict[str, str]]:
    """The map as rows (user-facing field, key, exiv2 key, role, limit, readers) for docs and `--help`."""
    rows = []
    for g in (*GROUPS, ""):
        for f in FIELDS:
            if (g in f.groups) if g else (f.role == AUX):
                rows.append({"field": g or "(with any IPTC)", "exiftool": f.key, "exiv2": f.exiv2,
                             "container": f.container,
                             "role": f.role, "limit": f"{f.max_bytes} bytes" if f.max_bytes else "",
                             "readers": f.readers})
    return rows


# --------------------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------------------


def caption_tags(text: str) -> list[str]:
    """The `<Name>` tags of a caption, first-seen order, chat control tokens excluded."""
    out: list[str] = []
    for m in TAG_RE.finditer(text or ""):
        if CONTROL_TOKEN_RE.fullmatch(m.group(0)):
            continue
        name = m.group(1).strip()
        if name and name not in out:
            out.append(name)
    return out


def strip_tags(text: str) -> str:
    """`<Anya> and <Rex> at the beach` -> `Anya and Rex at the beach` (what other apps should show)."""
    return TAG_RE.sub(lambda m: m.group(0) if CONTROL_TOKEN_RE.fullmatch(m.group(0)) else m.group(1).strip(),
                      text or "")


def truncate_utf8(text: str, max_bytes: int) -> str:
    """Cut `text` to at most `max_bytes` of UTF-8 without splitting a character (IIM length limits)."""
    b = text.encode("utf-8")
    if len(b) <= max_bytes:
        return text
    return b[:max_bytes].decode("utf-8", errors="ignore")


# Line breaks other tools and pastes use (VT, FF, NEL, LS, PS) and CR/CRLF all become "\n": an XML parser
# turns CR into LF, so a CR kept in IPTC/EXIF would never match the XMP copy again.
_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
# Other C0/C1 controls, DEL, lone surrogates and XML non-characters: XMP cannot hold them (exiv2 writes a
# space, exiftool a "."), so they are dropped from every copy alike.
_UNWRITABLE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")


def clean_text(text: str) -> str:
    """The one normalisation of caption/title text written to metadata, the same for XMP, IPTC and EXIF
    (and what the next export compares with): line breaks -> "\n", tabs kept, other control characters
    dropped, outer whitespace stripped."""
    return _UNWRITABLE.sub("", _BREAKS.sub("\n", text)).strip()


def fold(s: str) -> str:
    return s.casefold().strip()


# --------------------------------------------------------------------------------------------------
# Canonical values
# --------------------------------------------------------------------------------------------------

def _num(v: Any) -> float:
    f = float(v)
    if not math.isfinite(f):  # "nan"/"inf" in another tool's region: no box (its name still counts)
        raise ValueError(f"not a finite number: {v!r}")
    return round(f, AREA_DIGITS)


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, dict):  # lang-alt as read by pyexiv2
        v = v.get('lang="x-default"', next(iter(v.values()), None) if v else None)
        if v is None:
            return None
    if isinstance(v, list):
        v = ", ".join(str(x) for x in v)
    s = str(v).rstrip("\x00")
    return s if s.strip() else None


def _list(v: Any) -> list[str] | None:
    if v is None:
        return None
    items = v if isinstance(v, list) else [v]
    out = [str(x) for x in items if str(x).strip()]
    return out or None


def _simple_extras(d: dict, known: set[str]) -> dict[str, str]:
    return {k: str(v) for k, v in d.items() if k not in known and isinstance(v, (str, int, float))}


def canon_regions(v: Any) -> dict | None:
    """Normalise an MWG RegionInfo struct (exiftool's -struct JSON shape) to the canonical form."""
    if not isinstance(v, dict):
        return None
    out: dict[str, Any] = {}
    dims = v.get("AppliedToDimensions")
    if isinstance(dims, dict) and dims.get("W") not in (None, "") and dims.get("H") not in (None, ""):
        try:
            out["AppliedToDimensions"] = {"W": int(float(dims["W"])), "H": int(float(dims["H"])),
                                          "Unit": str(dims.get("Unit", "pixel"))}
        except (TypeError, ValueError):
            pass
    regions = v.get("RegionList") or []
    if isinstance(regions, dict):
        regions = [regions]
    rl = []
    for r in regions:
        if not isinstance(r, dict):
            continue
        item: dict[str, Any] = {}
        if r.get("Name") not in (None, ""):
            item["Name"] = str(r["Name"])
        if r.get("Type") not in (None, ""):
            item["Type"] = str(r["Type"])
        a = r.get("Area")
        if isinstance(a, dict):
            try:
                item["Area"] = {"X": _num(a["X"]), "Y": _num(a["Y"]), "W": _num(a.get("W", 0)),
                                "H": _num(a.get("H", 0)), "Unit": str(a.get("Unit", "normalized"))}
            except (KeyError, TypeError, ValueError):
                pass
        item.update(_simple_extras(r, {"Name", "Type", "Area"}))
        rl.append(item)
    out["RegionList"] = rl
    if not rl and "AppliedToDimensions" not in out:
        return None
    return out


def canon_mp_regions(v: Any) -> dict | None:
    if not isinstance(v, dict):
        return None
    regions = v.get("Regions") or []
    if isinstance(regions, dict):
        regions = [regions]
    out = []
    for r in regions:
        if not isinstance(r, dict):
            continue
        item: dict[str, Any] = {}
        if r.get("PersonDisplayName") not in (None, ""):
            item["PersonDisplayName"] = str(r["PersonDisplayName"])
        rect = r.get("Rectangle")
        if isinstance(rect, str):
            rect = [p for p in rect.split(",")]
        if isinstance(rect, (list, tuple)) and len(rect) == 4:
            try:
                item["Rectangle"] = [_num(x) for x in rect]
            except (TypeError, ValueError):
                pass
        item.update(_simple_extras(r, {"PersonDisplayName", "Rectangle"}))
        out.append(item)
    return {"Regions": out} if out else None


def canonical(key: str, value: Any) -> Any:
    """Any backend's raw value for `key` -> the canonical value (None = absent/empty)."""
    f = BY_KEY[key]
    if f.kind in ("text", "langalt"):
        s = _text(value)
        if s is not None and key == "ExifIFD:UserComment":
            s = re.sub(r"^charset=(\"[^\"]*\"|\S+)\s?", "", s)  # pyexiv2's "charset=Unicode text"
            s = s if s.strip() else None
        if s is not None and key == "IPTC:CodedCharacterSet" and s in (IPTC_UTF8, "UTF8"):
            s = "UTF8"
        return s
    if f.kind == "list":
        return _list(value)
    if f.kind == "regions":
        return canon_regions(value)
    if f.kind == "mp_regions":
        return canon_mp_regions(value)
    raise AssertionError(f.kind)


def canonical_dict(raw: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in raw.items():
        if k in BY_KEY:
            c = canonical(k, v)
            if c is not None:
                out[k] = c
    return out


def mp_rect_text(rect: list[float]) -> str:
    return ", ".join(f"{v:.{AREA_DIGITS}f}" for v in rect)


def fmt_num(v: float) -> str:
    return f"{v:.{AREA_DIGITS}f}"


def summarize(key: str, value: Any) -> str:
    """One short line for a canonical value (text diffs)."""
    if value is None:
        return "(none)"
    f = BY_KEY.get(key)
    if f is not None and f.kind == "regions":
        names = [f"{r.get('Name', '?')}:{r.get('Type', '?')}" for r in value.get("RegionList", [])]
        d = value.get("AppliedToDimensions")
        dims = f"{d['W']}x{d['H']} " if d else ""
        return f"{dims}[{', '.join(names)}]"
    if f is not None and f.kind == "mp_regions":
        return "[" + ", ".join(r.get("PersonDisplayName", "?") for r in value.get("Regions", [])) + "]"
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    return repr(value)

"""Read back every rendering before it replaces a file: all that we did not mean to change must still
read the same, or the rendering is not written (the writer then tries the other backend, then a sidecar).

Why: a write can damage what other programs wrote and both libraries say "ok". Seen on real files:
pyexiv2 dropped the whole maker note of a Canon PowerShot S330 JPEG, and moved a FLIR camera's maker
note (which exiv2 cannot decode) so that its offsets pointed at the wrong bytes (temperatures gone).

Two readers, the one that matches the writer:
- pyexiv2 output is compared by pyexiv2 (`check_pyexiv2`): every EXIF/IPTC/XMP key exiv2 reads, minus
  the keys we write and the pointers that move when a block is rewritten. A maker note exiv2 decodes is
  compared tag by tag. One it cannot decode must keep its bytes, and must stay in place unless its IFD
  points at its values relative to itself or it has no IFD (`maker_note_offsets`): FLIR's offsets count
  from the TIFF header, and only exiftool knows how to relocate such a note. This needs no exiftool (it
  is optional for users) and costs one more in-memory parse (2-4 ms a photo).
- When exiftool is installed, it reads pyexiv2's output of a camera photo (one with a maker note), of a
  file with IIM, and of a TIFF too (`WriteOptions.second_reader`). exiv2 cannot see some damage there: it
  drops a Nikon maker note's preview IFD, a second IIM block, and adds "+00:00" to IIM times. This costs
  one exiftool call for both files (about 30 ms on the project machine).
- exiftool output is compared by exiftool (`check_exiftool`, `-j -a -G1 -n -struct`, both files in one
  call): exiftool decodes far more maker notes and relocates them itself, so the pyexiv2 position rule
  would be wrong for its output.
"""
from __future__ import annotations

import json
import re
import struct
from typing import Any, Iterable

from .containers import TIFF_TYPE_SIZES, ifd0_offset, ifd_entry, tiff_order, tiff_start
from .edit import BackendError
from .exiftool_edit import ExifTool
from .fields import BY_KEY
from .pyexiv2_edit import MP, MWG, _LENIENT, _pyexiv2, _read_exif, _under, guard_namespaces


class Damaged(BackendError):
    """A rendering would have changed what another program wrote; str(exc) says what."""


# exiv2 keys that move or are rebuilt whenever a block is rewritten (pointers, and TIFF's own XMP/IPTC
# containers, whose contents are compared key by key)
_LAYOUT_RE = re.compile(r"^Exif\.[\w]+\.(ExifTag|GPSTag|InteroperabilityTag|JPEGInterchangeFormat|StripOffsets|"
                        r"TileOffsets|SubIFDs|XMLPacket|IPTCNAA|ImageResources|\w*Offset)$")
_ADDED_OK = {"Iptc.Envelope.ModelVersion", "Iptc.Application2.RecordVersion", "Iptc.Envelope.CharacterSet"}
_STD_EXIF_GROUPS = re.compile(r"^(Image\d?|Photo|Iop|GPSInfo|MpfInfo|Thumbnail|MakerNote|SubImage\d+|SubThumb\d+)$")
MAKERNOTE = "Exif.Photo.MakerNote"


def owned_exiv2(changed: Iterable[str]) -> list[str]:
    """The exiv2 keys (with everything under them) that writing the canonical keys `changed` rewrites."""
    out = []
    for key in changed:
        f = BY_KEY[key]
        out.append(MWG if f.kind == "regions" else MP if f.kind == "mp_regions" else f.exiv2)
    return out


def pyexiv2_snapshot(data: bytes, fmt: str) -> dict[str, Any]:
    px = _pyexiv2()
    guard_namespaces(data)
    try:
        img = px.ImageData(data)
    except (RuntimeError, ValueError) as exc:
        raise Damaged(f"the rewritten file cannot be read back ({exc})") from None
    try:
        out: dict[str, Any] = {}
        if fmt != "XMP":
            out.update(_read_exif(img, data))  # also a UserComment with an emoji (exiv2's UCS-2 refuses it)
            out.update(img.read_iptc(encoding=_LENIENT))
        out.update(img.read_xmp(encoding=_LENIENT))
        return out
    except Exception as exc:
        raise Damaged(f"the rewritten file's metadata cannot be read back ({exc})") from None
    finally:
        try:
            img.close()
        except Exception:
            pass


# ---- where the maker note sits in the TIFF structure -------------------------------------------------

def maker_note_place(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(offset from the TIFF header, byte count) of the EXIF MakerNote, or None when there is none."""
    base = tiff_start(data, fmt)
    bo = tiff_order(data, base) if base is not None else None
    ifd0 = ifd0_offset(data, base, bo) if bo is not None else None
    if ifd0 is None:
        return None
    exif = ifd_entry(data, base, ifd0, 0x8769, bo)
    if exif is None:
        return None
    mn = ifd_entry(data, base, exif.value, 0x927C, bo)
    if mn is None or mn.count <= 4:
        return None
    return mn.value, mn.count


# ---- the comparisons ---------------------------------------------------------------------------------

def _short(v: Any) -> str:
    s = str(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _summary(what: str, keys: list[str]) -> str:
    return f"{what} {', '.join(keys[:3])}" + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def check_pyexiv2(before: dict[str, Any], before_data: bytes, after_data: bytes, fmt: str,
                  owned: Iterable[str]) -> None:
    """Raise Damaged unless `after_data` reads (by pyexiv2) like `before` outside the keys we own."""
    owned = list(owned)
    after = pyexiv2_snapshot(after_data, fmt)
    mine = lambda k: any(_under(k, b) for b in owned)  # noqa: E731
    problems: list[str] = []
    note_before = before.get(MAKERNOTE)
    if note_before and str(note_before).strip():
        note_after = after.get(MAKERNOTE)
        if not note_after or not str(note_after).strip():
            problems.append("the camera's maker note was dropped")
        elif not any(k.startswith("Exif.") and not _STD_EXIF_GROUPS.match(k.split(".")[1]) for k in before):
            # exiv2 cannot decode it, so it copies the bytes: they must stay where their offsets expect them
            if note_after != note_before:
                problems.append("the camera's maker note changed")
            elif (maker_note_place(before_data, fmt) != maker_note_place(after_data, fmt)
                  and maker_note_offsets(before_data, fmt) not in ("relative", "blob")):
                problems.append("the camera's maker note was moved (its internal offsets would point to the "
                                "wrong bytes)")
    skip = lambda k: k == MAKERNOTE or mine(k) or bool(_LAYOUT_RE.match(k))  # noqa: E731
    # an empty XMP list (<rdf:Bag/>) holds nothing, and exiftool drops it whenever it rewrites XMP
    lost = [k for k in before if not skip(k) and k not in after and before[k] not in ("", [], {})]
    changed = [k for k in before if not skip(k) and k in after and after[k] != before[k]]
    added = [k for k in after if not skip(k) and k not in before and k not in _ADDED_OK]
    if lost:
        problems.append(_summary(f"{len(lost)} tag(s) lost:", lost))
    if changed:
        k = changed[0]
        problems.append(_summary(f"{len(changed)} tag(s) changed:", changed) +
                        f" ({k}: {_short(before[k])!r} -> {_short(after[k])!r})")
    if added:
        problems.append(_summary(f"{len(added)} tag(s) added:", added))
    if problems:
        raise Damaged("; ".join(problems))


_ET_ARGS = ["-j", "-a", "-G1", "-n", "-struct", "-charset", "iptc=UTF8", "-charset", "exif=UTF8"]
_ET_SKIP_GROUPS = {"System", "File", "ExifTool", "Composite"}
_ET_LAYOUT = re.compile(r"(Offsets?|Start|IPTCDigest|XMPToolkit|ApplicationRecordVersion|WebP_Flags|MediaDataSize)$")


def _loose(v: Any) -> Any:
    """IIM text without a declared charset reads as "?" per non-UTF-8 byte here (-charset iptc=UTF8) and as
    the real characters once it is transcoded and declared: both count as the same text."""
    if isinstance(v, list):
        return [_loose(x) for x in v]
    return re.sub(r"[^\x00-\x7f]", "?", v) if isinstance(v, str) else v


def check_exiftool(et: ExifTool, before_path: str, after_path: str, owned: Iterable[str]) -> None:
    """Raise Damaged unless exiftool reads `after_path` like `before_path` outside our canonical keys."""
    rc, out, err = et.execute(*_ET_ARGS, files=[before_path, after_path])
    try:
        rows = json.loads(out, object_pairs_hook=_collect_warnings) if out.strip() else []
    except ValueError:
        rows = []
    if len(rows) != 2:
        raise Damaged(f"exiftool cannot read the rewritten file back ({(err or out).strip()[:200]})")
    # an unknown namespace's group is named after its prefix (XMP-tmp0, XMP-digiKam_1): the URI counts
    unknown = lambda row: {re.sub(r"^XMP-(tmp\d+|[\w-]+_\d+):", "XMP-?:", k): v for k, v in row.items()}  # noqa: E731
    before, after = unknown(rows[0]), unknown(rows[1])
    owned = set(owned)
    skip = lambda k: (k in owned or k.split(":")[0] in _ET_SKIP_GROUPS or ":" not in k  # noqa: E731
                      or bool(_ET_LAYOUT.search(k)))
    # an empty XMP list (<rdf:Bag/>) holds nothing, and exiftool drops it whenever it rewrites XMP
    lost = [k for k in before if not skip(k) and k not in after and before[k] not in ("", [], {})]
    changed = [k for k in before if not skip(k) and k in after and after[k] != before[k]
               and not (k.startswith("IPTC:") and _loose(after[k]) == _loose(before[k]))]
    problems = []
    if lost:
        problems.append(_summary(f"{len(lost)} tag(s) lost:", lost))
    if changed:
        k = changed[0]
        problems.append(_summary(f"{len(changed)} tag(s) changed:", changed) +
                        f" ({k}: {_short(before[k])!r} -> {_short(after[k])!r})")
    problems += new_structure_warnings(rows[0].get(_WARNINGS, []), rows[1].get(_WARNINGS, []))
    if problems:
        raise Damaged("; ".join(problems))


_WARNINGS = "ExifTool:Warning"


def _collect_warnings(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON row with every `ExifTool:Warning` kept (with -a exiftool prints one key per warning)."""
    row: dict[str, Any] = {}
    for k, v in pairs:
        if k == _WARNINGS:
            row.setdefault(k, []).append(v)
        else:
            row[k] = v
    return row


def new_structure_warnings(before: list[str], after: list[str]) -> list[str]:
    """exiftool's warnings are its diagnosis of the file's structure: one the rewrite adds means it broke
    something that no tag shows (exiv2 re-encoding a Nikon maker note left its NikonScanIFD pointing
    outside the block: "Bad NikonScanIFD directory"). A warning that goes away is no loss, and a maker
    note exiftool already called broken may be diagnosed differently after any rewrite."""
    maker_note_was_broken = any("maker note" in str(w).lower() for w in before)
    return [f"exiftool now warns: {w}" for w in after if w not in before
            and not (maker_note_was_broken and str(w).startswith("[minor] Invalid Canon"))]




def maker_note_offsets(data: bytes, fmt: str) -> str | None:
    """How an undecoded maker note points at its values: "relative" (to the maker note itself, so it may
    move: Apple, Olympus), "absolute" (from the TIFF header, so moving it breaks it: FLIR), "blob" (no IFD
    at all: text or binary records such as Kodak's, JVC's, Ricoh's, nothing to break), or None when its
    IFD fits both readings (cannot tell, so it must not move)."""
    base = tiff_start(data, fmt)
    place = maker_note_place(data, fmt)
    if base is None or place is None:
        return None
    off, count = place
    note = data[base + off:base + off + count]
    bo = {b"II": "<", b"MM": ">"}.get(data[base:base + 2])
    for start in range(0, min(32, len(note) - 2), 2):
        for order in (bo, "<" if bo == ">" else ">"):
            n = struct.unpack(order + "H", note[start:start + 2])[0]
            if not 1 <= n <= 500 or start + 2 + 12 * n > len(note):
                continue
            entries = [struct.unpack(order + "HHII", note[start + 2 + 12 * i:start + 14 + 12 * i]) for i in range(n)]
            if any(typ not in TIFF_TYPE_SIZES for _, typ, _, _ in entries):
                continue
            far = [(val, TIFF_TYPE_SIZES[typ] * cnt) for _, typ, cnt, val in entries if TIFF_TYPE_SIZES[typ] * cnt > 4]
            if not far:
                return "relative"  # every value sits in its entry: nothing to break
            rel = all(val + size <= count for val, size in far)
            ab = all(off <= val and val + size <= off + count for val, size in far)
            if rel != ab:
                return "relative" if rel else "absolute"
            return None
    return "blob"


__all__ = ["Damaged", "check_exiftool", "check_pyexiv2", "maker_note_offsets", "maker_note_place", "owned_exiv2",
           "pyexiv2_snapshot"]

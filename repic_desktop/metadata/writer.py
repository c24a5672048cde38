"""Write a caption, the people and pets in a photo, their regions and keywords into the photo's
metadata (or an .xmp sidecar), all keys of the field map at once and in sync.

`write_metadata(path, values, options)` is the whole job for one file and never raises for a problem
with that file: the result says written / unchanged / would-write (dry run) / refused / failed, with
the reason and the per-key diff (old -> new, canonical values).

Decisions (why, not what):
- Merge, don't clobber. Lists (keywords, PersonInImage, hierarchical tags) keep every item another
  tool wrote; we add ours and remove only items *we* wrote before that are no longer wanted
  (`previous_owned`, recorded by the export in the caption's provenance). Existing regions of other
  people (and unnamed faces, focus regions) are kept; regions of names we write are replaced. So a
  rewrite of a digiKam-tagged file keeps digiKam's other faces, and a second export is a no-op.
- Nothing is written when nothing changes (no new mtime, PhotoPrism does not re-index).
- Secondary caption copies (XPComment, UserComment, XMP-tiff:ImageDescription) are never added but
  are updated when present, so no stale copy can hide the new caption. In a sidecar, where EXIF
  cannot be changed, XMP-tiff:ImageDescription is written whenever the photo has an EXIF
  ImageDescription: exiftool-based readers (Immich) then see the sidecar's ImageDescription instead of
  the stale embedded one.
- Regions go into the stored frame (see geometry.py); AppliedToDimensions is the stored pixel size -
  except for a RAW, whose size we know only from its embedded preview: when its regions already name
  a frame of the same aspect (digiKam writes the RAW's full 6246x4170 where the preview is 1620x1080),
  that frame is kept. Boxes are normalised, so the same numbers are right in either.
- Sidecars (`photo.ext.xmp`, digiKam's and Immich's first choice; `photo.xmp` is read too) are used
  for RAW files, formats no installed backend can write (HEIC without exiftool, BMP, GIF), read-only
  files or folders (unless refused by option), and always when the user says "never modify
  originals". A sidecar starts from the photo's effective metadata (embedded < photo.xmp <
  photo.ext.xmp, per key), because readers let sidecar values win per field.
- IPTC-IIM: written to JPEG and TIFF with CodedCharacterSet UTF-8, values cut to the IIM limits on a
  UTF-8 boundary (2000 bytes caption, 64 bytes per keyword/title). PNG has no standard IPTC block,
  WebP/HEIC/sidecars none at all. In a JPEG, the datasets we do not write come back byte-identical
  (Latin-1 ones transcoded to UTF-8) and a valid Photoshop IPTCDigest stays valid (iim.py).
- Caption and title text goes through one normalisation (fields.clean_text) before it is compared or
  written, so XMP, IPTC and EXIF hold the same text and a second export is a no-op.
- Verify, then fall back (verify.py). Every rendering is read back before the atomic replace, by the
  library that wrote it: everything we did not mean to change (every EXIF/GPS/IPTC/XMP key outside the
  field map's keys we write, the maker note) must read the same. pyexiv2 dropped a Canon compact's maker
  note, moved a FLIR maker note so that its offsets broke, and dropped a Nikon preview IFD, and said ok.
  exiftool, when installed, reads pyexiv2's output of camera, IIM and TIFF files too (second_reader).
  A pyexiv2 rendering that fails or damages is retried with exiftool (when installed and the backend is
  "auto"); when no rendering is safe, the values go to a sidecar and the photo is left byte-identical.
  The result's notes say which backend wrote and why; a fallback's reason names the tags that would
  have changed.
"""
from __future__ import annotations

import atexit
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

from ..core.images import UnusableImage, inspect_image
from . import geometry, iim
from .backends import EMPTY_PACKET, Backends, no_backend_reason
from .containers import XMP_APP1, jpeg_payloads
from .edit import BackendError
from .fields import (
    BY_KEY, CONTAINERS, GROUPS, HIERARCHY_ROOTS, IPTC_KEYWORD_MAX_BYTES, LIST_KEYS, PRIMARY, SECONDARY,
    clean_text, fields_for, fold, truncate_utf8,
)
from .pyexiv2_edit import XMLNS_RE
from .safety import (
    CheckedFile, Refused, atomic_replace, check_file, describe_os_error, file_sha256, folder_read_only,
    identity_problem,
)
from .verify import Damaged, check_exiftool, check_pyexiv2, owned_exiv2

SIDECAR_MODES = ("auto", "always")
IPTC_MODES = ("always", "if-present", "never")
KINDS_NAMED = ("person", "pet")


@dataclass(frozen=True)
class Person:
    name: str
    kind: str = "person"     # person | pet | other


@dataclass(frozen=True)
class RegionBox:
    name: str
    kind: str                # person | pet (other kinds get no region)
    box: tuple[float, float, float, float]  # normalised x, y (top-left), w, h in the DISPLAYED frame


@dataclass
class MetadataValues:
    """What to write. None means "leave this field alone"; an empty caption "" removes it."""
    caption: str | None = None
    title: str | None = None
    people: list[Person] = field(default_factory=list)
    regions: list[RegionBox] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    display_size: tuple[int, int] | None = None  # size the boxes were drawn on; must match the file


@dataclass
class WriteOptions:
    groups: tuple[str, ...] = GROUPS
    sidecar: str = "auto"              # auto | always ("never modify originals")
    readonly_to_sidecar: bool = True   # a read-only file/folder gets a sidecar (else: refused)
    pet_regions: bool = True           # MWG Pet regions (Immich shows every named region as a person)
    mp_regions: bool = True            # Microsoft MP regions (people only)
    iptc: str = "always"               # always | if-present (MWG rule) | never
    keep_mtime: bool = False
    backend: str = "auto"              # auto | pyexiv2 | exiftool
    follow_symlinks: bool = False
    second_reader: bool = True         # exiftool also reads pyexiv2's output of camera/IIM/TIFF files (verify.py)

    def __post_init__(self):
        bad = set(self.groups) - set(GROUPS)
        if bad:
            raise ValueError(f"unknown field group(s) {', '.join(sorted(bad))} (choose from {', '.join(GROUPS)})")
        if self.sidecar not in SIDECAR_MODES:
            raise ValueError(f"sidecar must be one of {SIDECAR_MODES}")
        if self.iptc not in IPTC_MODES:
            raise ValueError(f"iptc must be one of {IPTC_MODES}")

    @classmethod
    def from_settings(cls, extra: dict | None, **overrides) -> "WriteOptions":
        """Defaults stored by the GUI under settings.extra["metadata"] (unknown keys ignored)."""
        known = set(cls.__dataclass_fields__)
        raw = {k: v for k, v in ((extra or {}).get("metadata") or {}).items() if k in known}
        if "groups" in raw:
            raw["groups"] = tuple(raw["groups"])
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**raw)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["groups"] = list(self.groups)
        return d


@dataclass
class WriteResult:
    path: str
    status: str = "failed"             # written | unchanged | would-write | refused | failed
    reason: str | None = None
    target: str | None = None          # file | sidecar
    written_path: str | None = None    # the file that was (or would be) written
    backend: str | None = None
    format: str | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)  # [{key, old, new}]
    notes: list[str] = field(default_factory=list)
    owned: dict[str, list[str]] = field(default_factory=dict)   # what we wrote, for the next merge
    size: int | None = None            # the written file's new size/mtime/sha256 (target == "file")
    mtime_ns: int | None = None
    sha256: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("written", "unchanged", "would-write")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# Sidecars
# --------------------------------------------------------------------------------------------------

def sidecar_path(path: str) -> str:
    """Where we write a photo's sidecar: `photo.ext.xmp` (an existing `photo.ext.XMP` is reused)."""
    upper = path + ".XMP"
    return upper if not os.path.exists(path + ".xmp") and os.path.exists(upper) else path + ".xmp"


def sidecar_candidates(path: str) -> list[str]:
    """Existing sidecars, most specific first: photo.ext.xmp (digiKam, darktable), photo.xmp (Adobe)."""
    stem = os.path.splitext(path)[0]
    out: list[str] = []
    for p in (path + ".xmp", path + ".XMP", stem + ".xmp", stem + ".XMP"):
        if os.path.isfile(p) and not any(os.path.samefile(p, q) for q in out):
            out.append(p)
    return out


def read_embedded(cf: CheckedFile, backends: Backends) -> dict[str, Any]:
    """Canonical values embedded in the photo (HEIC: exiftool first; pyexiv2 finds no XMP there)."""
    order = ["exiftool", "pyexiv2"] if cf.format == "HEIF" else ["pyexiv2", "exiftool"]
    if backends.preference != "auto":
        order = [backends.preference]
    last = None
    for name in order:
        if name not in backends.available:
            continue
        try:
            return backends.get(name).read(cf.path, cf.data, cf.format)
        except BackendError as exc:
            last = exc
    if last is not None:
        raise last
    return {}


def read_sidecar(path: str, backends: Backends) -> dict[str, Any]:
    be = backends.for_format("XMP")
    if be is None:
        return {}
    with open(path, "rb") as f:
        data = f.read()
    return be.read(path, data, "XMP")


def effective_values(layers: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Later layers win per key (embedded < photo.xmp < photo.ext.xmp), as readers merge them."""
    out: dict[str, Any] = {}
    for layer in layers:
        out.update(layer)
    return out


# --------------------------------------------------------------------------------------------------
# Planning: old canonical values + what to write -> the changes
# --------------------------------------------------------------------------------------------------

def _merge_list(old: list[str] | None, ours: list[str], remove: set[str]) -> list[str] | None:
    kept = [x for x in (old or []) if x not in remove]
    seen = {fold(x) for x in kept}
    for x in ours:
        if fold(x) not in seen:
            kept.append(x)
            seen.add(fold(x))
    return kept or None


def _named(values: MetadataValues) -> list[Person]:
    seen, out = set(), []
    for p in values.people:
        if p.kind in KINDS_NAMED and fold(p.name) not in seen:
            seen.add(fold(p.name))
            out.append(p)
    return out


def contributions(values: MetadataValues, groups: Iterable[str]) -> dict[str, list[str]]:
    """Our items for every list key, from the selected groups."""
    gs = set(groups)
    names = [p.name for p in _named(values)] if "people" in gs else []
    kws = [k for k in dict.fromkeys(k.strip() for k in values.keywords) if k] if "keywords" in gs else []
    hier = [f"{HIERARCHY_ROOTS[p.kind]}|{p.name}" for p in _named(values)] if "people" in gs else []
    tags = [f"{HIERARCHY_ROOTS[p.kind]}/{p.name}" for p in _named(values)] if "people" in gs else []
    subject = names + [k for k in kws if fold(k) not in {fold(n) for n in names}]
    return {
        "XMP-iptcExt:PersonInImage": names,
        "XMP-dc:Subject": subject,
        "IPTC:Keywords": list(dict.fromkeys(truncate_utf8(s, IPTC_KEYWORD_MAX_BYTES) for s in subject)),
        "XMP-lr:HierarchicalSubject": hier,
        "XMP-digiKam:TagsList": tags,
    }


def region_items(values: MetadataValues, options: WriteOptions, orientation: int) -> tuple[list[dict], list[dict]]:
    """Our MWG and MP region items (stored frame, canonical)."""
    mwg, mp = [], []
    for r in values.regions:
        if r.kind not in KINDS_NAMED or (r.kind == "pet" and not options.pet_regions):
            continue
        x, y, w, h = geometry.clamp01(geometry.display_to_stored(r.box, orientation))
        if w <= 0 or h <= 0:
            continue
        cx, cy, _, _ = geometry.to_center((x, y, w, h))
        rnd = lambda v: round(v, 6)  # noqa: E731
        mwg.append({"Name": r.name, "Type": "Face" if r.kind == "person" else "Pet",
                    "Area": {"X": rnd(cx), "Y": rnd(cy), "W": rnd(w), "H": rnd(h), "Unit": "normalized"}})
        if r.kind == "person" and options.mp_regions:
            mp.append({"PersonDisplayName": r.name, "Rectangle": [rnd(x), rnd(y), rnd(w), rnd(h)]})
    return mwg, mp


@dataclass
class Plan:
    changes: dict[str, Any]
    new: dict[str, Any]
    owned: dict[str, list[str]]
    notes: list[str]


def plan_changes(old: dict[str, Any], values: MetadataValues, options: WriteOptions, *, containers: Iterable[str],
                 stored_dims: tuple[int, int] | None, orientation: int = 1, has_iptc: bool = True,
                 previous_owned: dict[str, list[str]] | None = None, embedded_caption: bool = False,
                 dims_exact: bool = True) -> Plan:
    """What to change so the file says `values` (canonical old -> canonical new, per key).
    `dims_exact` False: `stored_dims` is only a preview's size (RAW), so an existing region frame of
    the same aspect is kept."""
    containers = set(containers)
    if "iptc" in containers and (options.iptc == "never" or (options.iptc == "if-present" and not has_iptc)):
        containers.discard("iptc")
    groups = set(options.groups)
    prev = previous_owned or {}
    notes: list[str] = []
    new: dict[str, Any] = {}
    owned: dict[str, list[str]] = {k: list(v) for k, v in prev.items()}
    selected = [f for f in fields_for(groups) if f.container in containers]

    cap = values.caption
    ours_sel = contributions(values, groups)
    ours_all = contributions(values, GROUPS)
    for f in selected:
        if "caption" in f.groups and cap is not None:
            primary = f.role == PRIMARY or (f.key == "XMP-tiff:ImageDescription" and embedded_caption)
            if primary or (f.role == SECONDARY and f.key in old):
                text = clean_text(cap) or None
                new[f.key] = truncate_utf8(text, f.max_bytes) if text and f.max_bytes else text
        elif "title" in f.groups and values.title is not None:
            text = clean_text(values.title) or None
            new[f.key] = truncate_utf8(text, f.max_bytes) if text and f.max_bytes else text
        elif f.key in LIST_KEYS:
            remove = set(prev.get(f.key, [])) - set(ours_all[f.key])
            merged = _merge_list(old.get(f.key), ours_sel[f.key], remove)
            new[f.key] = merged
            mine = set(ours_sel[f.key]) | set(prev.get(f.key, []))
            owned[f.key] = [x for x in (merged or []) if x in mine]
        elif f.key in ("XMP-mwg-rs:RegionInfo", "XMP-MP:RegionInfoMP"):
            pass  # below
    if "regions" in groups and "xmp" in containers:
        if stored_dims is None:
            if values.regions:
                notes.append("regions not written: the image size of a RAW file is not known")
        else:
            mwg, mp = region_items(values, options, orientation)
            for key, items, name_key, list_key in (("XMP-mwg-rs:RegionInfo", mwg, "Name", "RegionList"),
                                                    ("XMP-MP:RegionInfoMP", mp, "PersonDisplayName", "Regions")):
                if key == "XMP-MP:RegionInfoMP" and not options.mp_regions and not prev.get(key):
                    continue
                replace = {fold(r[name_key]) for r in items} | {fold(n) for n in prev.get(key, [])}
                old_items = (old.get(key) or {}).get(list_key, [])
                kept = [r for r in old_items if not r.get(name_key) or fold(r[name_key]) not in replace]
                merged = kept + items
                if merged:
                    val: dict[str, Any] = {list_key: merged}
                    if key == "XMP-mwg-rs:RegionInfo":
                        dims = {"W": stored_dims[0], "H": stored_dims[1], "Unit": "pixel"}
                        given = (old.get(key) or {}).get("AppliedToDimensions")
                        if not dims_exact and _same_frame(given, stored_dims):
                            dims = given
                        val = {"AppliedToDimensions": dims, **val}
                    new[key] = val
                else:
                    new[key] = None
                owned[key] = [r[name_key] for r in items]
    # keep IIM declared as UTF-8 whenever we write IIM text
    if "iptc" in containers and any(BY_KEY[k].container == "iptc" and v is not None for k, v in new.items()):
        new["IPTC:CodedCharacterSet"] = "UTF8"
    changes = {k: v for k, v in new.items() if v != old.get(k)}
    owned = {k: v for k, v in owned.items() if v}
    return Plan(changes, new, owned, notes)


def _same_frame(given: Any, stored_dims: tuple[int, int]) -> bool:
    """Whether an existing AppliedToDimensions is the same picture frame at another resolution (aspect
    within 2%: camera previews trim a few sensor pixels)."""
    try:
        w, h = int(given["W"]), int(given["H"])
    except (TypeError, KeyError, ValueError):
        return False
    if w <= 0 or h <= 0 or given.get("Unit", "pixel") != "pixel":
        return False
    return abs((w / h) / (stored_dims[0] / stored_dims[1]) - 1) <= 0.02


def diff(old: dict[str, Any], changes: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "old": old.get(k), "new": v} for k, v in changes.items()]


# --------------------------------------------------------------------------------------------------
# Writing one file
# --------------------------------------------------------------------------------------------------

_DEFAULT_BACKENDS: dict[str, Backends] = {}


def default_backends(preference: str = "auto") -> Backends:
    """A process-wide session per preference (keeps one exiftool process for many writes)."""
    b = _DEFAULT_BACKENDS.get(preference)
    if b is None:
        b = _DEFAULT_BACKENDS[preference] = Backends(preference)
    return b


@atexit.register
def _close_default_backends() -> None:  # pragma: no cover - process exit
    for b in _DEFAULT_BACKENDS.values():
        b.close()


def _choose_target(cf: CheckedFile, options: WriteOptions, backends: Backends, forced: str | None = None):
    """("file", None, backend) or ("sidecar", why, backend); `forced`: why the photo itself may not be written."""
    folder_ro = folder_read_only(os.path.dirname(os.path.abspath(cf.path)))
    why = None
    be = None
    if forced:
        why = forced
    elif cf.format == "RAW":
        why = "RAW file (originals are never rewritten)"
    elif options.sidecar == "always":
        why = "never modify originals"
    elif cf.format in ("BMP", "GIF"):
        why = f"{cf.format} files cannot hold this metadata"
    else:
        be = backends.for_format(cf.format)
        if be is None:
            if cf.format == "HEIF":
                why = "HEIC needs exiftool to be written (pyexiv2 cannot write HEIC)"
            else:
                raise Refused(f"no installed metadata backend can write {cf.format}")
        elif cf.read_only or folder_ro:
            if not options.readonly_to_sidecar:
                raise Refused(f"{cf.read_only or folder_ro}: not written (sidecars for read-only files are off)")
            why = cf.read_only or folder_ro
    if why is None:
        return "file", None, be
    if folder_ro:
        raise Refused(f"needs a sidecar ({why}) but {folder_ro}")
    sbe = backends.for_format("XMP")
    if sbe is None:
        raise Refused(f"needs a sidecar ({why}) but no backend can write .xmp files")
    return "sidecar", why, sbe


def _verify_image(cf: CheckedFile) -> Callable[[bytes], None]:
    def verify(new: bytes) -> None:
        try:
            info = inspect_image(cf.path, data=new)
        except UnusableImage as exc:
            raise BackendError(f"the rewritten file failed our checks ({exc.reason}); "
                               f"the original is unchanged") from None
        if info.format != cf.format or (info.width, info.height) != (cf.width, cf.height):
            raise BackendError("the rewritten file differs in format or size; the original is unchanged")
    return verify


class _NoSafeRendering(Exception):
    """No backend could render the photo without damaging what other programs wrote; str(exc) says why."""

    def __init__(self, reason: str, damaged: bool):
        super().__init__(reason)
        self.damaged = damaged  # a backend wrote but changed what it should not have (else: only errors)


def _metadata_check(edit, name: str, backends: Backends, fmt: str, before_data: bytes | None,
                    before_path: str | None, to_write: dict[str, Any], tmp: dict[str, str],
                    second_reader: bool = True) -> Callable[[bytes], None]:
    """Each backend's output is read back by the same library (see verify.py). pyexiv2's output is read by
    exiftool too when it is installed and the photo has what exiv2 reads only in part (a maker note, whose
    preview IFDs exiv2 drops; IIM, where exiv2 sees one block of several; TIFF)."""
    def check(new: bytes) -> None:
        if name == "pyexiv2":
            before = edit.snapshot()
            check_pyexiv2(before, before_data or b"", new, fmt, owned_exiv2(to_write))
            risky = fmt == "TIFF" or "Exif.Photo.MakerNote" in before or any(k.startswith("Iptc.") for k in before)
            if second_reader and risky and fmt != "XMP" and "exiftool" in backends.available and before_path:
                check_exiftool(backends.get("exiftool").et, before_path, tmp["path"], to_write)
        elif before_path is not None and os.path.exists(before_path):
            check_exiftool(backends.get("exiftool").et, before_path, tmp["path"], to_write)
    return check


def _replace_checked(out_path: str, edit, be, backends: Backends, to_write: dict[str, Any], *, fmt: str,
                     before_data: bytes | None, before_path: str | None, verify: Callable[[bytes], None],
                     keep_mtime: bool, like, expect, notes: list[str], second_reader: bool = True,
                     expect_sha256: str | None = None, expect_absent: bool = False, keep_iim: bytes | None = None):
    """Render with `be`, read it back, and replace `out_path` only if nothing else changed. A rendering
    that fails (error or damage) is retried with exiftool (when installed and the backend is "auto");
    if none is safe, _NoSafeRendering says why for every backend tried. Returns (Replaced, backend name)."""
    attempts = [(be, edit)]
    if be.name == "pyexiv2" and backends.preference == "auto" and "exiftool" in backends.available:
        alt = backends.get("exiftool")
        if alt.can_write(fmt):
            attempts.append((alt, None))
    reasons: list[str] = []
    damaged = False
    for backend, ed in attempts:
        opened = ed is None
        try:
            if opened:
                ed = backend.open(before_path if fmt != "XMP" else out_path, before_data, fmt,
                                  **({"read_path": before_path} if fmt == "XMP" else {}))
            tmp: dict[str, str] = {}
            check = _metadata_check(ed, backend.name, backends, fmt, before_data, before_path, to_write, tmp,
                                    second_reader)

            def render(path: str, ed=ed) -> bytes | None:
                tmp["path"] = path
                return ed.render(to_write, path)

            # other tools' IIM datasets back byte for byte (iim.py), before the check reads the result
            produce = _keep_their_iim(render, keep_iim, to_write) if keep_iim is not None else render

            def verify_all(new: bytes, check=check) -> None:
                verify(new)
                check(new)

            rep = atomic_replace(out_path, produce, keep_mtime=keep_mtime, like=like, verify=verify_all,
                                 expect=expect, expect_sha256=expect_sha256, expect_absent=expect_absent)
        except BackendError as exc:
            reasons.append(f"{backend.name}: {exc}" if len(attempts) > 1 else str(exc))
            damaged = damaged or isinstance(exc, Damaged)
            continue
        finally:
            if opened and ed is not None:
                ed.close()
        if reasons:
            notes.append(f"written with {backend.name}: {'; '.join(reasons)}")
        return rep, backend.name
    raise _NoSafeRendering("; ".join(reasons), damaged)


def _verify_sidecar(new: bytes) -> None:
    if b"x:xmpmeta" not in new[:4096] and b"<rdf:RDF" not in new[:4096]:
        raise BackendError("the new sidecar is not an XMP packet; nothing was written")


# exiv2 leaves these out of every EXIF block it writes outside TIFF (its "filteredIfd0Tags": image-data
# tags it thinks only TIFF may carry), although Photoshop and others put them in JPEG's IFD0.
_EXIV2_DROPS_OUTSIDE_TIFF = {"Exif.Image.PhotometricInterpretation": "IFD0 PhotometricInterpretation"}
# exiv2 re-serialises XMP from its own data model, which has no rdf:about: a non-empty one is lost.
_ABOUT_TEXT = re.compile(r"""(?<![\w:.-])(?:rdf:)?about\s*=\s*(["'])(?!\1)""")  # a non-empty (rdf:)about


def _xmp_has_about(data: bytes) -> bool:
    """Whether an XMP packet in `data` (UTF-8 or UTF-16, as Photoshop and old exiftool wrote it) carries a
    non-empty rdf:about, also the unprefixed `about=` of older RDF, which exiftool reads as rdf:About."""
    for enc in ("utf-8", "utf-16-be", "utf-16-le"):
        start = data.find("<rdf:RDF".encode(enc))
        if start < 0:
            continue
        end = data.find("</rdf:RDF>".encode(enc), start)
        chunk = data[start:end if end > 0 else start + (1 << 20)]  # the needle starts on a character
        if _ABOUT_TEXT.search(chunk.decode(enc, "ignore")):
            return True
    return False


def _pyexiv2_losses(cf: CheckedFile, edit: Any) -> list[str]:
    """What a pyexiv2 rewrite of this file would silently drop."""
    lost = []
    if cf.format != "TIFF":
        exif = getattr(edit, "exif", None) or {}
        lost += [name for key, name in _EXIV2_DROPS_OUTSIDE_TIFF.items() if key in exif]
    if cf.data and _xmp_has_about(cf.data):
        lost.append("the XMP rdf:about")
    if cf.data:
        # exiftool writes MicrosoftPhoto as http://ns.microsoft.com/photo/1.0 (no slash); exiv2's XMP toolkit
        # serialises every namespace URI with a trailing "/", which is another namespace to every XMP reader.
        bare = sorted({u.decode("utf-8", "replace") for _prefix, u in XMLNS_RE.findall(cf.data)
                       if u and not u.endswith((b"/", b"#"))})
        if bare:
            lost.append(f"the namespace URI {bare[0]} (exiv2 adds a trailing slash: another namespace to readers)")
    return lost


_ABOUT_VALUE = re.compile(rb'rdf:about=(["\'])([^"\']+)\1')
_ABOUT_EMPTY = re.compile(rb'rdf:about=(["\'])\1')


def _jpeg_xmp_segment(data: bytes) -> tuple[int, int] | None:
    """(start, end) of the standard XMP APP1 segment's packet in a JPEG, or None."""
    found = jpeg_payloads(data, 0xE1, XMP_APP1)
    return found[0] if found else None


def _jpeg_keep_about(old: bytes, new: bytes) -> bytes:
    """Without exiftool: put the rdf:about that exiv2 emptied back into the rewritten JPEG's XMP."""
    o, w = _jpeg_xmp_segment(old), _jpeg_xmp_segment(new)
    m = _ABOUT_VALUE.search(old, *o) if o else None
    if not m or not w:
        return new
    packet = _ABOUT_EMPTY.sub(lambda _: b'rdf:about="' + m.group(2) + b'"', new[w[0]:w[1]])
    length = 2 + len(XMP_APP1) + len(packet)  # the length field counts itself
    if length > 0xFFFF:
        return new
    at = w[0] - len(XMP_APP1) - 2  # the segment's length field
    return new[:at] + length.to_bytes(2, "big") + new[at + 2:w[0]] + packet + new[w[1]:]


def _utf8_about(data: bytes) -> bool:
    seg = _jpeg_xmp_segment(data)
    return bool(seg and _ABOUT_VALUE.search(data, *seg))


def _exiftool_instead(backends: Backends, fmt: str):
    if backends.preference != "auto" or "exiftool" not in backends.available:
        return None
    et = backends.get("exiftool")
    return et if et.can_write(fmt) else None


class _AboutKeeping:
    """A pyexiv2 edit of a JPEG whose rendered bytes get the original rdf:about back."""

    def __init__(self, edit: Any, old: bytes):
        self._edit, self._old = edit, old

    def __getattr__(self, name: str) -> Any:
        return getattr(self._edit, name)

    def render(self, changes: dict[str, Any], tmp: str) -> bytes:
        return _jpeg_keep_about(self._old, self._edit.render(changes, tmp))

    def __enter__(self) -> "_AboutKeeping":
        return self

    def __exit__(self, *exc) -> None:
        self._edit.close()


def _keep_their_iim(render: Callable[[str], bytes | None], original: bytes,
                    to_write: dict[str, Any]) -> Callable[[str], bytes | None]:
    """The backend's output with other tools' IIM datasets byte-identical (transcoded when the block
    becomes UTF-8) and Photoshop's IPTCDigest kept true (see iim.py)."""
    changed = {iim.DATASETS[k] for k in to_write if k in iim.DATASETS}
    if not changed:
        return render

    def produce(tmp: str) -> bytes | None:
        out = render(tmp)
        if out is None:  # exiftool edited the temp file itself
            with open(tmp, "rb") as f:
                out = f.read()
            os.unlink(tmp)
        return iim.reconcile(original, out, changed)
    return produce


def write_metadata(path: str | os.PathLike, values: MetadataValues, options: WriteOptions | None = None, *,
                   previous_owned: dict[str, list[str]] | None = None, backends: Backends | None = None,
                   dry_run: bool = False, roots: set[str] | Callable[[], set[str]] | None = None,
                   identity: tuple[int, int, str] | None = None,
                   _sidecar_because: str | None = None) -> WriteResult:
    """Write `values` into the photo at `path` (or its sidecar). See the module docstring.

    `identity` (size, mtime_ns, content_hash as the library stored them): the file must still be that
    photo, else the write is refused (safety.identity_problem) - unless it already says exactly what we
    would write (our own earlier write whose record was lost to a kill), which is reported unchanged."""
    options = options or WriteOptions()
    backends = backends or default_backends(options.backend)
    path = os.fspath(path)
    res = WriteResult(path=path)
    try:
        if not backends.available:
            raise Refused(no_backend_reason())
        cf = check_file(path, follow_symlinks=options.follow_symlinks, roots=roots)
        res.format, res.notes = cf.format, list(cf.notes)
        read_sha = file_sha256(cf.data, cf.path) if cf.data is not None else None
        not_ours = identity_problem(cf, *identity, digest=read_sha) if identity is not None else None
        target, why, be = _choose_target(cf, options, backends, _sidecar_because)
        res.target, res.backend = target, be.name
        if why:
            res.notes.append(f"sidecar: {why}")
        if cf.width and cf.height:
            if values.regions and values.display_size and tuple(values.display_size) != (cf.width, cf.height):
                raise Refused(f"the photo is {cf.width}x{cf.height} on disk but its regions were drawn on "
                              f"{values.display_size[0]}x{values.display_size[1]}: rescan the folder first")
            stored = geometry.stored_size(cf.width, cf.height, cf.orientation)
        else:
            stored = None
        if target == "file":
            out_path, like, keep_mtime = cf.path, None, options.keep_mtime
            edit = be.open(cf.path, cf.data, cf.format)
            lost = _pyexiv2_losses(cf, edit) if be.name == "pyexiv2" else []
            if lost:
                alt = _exiftool_instead(backends, cf.format)
                if alt is not None:
                    edit.close()
                    be, res.backend = alt, alt.name
                    edit = be.open(cf.path, cf.data, cf.format)
                    res.notes.append(f"written with exiftool: pyexiv2 would drop {' and '.join(lost)}")
                elif cf.format == "JPEG" and "the XMP rdf:about" in lost and _utf8_about(cf.data):
                    lost.remove("the XMP rdf:about")
                    edit = _AboutKeeping(edit, cf.data)
                renamed = [x for x in lost if x.startswith("the namespace URI")]
                if renamed and alt is None and _sidecar_because is None:
                    # other programs' properties would move to another namespace: not in the photo
                    edit.close()
                    fallback = write_metadata(path, values, options, previous_owned=previous_owned,
                                              backends=backends, dry_run=dry_run, roots=roots, identity=identity,
                                              _sidecar_because=f"pyexiv2 would change {renamed[0]} and exiftool "
                                                               "is not installed")
                    fallback.notes = res.notes + [n for n in fallback.notes if n not in res.notes]
                    return fallback
                if lost and alt is None:
                    res.notes.append(f"pyexiv2 drops {' and '.join(lost)} (exiftool would keep it)")
            base, containers, embedded_caption = edit.old, CONTAINERS[cf.format], False
            own_old = base
            verify = _verify_image(cf)
            before_data, before_path = cf.data, cf.path
        else:
            out_path = sidecar_path(cf.path)
            existing = out_path if os.path.isfile(out_path) else None
            side_st = os.stat(existing) if existing else None
            if existing and not (os.access(existing, os.W_OK) and side_st.st_mode & 0o222):
                raise Refused(f"the sidecar {existing} is read-only: not written (make it writable to update it)")
            try:
                embedded = read_embedded(cf, backends)
            except BackendError as exc:
                embedded = {}
                res.notes.append(f"embedded metadata not readable ({exc})")
            others = [p for p in sidecar_candidates(cf.path) if not (existing and os.path.samefile(p, existing))]
            layers = [embedded]
            for p in reversed(others):  # least specific first: later layers win
                try:
                    layers.append(read_sidecar(p, backends))
                except (BackendError, OSError) as exc:
                    res.notes.append(f"sidecar {p} not readable ({exc})")
            # A new photo.ext.xmp starts as a copy of an Adobe-style photo.xmp: Immich reads only the
            # first sidecar it finds (photo.ext.xmp first), so nothing of photo.xmp may get lost.
            seed = existing or (others[0] if others and not existing else None)
            if seed:
                with open(seed, "rb") as f:
                    data = f.read()
                side_sha = file_sha256(data, seed) if existing else None
                if not existing:
                    res.notes.append(f"new sidecar starts from {os.path.basename(seed)}")
            else:
                data = EMPTY_PACKET
            edit = be.open(out_path, data, "XMP", read_path=seed)
            own_old = edit.old
            base = effective_values([*layers, edit.old])
            containers, like, keep_mtime = CONTAINERS["XMP"], cf.st, False
            embedded_caption = "IFD0:ImageDescription" in embedded
            verify = _verify_sidecar
            before_data, before_path = data, seed
        with edit:
            plan = plan_changes(base, values, options, containers=containers, stored_dims=stored,
                                orientation=cf.orientation, has_iptc=getattr(edit, "has_iptc", True),
                                previous_owned=previous_owned, embedded_caption=embedded_caption,
                                dims_exact=cf.format != "RAW")
            res.notes += plan.notes
            res.owned = plan.owned
            res.written_path = out_path
            res.changes = diff(base, plan.changes)
            # a sidecar holds every value we manage, even those the photo already says (self-contained)
            if target == "sidecar":
                to_write = {k: v for k, v in plan.new.items() if v != own_old.get(k)}
            else:
                to_write = plan.changes
            if not to_write:
                res.status = "unchanged"
                if not_ours:
                    res.notes.append("the file differs from the one imported but already says all this")
                return res
            if not_ours:
                raise Refused(not_ours)
            if dry_run:
                res.status = "would-write"
                return res
            if target == "file":
                before, before_sha = cf.st, read_sha
            else:
                before, before_sha = (side_st, side_sha) if existing else (None, None)
            keep_iim = cf.data if target == "file" and cf.format == "JPEG" and cf.data is not None else None
            try:
                rep, res.backend = _replace_checked(
                    out_path, edit, be, backends, to_write, fmt=cf.format if target == "file" else "XMP",
                    before_data=before_data, before_path=before_path, verify=verify, keep_mtime=keep_mtime,
                    like=like, expect=before, expect_sha256=before_sha,
                    expect_absent=target == "sidecar" and not existing, keep_iim=keep_iim, notes=res.notes,
                    second_reader=options.second_reader)
            except _NoSafeRendering as exc:
                if target == "sidecar" or not exc.damaged:
                    raise BackendError(str(exc)) from None
                fallback = write_metadata(path, values, options, previous_owned=previous_owned, backends=backends,
                                          roots=roots, identity=identity,
                                          _sidecar_because=f"writing the photo would have changed "
                                                           f"what other programs wrote ({exc})")
                fallback.notes = res.notes + [n for n in fallback.notes if n not in res.notes]
                return fallback
        res.status = "written"
        if target == "file":
            res.size, res.mtime_ns, res.sha256 = rep.size, rep.mtime_ns, rep.sha256
        return res
    except Refused as exc:
        res.status, res.reason = "refused", exc.reason
    except BackendError as exc:
        res.status, res.reason = "failed", str(exc)
    except OSError as exc:
        res.status, res.reason = "failed", describe_os_error(exc)
    return res


__all__ = ["MetadataValues", "Person", "RegionBox", "WriteOptions", "WriteResult", "write_metadata",
           "plan_changes", "sidecar_path", "sidecar_candidates", "read_embedded", "read_sidecar",
           "effective_values", "default_backends", "GROUPS"]

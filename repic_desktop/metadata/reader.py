"""Read what other tools wrote - captions, PersonInImage, MWG/MP face regions, keywords and hierarchical
tags from digiKam, Lightroom, Photini, Immich, Picasa - and bring it into the library.

- `read_file_metadata(path)`: the photo's effective metadata (embedded < photo.xmp < photo.ext.xmp,
  per key, as readers merge it), interpreted: caption (by priority, camera boiler-plate ignored),
  title, people and pets (from regions, PersonInImage and People|/Pets| hierarchies), regions as
  boxes in the library's frame (displayed, EXIF orientation applied), flat keywords, and the
  application that wrote it when it says so.
- `read_metadata_into_library(library, photo_ids)`: the `repic import --read-metadata` /
  `repic metadata read` step. Stores a found caption as a new caption row (source "import", status
  accepted, provenance: file, key, writer, people and keywords found) when the photo has no caption
  of its own yet (or only an older import); tags concepts that already exist (regions as boxes,
  source "import", never duplicated on a re-read); names that are no concept yet become proposals.
- `propose_concepts` / `apply_concept_proposals`: offer and create those concepts, tagging their
  photos and taking up to three face regions (largest first, distinct photos) as reference boxes -
  so a digiKam user's years of face tagging seed the concept library.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

from ..core.concepts import ConceptError, validate_name
from ..core.images import UnusableImage, inspect_image
from ..core.library import Box, Library, LibraryError, NotFound
from . import geometry
from . import mwg as mwg_rules
from .backends import Backends
from .edit import BackendError
from .fields import NOT_A_NAME, fold
from .safety import CheckedFile, is_raw
from .sidecars import effective_values, read_embedded, read_sidecar, sidecar_candidates
from .writer import default_backends

CAPTION_PRIORITY = ("XMP-dc:Description", "IPTC:Caption-Abstract", "IFD0:ImageDescription",
                    "XMP-tiff:ImageDescription", "IFD0:XPComment", "ExifIFD:UserComment")
# Text cameras and old software put into ImageDescription/UserComment: not a caption.
_BOILERPLATE = re.compile(
    r"^(olympus digital camera|sony dsc|digital camera|default|exif_jpeg_picture|picture|image|"
    r"kodak .*|minolta dsc|samsung( .*)?|lead technologies.*|created with .*|ascii|unicode|undefined|"
    r"[\s._-]*|\d+)$", re.I)
MAX_REFS = 3
# What one photo's metadata may bring in. A group photo has tens of faces; a sidecar with 20,000 regions
# (hostile or broken) made `import --read-metadata` run for 15+ minutes. The rest is left out with a note.
MAX_REGIONS_PER_PHOTO = 256
MAX_NAMES_PER_PHOTO = 256


@dataclass
class FoundRegion:
    name: str | None
    type: str                     # Face | Pet | Focus | ... (MP regions: Face)
    box: tuple[float, float, float, float]  # normalised top-left box, DISPLAYED frame
    source: str                   # mwg | mp

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "box": [round(v, 6) for v in self.box], "source": self.source}


@dataclass
class FoundName:
    name: str
    kind: str                     # person | pet
    sources: list[str] = field(default_factory=list)


@dataclass
class FileMetadata:
    path: str
    read_from: list[str] = field(default_factory=list)   # "embedded", sidecar paths
    values: dict[str, Any] = field(default_factory=dict)  # effective canonical values
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    caption: str | None = None
    caption_key: str | None = None
    title: str | None = None
    names: list[FoundName] = field(default_factory=list)
    regions: list[FoundRegion] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    writer: str | None = None     # application that wrote it (CreatorTool/Software, or a telltale key)
    width: int | None = None      # displayed size
    height: int | None = None
    orientation: int = 1
    notes: list[str] = field(default_factory=list)
    iptc_digests: mwg_rules.IptcDigests = field(default_factory=mwg_rules.IptcDigests)  # MWG: may XMP overrule IPTC?

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["regions"] = [r.as_dict() for r in self.regions]
        return d


def _leaf(tag: str, seps: str) -> tuple[str | None, str]:
    for sep in seps:
        if sep in tag:
            parts = [p.strip() for p in tag.split(sep) if p.strip()]
            if len(parts) >= 2:
                return parts[0], parts[-1]
    return None, tag.strip()


def _writer(values: dict[str, Any]) -> str | None:
    for key in ("XMP-xmp:CreatorTool", "IFD0:Software"):
        v = values.get(key)
        if v and any(app in v.lower() for app in ("digikam", "lightroom", "photoshop", "photini", "picasa",
                                                  "immich", "bridge", "darktable", "shotwell", "exiftool")):
            return v
    if "XMP-digiKam:TagsList" in values:
        return "digiKam or compatible (digiKam:TagsList)"
    if "XMP-lr:HierarchicalSubject" in values:
        return "Lightroom or compatible (lr:hierarchicalSubject)"
    return values.get("XMP-xmp:CreatorTool") or None


def _in_sidecar(fm: FileMetadata, key: str) -> bool:
    return any(key in layer for name, layer in fm.layers.items() if name != "embedded")


def _usable_caption(text: str) -> bool:
    return bool(text and text.strip()) and not _BOILERPLATE.match(text.strip())


def interpret(fm: FileMetadata) -> FileMetadata:
    v = fm.values
    dg = fm.iptc_digests
    # The embedded copies are reconciled by the MWG rules (see mwg.py); a sidecar's XMP overrides them
    # all, as readers let sidecar values win per field.
    if not _in_sidecar(fm, "XMP-dc:Description"):
        text, key = mwg_rules.description(v, dg, usable=_usable_caption)
        if key:
            fm.caption, fm.caption_key = text.strip(), key
    if fm.caption is None:
        for key in CAPTION_PRIORITY:
            text = v.get(key)
            if text and _usable_caption(text):
                fm.caption, fm.caption_key = text.strip(), key
                break
    xmp_title = v.get("XMP-dc:Title")
    if xmp_title and (dg.xmp_in_charge or _in_sidecar(fm, "XMP-dc:Title")):
        fm.title = xmp_title
    else:
        fm.title = v.get("IPTC:ObjectName") or xmp_title
    names: dict[str, FoundName] = {}

    names_left_out = 0

    def add(name: str | None, kind: str, source: str) -> None:
        nonlocal names_left_out
        if not name or fold(name) in NOT_A_NAME:
            return
        name = name.strip()
        f = names.get(fold(name))
        if f is None:
            if len(names) >= MAX_NAMES_PER_PHOTO:
                names_left_out += 1
                return
            f = names[fold(name)] = FoundName(name, kind)
        if kind == "pet":
            f.kind = "pet"
        if source not in f.sources:
            f.sources.append(source)

    mwg = v.get("XMP-mwg-rs:RegionInfo") or {}
    mwg_names = set()
    mwg_list, mp_list = mwg.get("RegionList", []), (v.get("XMP-MP:RegionInfoMP") or {}).get("Regions", [])
    if len(mwg_list) + len(mp_list) > MAX_REGIONS_PER_PHOTO:
        fm.notes.append(f"only the first {MAX_REGIONS_PER_PHOTO} of {len(mwg_list) + len(mp_list)} regions "
                        "were read (more than any photo has)")
        mwg_list = mwg_list[:MAX_REGIONS_PER_PHOTO]
        mp_list = mp_list[:MAX_REGIONS_PER_PHOTO - len(mwg_list)]
    for r in mwg_list:
        a = r.get("Area")
        if not a or a.get("Unit", "normalized") != "normalized":
            continue
        t = r.get("Type") or "Face"
        box = geometry.clamp01(geometry.stored_to_display(geometry.from_center((a["X"], a["Y"], a["W"], a["H"])),
                                                          fm.orientation))
        fm.regions.append(FoundRegion(r.get("Name"), t, box, "mwg"))
        if r.get("Name") and t in ("Face", "Pet"):
            add(r["Name"], "pet" if t == "Pet" else "person", f"MWG {t} region")
            mwg_names.add(fold(r["Name"]))
    for r in mp_list:
        n, rect = r.get("PersonDisplayName"), r.get("Rectangle")
        if rect and (not n or fold(n) not in mwg_names):  # MP is the fallback for the same face
            box = geometry.clamp01(geometry.stored_to_display(tuple(rect), fm.orientation))
            fm.regions.append(FoundRegion(n, "Face", box, "mp"))
        add(n, "person", "MP region")
    for n in v.get("XMP-iptcExt:PersonInImage", []) or []:
        add(n, "person", "PersonInImage")
    for key, seps in (("XMP-lr:HierarchicalSubject", "|"), ("XMP-digiKam:TagsList", "/")):
        for tag in v.get(key, []) or []:
            root, leaf = _leaf(tag, seps)
            if root and fold(root) in ("people", "persons", "person", "faces"):
                add(leaf, "person", key.split(":")[1])
            elif root and fold(root) in ("pets", "pet", "animals"):
                add(leaf, "pet", key.split(":")[1])
    if names_left_out:
        fm.notes.append(f"only the first {MAX_NAMES_PER_PHOTO} names were read, {names_left_out} more were "
                        "left out (more than any photo has)")
    fm.names = list(names.values())
    name_set = set(names)
    kws: dict[str, str] = {}
    flat = list(v.get("XMP-dc:Subject") or []) if _in_sidecar(fm, "XMP-dc:Subject") else mwg_rules.keywords(v, dg)[0]
    for k in flat:
        if fold(k) not in name_set and fold(k) not in kws:
            kws[fold(k)] = k.strip()
    fm.keywords = list(kws.values())
    fm.writer = _writer(v)
    return fm


def read_file_metadata(path: str | os.PathLike, backends: Backends | None = None) -> FileMetadata:
    """Everything a photo (and its sidecars) says, interpreted. Raises UnusableImage / BackendError /
    OSError when the photo itself cannot be read."""
    path = os.fspath(path)
    backends = backends or default_backends()
    fm = FileMetadata(path=path)
    if is_raw(path):
        st = os.stat(path)
        cf = CheckedFile(path, path, None, "RAW", None, None, 1, st, None, [])
    else:
        with open(path, "rb") as f:
            data = f.read()
        info = inspect_image(path, data=data)
        fm.width, fm.height, fm.orientation = info.width, info.height, info.orientation
        fm.iptc_digests = mwg_rules.iptc_digests(data, info.format)
        cf = CheckedFile(path, path, data, info.format, info.width, info.height, info.orientation,
                         os.stat(path), None, [])
    layers = []
    try:
        emb = read_embedded(cf, backends)
        layers.append(emb)
        fm.layers["embedded"] = emb
        fm.read_from.append("embedded")
    except BackendError as exc:
        fm.notes.append(f"embedded metadata not readable: {exc}")
    for p in reversed(sidecar_candidates(path)):
        try:
            side = read_sidecar(p, backends)
        except (BackendError, OSError) as exc:
            fm.notes.append(f"sidecar {p} not readable: {exc}")
            continue
        layers.append(side)
        fm.layers[p] = side
        fm.read_from.append(p)
    fm.values = effective_values(layers)
    return interpret(fm)


# --------------------------------------------------------------------------------------------------
# Into the library
# --------------------------------------------------------------------------------------------------

@dataclass
class ConceptProposal:
    name: str
    kind: str
    photos: list[dict[str, Any]] = field(default_factory=list)  # {"photo_id", "box": [x,y,w,h] | None}
    sources: list[str] = field(default_factory=list)
    problem: str | None = None                                  # why it cannot be created as is

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReadReport:
    photos: int = 0
    captions_added: int = 0
    captions_kept: list[dict[str, Any]] = field(default_factory=list)  # file caption differs from the library's
    tags_added: int = 0
    regions_added: int = 0
    proposals: list[ConceptProposal] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    references_added: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)          # per photo summary
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seconds"] = round(self.seconds, 3)
        return d


def _pixel_box(box: tuple[float, float, float, float], w: int | None, h: int | None) -> Box | None:
    if not w or not h:
        return None
    px = geometry.norm_to_pixels(box, w, h)
    return Box(*px) if px else None


def _iou(a: Box, b: Box) -> float:
    x0, y0 = max(a.x, b.x), max(a.y, b.y)
    x1, y1 = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union else 0.0


def _boxes_by_name(fm: FileMetadata, w: int | None, h: int | None) -> dict[str, list[Box]]:
    """Folded name -> its face/pet boxes in pixels (near-duplicates dropped); one pass over the regions."""
    out: dict[str, list[Box]] = {}
    for r in fm.regions:
        if r.name and r.type in ("Face", "Pet"):
            b = _pixel_box(r.box, w, h)
            boxes = out.setdefault(fold(r.name), [])
            if b is not None and not any(_iou(b, o) > 0.8 for o in boxes):
                boxes.append(b)
    return out


_PhotoTags = tuple[set[int], dict[int, list[Box]]]


def _photo_tags(library: Library, photo_id: int) -> _PhotoTags:
    """(concept ids tagged, concept id -> its region boxes) of a photo, read once for all its names."""
    by_concept: dict[int, list[Box]] = {}
    for r in library.concepts.regions(photo_id):
        by_concept.setdefault(r.concept_id, []).append(r.box)
    return {x.id for x in library.concepts.of_photo(photo_id)}, by_concept


def _tag(library: Library, photo_id: int, concept: str, boxes: list[Box], report: ReadReport,
         state: _PhotoTags | None = None) -> None:
    """Tag a photo with a concept and its boxes; nothing is added twice on a re-read. `state` is the
    photo's _photo_tags, kept up to date here (reading them per name was quadratic in the names)."""
    c = library.concepts.get(concept)
    tagged_ids, by_concept = state if state is not None else _photo_tags(library, photo_id)
    tagged = c.id in tagged_ids
    existing = by_concept.setdefault(c.id, [])
    new_boxes = [b for b in boxes if not any(_iou(b, e) > 0.8 for e in existing)]
    if not tagged and not new_boxes:
        library.concepts.tag(photo_id, c.name, source="import")
        report.tags_added += 1
    for i, b in enumerate(new_boxes):
        library.concepts.tag(photo_id, c.name, box=b, source="import", replace=False)  # all of its boxes
        report.regions_added += 1
        if i == 0 and not tagged:
            report.tags_added += 1
    tagged_ids.add(c.id)
    existing.extend(new_boxes)


def _store_caption(library: Library, photo, fm: FileMetadata, report: ReadReport) -> None:
    if not fm.caption:
        return
    cur = library.captions.current(photo.id)
    if cur is not None:
        exported = ((cur.provenance or {}).get("export") or {}).get("caption")
        same = fm.caption.strip() in {cur.text.strip(), (exported or "").strip()}
        if same:
            return
        if cur.source != "import":
            report.captions_kept.append({"photo_id": photo.id, "path": photo.path, "library": cur.text,
                                         "file": fm.caption, "key": fm.caption_key})
            return
    library.captions.add(photo.id, fm.caption, source="import", status="accepted", provenance={"import": {
        "at": time.time(), "path": fm.path, "read_from": fm.read_from, "key": fm.caption_key, "writer": fm.writer,
        "title": fm.title, "people": [n.name for n in fm.names], "keywords": fm.keywords}})
    report.captions_added += 1


def _collect(library: Library, photo_ids: Iterable[int], backends: Backends, report: ReadReport, *, store: bool,
             progress: Callable[[int, int, str], None] | None = None, cancel: Callable[[], bool] | None = None
             ) -> dict[str, ConceptProposal]:
    proposals: dict[str, ConceptProposal] = {}
    ids = list(dict.fromkeys(photo_ids))
    for n, pid in enumerate(ids):
        if cancel is not None and cancel():
            break
        photo = library.photos.get(pid)
        try:
            if photo.status != "ok":
                raise FileNotFoundError("the file is missing")
            try:
                fm = read_file_metadata(photo.fs_path, backends)
            except UnusableImage as exc:
                raise ValueError(exc.reason) from None
            report.photos += 1
            report.files.append({"photo_id": pid, "path": photo.path, "caption": fm.caption, "writer": fm.writer,
                                 "names": [x.name for x in fm.names], "regions": len(fm.regions),
                                 "keywords": fm.keywords})
            if store:
                with library.transaction():
                    _store_caption(library, photo, fm, report)
            report.problems += [{"photo_id": str(pid), "path": photo.path, "reason": n} for n in fm.notes
                                if n.startswith("only the first")]
            by_name = _boxes_by_name(fm, photo.width, photo.height)
            state: _PhotoTags | None = None
            for found in fm.names:
                boxes = by_name.get(fold(found.name), [])
                try:
                    library.concepts.get(found.name)
                    exists = True
                except NotFound:
                    exists = False
                if exists:
                    if store:
                        with library.transaction():
                            if state is None:
                                state = _photo_tags(library, pid)
                            _tag(library, pid, found.name, boxes, report, state)
                    continue
                p = proposals.get(fold(found.name))
                if p is None:
                    p = proposals[fold(found.name)] = ConceptProposal(found.name, found.kind)
                    try:
                        validate_name(found.name)
                    except ConceptError as exc:
                        p.problem = str(exc)
                if found.kind == "pet":
                    p.kind = "pet"
                for s in ([fm.writer] if fm.writer else []) + found.sources:
                    if s not in p.sources:
                        p.sources.append(s)
                if boxes:
                    p.photos += [{"photo_id": pid, "box": b.as_list()} for b in boxes]
                else:
                    p.photos.append({"photo_id": pid, "box": None})
        except (OSError, ValueError, BackendError, LibraryError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            report.problems.append({"photo_id": str(pid), "path": photo.path, "reason": reason})
        finally:
            if progress is not None:
                progress(n + 1, len(ids), photo.path)
    return proposals


def propose_concepts(library: Library, photo_ids: Iterable[int],
                     backends: Backends | None = None) -> list[ConceptProposal]:
    """Names found in the photos' metadata that are not concepts yet (nothing is written)."""
    report = ReadReport()
    return list(_collect(library, photo_ids, backends or default_backends(), report, store=False).values())


def apply_concept_proposals(library: Library, proposals: Iterable[ConceptProposal], *,
                            names: Iterable[str] | None = None, max_refs: int = MAX_REFS,
                            report: ReadReport | None = None) -> ReadReport:
    """Create the proposed concepts (all, or those in `names`), tag their photos (regions as boxes,
    source "import") and add up to `max_refs` face regions as reference boxes, largest first."""
    report = report or ReadReport()
    wanted = {fold(n) for n in names} if names is not None else None
    states: dict[int, _PhotoTags] = {}  # per photo, across concepts: its tags read once
    for p in proposals:
        if wanted is not None and fold(p.name) not in wanted:
            continue
        if p.problem:
            report.problems.append({"name": p.name, "reason": p.problem})
            continue
        try:
            with library.transaction():
                c = library.concepts.add(p.name, p.kind, info="")
                by_photo: dict[int, list[Box]] = {}
                for occ in p.photos:
                    boxes = by_photo.setdefault(occ["photo_id"], [])
                    if occ.get("box"):
                        boxes.append(Box(*occ["box"]))
                for pid, boxes in by_photo.items():
                    if pid not in states:
                        states[pid] = _photo_tags(library, pid)
                    _tag(library, pid, c.name, boxes, report, states[pid])
                refs = sorted(((b.w * b.h, pid, b) for pid, bs in by_photo.items() for b in bs), key=lambda t: -t[0])
                used: set[int] = set()
                for _, pid, b in refs:
                    if len(used) >= max_refs:
                        break
                    if pid in used:
                        continue
                    library.concepts.add_ref(c.name, photo_id=pid, box=b)
                    used.add(pid)
                    report.references_added += 1
            report.created.append(c.name)
        except (LibraryError, ConceptError) as exc:
            states.clear()  # the transaction was rolled back: what they recorded may not be there
            report.problems.append({"name": p.name, "reason": str(exc)})
    return report


def read_metadata_into_library(library: Library, photo_ids: Iterable[int], *, create_concepts: bool = False,
                               backends: Backends | None = None,
                               progress: Callable[[int, int, str], None] | None = None,
                               cancel: Callable[[], bool] | None = None) -> ReadReport:
    """Read each photo's metadata and store it (see the module docstring); the hook behind
    `repic import --read-metadata` and `repic metadata read`."""
    t0 = time.perf_counter()
    report = ReadReport()
    proposals = _collect(library, photo_ids, backends or default_backends(), report, store=True,
                         progress=progress, cancel=cancel)
    report.proposals = list(proposals.values())
    if create_concepts:
        apply_concept_proposals(library, report.proposals, report=report)
    report.seconds = time.perf_counter() - t0
    return report


def photo_ids_under(library: Library, folder: str | os.PathLike) -> list[int]:
    """Ids of the library's photos below `folder` (e.g. what `repic import DIR` just imported)."""
    return [row[0] for row in library.photos.file_states(os.path.abspath(os.fspath(folder))).values() if row[3] == "ok"]

"""Export from the library: a photo's current caption, its people and pets, their regions and its other
concepts (as keywords) into the photo's file or sidecar, with a consistency check first and a record
of what was written afterwards.

- Consistency: the caption's `<Name>` tags are compared with the photo's concepts and regions, both
  ways (a name in the caption that is not tagged on the photo, a tagged concept or region whose name
  the caption never mentions, a `<tag>` that is no known concept). Issues are reported; with
  `strict` the photo is not exported.
- The caption is written without angle brackets by default (`<Anya> at the beach` -> `Anya at the
  beach`, what other apps should show); `keep_brackets` writes it as stored.
- The record needs no schema change: the caption row gets status `exported` and its provenance JSON
  an `export` entry (time, target, path, backend, groups, keys changed, the caption text written and
  the items we own in each list, used by the next export to remove only our own stale items). After an
  embedded write the photo row gets the file's new size, mtime and content hash, so a rescan does not
  see a changed file and moves are still found by hash.
- Identity: a photo whose file is no longer the one imported (replaced, or swapped with another photo
  of the same size by renames) is refused, so it never gets another photo's caption, names and boxes
  and the library never records the stranger's hash as this photo's (writer.write_metadata `identity`).
- Selection: `--all-accepted` exports photos whose current caption is accepted (exported ones were
  written already; a new edit makes a new caption row). Named photos are exported when their caption
  is accepted or exported; drafts only with `include_drafts`.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

from ..core.library import Caption, Library, Photo, display_path
from ..core.temp_files import cleanup_stale_temps
from . import geometry
from .backends import Backends
from .fields import caption_tags, fold, strip_tags
from .safety import CHANGED_SINCE_IMPORT, file_sha256
from .writer import MetadataValues, Person, RegionBox, WriteOptions, WriteResult, write_metadata

ProgressFn = Callable[[int, int, str], None]
CancelFn = Callable[[], bool]


@dataclass
class ExportOptions:
    write: WriteOptions = field(default_factory=WriteOptions)
    keep_brackets: bool = False     # write `<Anya>` as stored instead of `Anya`
    include_drafts: bool = False
    strict: bool = False            # refuse photos whose caption and concepts disagree

    @classmethod
    def from_settings(cls, extra: dict | None, **overrides) -> "ExportOptions":
        raw = (extra or {}).get("metadata") or {}
        own = {k: raw[k] for k in ("keep_brackets", "include_drafts", "strict") if k in raw}
        own.update({k: overrides.pop(k) for k in list(overrides) if k in ("keep_brackets", "include_drafts", "strict")
                    and overrides[k] is not None})
        return cls(write=WriteOptions.from_settings(extra, **overrides), **own)


@dataclass
class Issue:
    kind: str      # caption_name_not_tagged | unknown_name | not_in_caption
    name: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class PhotoExport:
    photo_id: int
    path: str
    caption_id: int | None = None
    issues: list[Issue] = field(default_factory=list)
    result: WriteResult | None = None
    status: str = "failed"
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"photo_id": self.photo_id, "path": self.path, "caption_id": self.caption_id,
                             "status": self.status, "reason": self.reason,
                             "issues": [i.as_dict() for i in self.issues]}
        if self.result is not None:
            r = self.result
            d.update(target=r.target, written_path=r.written_path, backend=r.backend, format=r.format,
                     changes=r.changes, notes=r.notes)
        return d


@dataclass
class ExportReport:
    dry_run: bool = False
    photos: list[PhotoExport] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        c: dict[str, int] = {}
        for p in self.photos:
            c[p.status] = c.get(p.status, 0) + 1
        return c

    @property
    def failed(self) -> list[PhotoExport]:
        return [p for p in self.photos if p.status in ("refused", "failed")]

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "counts": self.counts, "cancelled": self.cancelled,
                "seconds": round(self.seconds, 3), "photos": [p.as_dict() for p in self.photos]}


# --------------------------------------------------------------------------------------------------
# Consistency and values
# --------------------------------------------------------------------------------------------------

def check_consistency(library: Library, photo_id: int, caption: Caption | None = None) -> list[Issue]:
    """Caption `<Name>` tags vs the photo's concepts and regions, flagged both ways."""
    caption = caption if caption is not None else library.captions.current(photo_id)
    if caption is None:
        return []
    known = {fold(c.name): c for c in library.concepts.all()}
    on_photo = {c.id: c for c in library.concepts.of_photo(photo_id)}
    with_region = {r.concept_id for r in library.concepts.regions(photo_id)}
    tags = caption_tags(caption.text)
    issues: list[Issue] = []
    named_ids = set()
    for t in tags:
        c = known.get(fold(t))
        if c is None:
            issues.append(Issue("unknown_name", t, f"the caption names <{t}>, who is not a known person, pet or thing"))
        elif c.id not in on_photo:
            issues.append(Issue("caption_name_not_tagged", c.name,
                                f"the caption names <{c.name}> but <{c.name}> is not tagged on this photo"))
            named_ids.add(c.id)
        else:
            named_ids.add(c.id)
    plain = fold(caption.text)
    for cid, c in on_photo.items():
        if cid in named_ids:
            continue
        where = "has a region on" if cid in with_region else "is tagged on"
        hint = " (its name appears without brackets)" if fold(c.name) in plain else ""
        issues.append(Issue("not_in_caption", c.name, f"<{c.name}> {where} this photo but the caption does not "
                                                      f"name <{c.name}>{hint}"))
    return issues


def photo_values(library: Library, photo: Photo, caption: Caption | None, *,
                 keep_brackets: bool = False) -> MetadataValues:
    """What the library says about a photo, in the writer's terms (boxes normalised, displayed frame)."""
    concepts = library.concepts.of_photo(photo.id)
    by_id = {c.id: c for c in concepts}
    regions = []
    if photo.width and photo.height:
        for r in library.concepts.regions(photo.id):
            c = by_id.get(r.concept_id) or library.concepts.get(r.concept_id)
            box = geometry.pixels_to_norm(r.box.as_list(), photo.width, photo.height)
            regions.append(RegionBox(c.name, c.kind, box))
    text = None
    if caption is not None:
        text = caption.text if keep_brackets else strip_tags(caption.text)
    return MetadataValues(
        caption=text,
        people=[Person(c.name, c.kind) for c in concepts if c.kind in ("person", "pet")],
        regions=regions,
        keywords=[c.name for c in concepts if c.kind == "other"],
        display_size=(photo.width, photo.height) if photo.width and photo.height else None,
    )


def previous_owned(library: Library, photo_id: int) -> dict[str, list[str]]:
    """The items our last export of this photo wrote (from any caption row of its history)."""
    for cap in reversed(library.captions.history(photo_id)):
        rec = (cap.provenance or {}).get("export")
        if isinstance(rec, dict) and isinstance(rec.get("owned"), dict):
            return {k: list(v) for k, v in rec["owned"].items() if isinstance(v, list)}
    return {}


def record_export(library: Library, photo: Photo, caption: Caption, res: WriteResult, groups: Iterable[str],
                  written_caption: str | None) -> None:
    prov = dict(caption.provenance or {})
    prov["export"] = {
        # display text, like photos.path: a non-UTF-8 file name (surrogate escapes) cannot go into SQLite TEXT
        "at": time.time(), "status": res.status, "target": res.target,
        "path": display_path(os.fsencode(res.written_path)) if res.written_path else None,
        "backend": res.backend, "fields": list(groups), "keys": [c["key"] for c in res.changes],
        "caption": written_caption, "owned": res.owned,
    }
    with library.transaction():
        library.captions.update_provenance(caption.id, prov)
        library.captions.set_status(caption.id, "exported")
        if res.status == "written" and res.target == "file" and res.sha256:
            library.photos.update(photo.id, size=res.size, mtime_ns=res.mtime_ns, content_hash=res.sha256)


# --------------------------------------------------------------------------------------------------
# Selection and the export loop
# --------------------------------------------------------------------------------------------------

def accepted_photo_ids(library: Library) -> list[int]:
    out = []
    for p in library.photos.list():
        cap = library.captions.current(p.id)
        if cap is not None and cap.status == "accepted":
            out.append(p.id)
    return out


def library_roots(library: Library) -> set[str]:
    """Real paths of every folder holding library photos (a symlinked photo may point into these)."""
    folders = {os.path.dirname(os.fsdecode(pb)) for pb in library.photos.file_states()}
    return {os.path.realpath(f) for f in folders}


def export_photos(library: Library, photo_ids: Iterable[int], options: ExportOptions | None = None, *,
                  dry_run: bool = False, backends: Backends | None = None, progress: ProgressFn | None = None,
                  cancel: CancelFn | None = None) -> ExportReport:
    """Write each photo's metadata; one result per photo (never raises for a single photo's problem)."""
    options = options or ExportOptions()
    own_backends = backends is None
    backends = backends or Backends(options.write.backend)
    ids = list(dict.fromkeys(photo_ids))
    report = ExportReport(dry_run=dry_run)
    t0 = time.perf_counter()
    roots_cache: dict[str, set[str]] = {}

    def roots() -> set[str]:
        if "r" not in roots_cache:
            roots_cache["r"] = library_roots(library)
        return roots_cache["r"]

    cleaned: set[str] = set()
    try:
        for n, pid in enumerate(ids):
            if cancel is not None and cancel():
                report.cancelled = True
                break
            photo = library.photos.get(pid)
            item = PhotoExport(photo_id=pid, path=photo.path)
            report.photos.append(item)
            try:
                _export_one(library, photo, item, options, dry_run, backends, roots, cleaned)
            finally:
                if progress is not None:
                    progress(n + 1, len(ids), photo.path)
    finally:
        if own_backends:
            backends.close()
    report.seconds = time.perf_counter() - t0
    return report


def _export_one(library: Library, photo: Photo, item: PhotoExport, options: ExportOptions, dry_run: bool,
                backends: Backends, roots, cleaned: set[str]) -> None:
    cap = library.captions.current(photo.id)
    item.caption_id = cap.id if cap else None
    if photo.status != "ok":
        item.status, item.reason = "refused", "the file is missing (rescan its folder)"
        return
    if cap is None:
        item.status, item.reason = "refused", "no caption yet"
        return
    if cap.status == "draft" and not options.include_drafts:
        item.status, item.reason = "refused", "the caption is a draft: accept it first (or use --include-drafts)"
        return
    item.issues = check_consistency(library, photo.id, cap)
    if item.issues and options.strict:
        item.status = "refused"
        item.reason = "caption and tagged concepts disagree: " + "; ".join(i.message for i in item.issues)
        return
    values = photo_values(library, photo, cap, keep_brackets=options.keep_brackets)
    folder = os.path.dirname(photo.fs_path)
    if not dry_run and folder not in cleaned:
        cleaned.add(folder)
        cleanup_stale_temps(folder)
    res = write_metadata(photo.fs_path, values, options.write, previous_owned=previous_owned(library, photo.id),
                         backends=backends, dry_run=dry_run, roots=roots,
                         identity=(photo.size, photo.mtime_ns, photo.content_hash))
    item.result, item.status, item.reason = res, res.status, res.reason
    if res.status == "refused" and res.reason == CHANGED_SINCE_IMPORT:
        item.reason = _whose_file(library, photo) or res.reason
    if not dry_run and res.status in ("written", "unchanged"):
        record_export(library, photo, cap, res, options.write.groups, values.caption)


def _whose_file(library: Library, photo: Photo) -> str | None:
    """A clearer refusal when the changed file is another library photo (swapped by renames): the
    rescan cannot tell such a swap when sizes and times match, so say which photo it is."""
    try:
        digest = file_sha256(None, photo.fs_path)
    except OSError:
        return None
    others = [p for p in library.photos.by_hashes([digest]).get(digest, []) if p.id != photo.id]
    if not others:
        return None
    return (f"the file is now the photo imported as {others[0].path} (swapped by renaming?): not written; "
            f"rename the files back, or rescan the folder if the change was meant")


def resolve_photos(library: Library, refs: Iterable[str]) -> list[int]:
    """Photo ids from what users type (ids or paths); raises LibraryError for unknown ones."""
    return [library.photos.resolve(r).id for r in refs]

"""Which photos of a person or pet training learns from, and how many: one rule and one count for the
People page, Personalize, `repic concept list|show` and `repic-train dataset` (trainer/dataset.py builds
its samples from exactly these photos).

* **Known to be in the photo**: a confirmed tag (``CONFIRMED_SOURCES``: typed or drawn by hand, read from
  the photo's metadata, a confirmed suggestion or a named face group) or a tag of the photo's accepted or
  exported current caption. Detector guesses and draft captions are not ground truth.
* **Reference photos are never training photos**: a query identical to its reference teaches copying,
  not recognition. This holds for the references of every concept, not only those being trained, so a
  concept's count does not depend on which others are trained with it. A byte-identical copy of a
  reference (a reference imported from a file, a duplicate photo) is left out too.
* **One photo per content**: byte-identical photos count once, with the union of their concepts (a
  duplicate could otherwise be trained on while its twin is held out).
* Photos marked missing by the last scan are not counted; the trainer also leaves out files gone since
  (``exists``) and says so.

A concept whose tagged photos are all references has 0 photos to learn from; ``PhotoCounts.reference_only``
says so, so the lists can tell the user why.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .library import Library


@dataclass
class TrainingPhotos:
    photos: dict[int, Any]                # photo id -> Photo (labelled, present, status ok)
    labelled: dict[int, set[int]]         # training photo id -> concept ids known in it
    references: dict[int, int] = field(default_factory=dict)          # concept id -> reference count
    tagged_references: dict[int, int] = field(default_factory=dict)   # concept id -> its photos left out as references
    gone: int = 0                          # photos left out because `exists` said no

    def count(self, concept_id: int) -> int:
        return sum(1 for ids in self.labelled.values() if concept_id in ids)


@dataclass(frozen=True)
class PhotoCounts:
    photos: int          # photos to learn from
    references: int      # reference photos
    tagged_references: int  # photos known to show the concept that are references, so not counted

    @property
    def reference_only(self) -> bool:
        """Known photos exist, but every one of them is a reference."""
        return self.photos == 0 and self.tagged_references > 0

    def as_dict(self) -> dict[str, Any]:
        return {"photos": self.photos, "references": self.references,
                "tagged_references": self.tagged_references, "reference_only": self.reference_only}

    def text(self) -> str:
        """'3 photos, 1 reference', or why there are none: '0 photos (all 4 tagged photos are references)'."""
        if self.reference_only:
            n = self.tagged_references
            return ("0 photos (its one tagged photo is a reference)" if n == 1
                    else f"0 photos (all {n} tagged photos are references)")
        return (f"{self.photos} photo{'s' if self.photos != 1 else ''}, "
                f"{self.references} reference{'s' if self.references != 1 else ''}")


def _tag_concept(tag: Any, by_name: dict[str, int]) -> int | None:
    return by_name.get(str(tag).strip().removeprefix("<").removesuffix(">").strip().casefold())


def known_concepts(library: Library) -> dict[int, set[int]]:
    """photo id -> ids of the concepts known to be in it (confirmed tags + accepted caption tags)."""
    by_name = {c.name.casefold(): c.id for c in library.concepts.all()}
    known = library.concepts.confirmed_tags()
    for pid, tags in library.captions.accepted_tags().items():
        for tag in tags:
            cid = _tag_concept(tag, by_name)
            if cid is not None:
                known.setdefault(pid, set()).add(cid)
    return known


def reference_photos(library: Library, concepts: Iterable[Any] | None = None) -> tuple[set[int], set[str]]:
    """Ids of the library photos used as references (of `concepts`, default every concept), and the
    content hashes of every such reference (a reference imported from a file may be byte-identical to a
    library photo)."""
    from .concepts import reference_path
    from .images import sha256_file

    ids: set[int] = set()
    hashes: set[str] = set()
    for c in (library.concepts.all() if concepts is None else concepts):
        for r in library.concepts.refs(c.id):
            if r.photo_id is not None:
                ids.add(r.photo_id)
                h = library.photos.get(r.photo_id).content_hash
            else:
                try:
                    h = sha256_file(reference_path(library, r))
                except OSError:
                    h = None
            if h:
                hashes.add(h)
    return ids, hashes


def training_photos(library: Library, *, exists: Callable[[str], bool] | None = None) -> TrainingPhotos:
    """The photos training learns from (see the module docstring). `exists(path)` also leaves out files
    that are gone since the last scan (the trainer passes os.path.exists; the lists trust the scan)."""
    known = known_concepts(library)
    ok = library.photos.ok_by_ids(known)   # only labelled photos matter: not every photo of a big library
    photos = {pid: p for pid, p in ok.items() if exists is None or exists(p.fs_path)}
    ref_ids, ref_hashes = reference_photos(library)
    labelled: dict[int, set[int]] = {}
    left_as_ref: dict[int, set[str | int]] = {}
    first_of_hash: dict[str, int] = {}
    for pid in sorted(known):
        ids = known[pid]
        p = photos.get(pid)
        if p is None or not ids:
            continue
        if pid in ref_ids or (p.content_hash and p.content_hash in ref_hashes):
            for cid in ids:
                left_as_ref.setdefault(cid, set()).add(p.content_hash or pid)
            continue
        twin = first_of_hash.get(p.content_hash) if p.content_hash else None
        if twin is not None:
            labelled[twin] = labelled[twin] | ids  # same pixels, so the same concepts
            continue
        if p.content_hash:
            first_of_hash[p.content_hash] = pid
        labelled[pid] = set(ids)
    refs = {c.id: len(library.concepts.refs(c.id)) for c in library.concepts.all()}
    return TrainingPhotos(photos, labelled, refs, {cid: len(v) for cid, v in left_as_ref.items()},
                          len(ok) - len(photos))


def photo_counts(library: Library) -> dict[int, PhotoCounts]:
    """concept id -> its photos to learn from and its references, for every concept."""
    tp = training_photos(library)
    per: dict[int, int] = {}
    for ids in tp.labelled.values():
        for cid in ids:
            per[cid] = per.get(cid, 0) + 1
    return {c.id: PhotoCounts(per.get(c.id, 0), tp.references.get(c.id, 0), tp.tagged_references.get(c.id, 0))
            for c in library.concepts.all()}

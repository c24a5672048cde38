"""Undo for the Unknown Faces page: naming a cluster and ignoring faces are steps on the window's undo
stack, like tagging and editing captions.

The work itself runs in a worker (recorded there); the commands hold what it changed, so undo takes back
exactly that and nothing the user had before:
- ignoring: the crop ids `lib.retrieval.set_faces_ignored` changed (the same box found by another matcher
  included); undo brings those back, redo dismisses them again.
- naming: whether the person or pet existed, the reference photos added, and for every photo of the
  cluster its tag and regions of that concept before. Undo removes a person it created (their tags and
  regions go with them) or else removes the references it added and puts each photo's tag and regions
  back; the cluster is unnamed again. Redo names it again.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from PySide6.QtGui import QUndoCommand

from ...core.library import Library, LibraryError, NotFound

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------- ignoring

def ignore_recorded(lib: Library, crop_ids: list[int], ignore: bool, cluster_id: int | None = None) -> list[int]:
    """Dismiss (or bring back) faces; returns every crop id that changed (what undo reverses)."""
    if cluster_id is not None:
        if lib.retrieval.face_cluster_concept(cluster_id) is not None:
            raise LibraryError("this group of faces has a name now: remove the person instead of ignoring faces")
        crop_ids = [m["id"] for m in lib.retrieval.face_cluster_members(cluster_id)] or crop_ids
    return lib.retrieval.set_faces_ignored(crop_ids, ignore)


class IgnoreFacesCommand(QUndoCommand):
    def __init__(self, lib: Library, changed: list[int], ignore: bool, on_change: Callable[[], None]):
        n = len(changed)
        super().__init__(f"{'Ignore' if ignore else 'Bring back'} {n} face{'s' if n != 1 else ''}")
        self.lib, self.changed, self.ignore, self.on_change = lib, list(changed), ignore, on_change
        self._done = True          # the worker did the first redo

    def redo(self) -> None:
        if self._done:
            self._done = False
            return
        self.lib.retrieval.set_faces_ignored(self.changed, self.ignore)
        self.on_change()

    def undo(self) -> None:
        self.lib.retrieval.set_faces_ignored(self.changed, not self.ignore)
        self.on_change()


# ---------------------------------------------------------------------------------------- naming

@dataclass
class PhotoBefore:
    tag_source: str | None                     # None: the photo was not tagged with the concept
    regions: list[tuple] = field(default_factory=list)   # (Box, source)


@dataclass
class NamingRecord:
    cluster_id: int
    name: str
    kind: str
    created: bool = False
    refs_before: set[int] = field(default_factory=set)
    refs_added: list[int] = field(default_factory=list)
    photos: dict[int, PhotoBefore] = field(default_factory=dict)


def _photo_before(lib: Library, photo_id: int, concept_id: int) -> PhotoBefore:
    row = lib.conn.execute("SELECT source FROM photo_concepts WHERE photo_id = ? AND concept_id = ?",
                           (photo_id, concept_id)).fetchone()
    return PhotoBefore(row[0] if row else None,
                       [(r.box, r.source) for r in lib.concepts.regions(photo_id) if r.concept_id == concept_id])


def name_recorded(lib: Library, service, cluster_id: int, name: str, kind: str) -> tuple[object, NamingRecord]:
    """`service.name_cluster`, recording what undo must put back."""
    rec = NamingRecord(cluster_id, name, kind)
    members = lib.retrieval.face_cluster_members(cluster_id)
    try:
        before = lib.concepts.get(name)
    except NotFound:
        rec.created = True
    else:
        rec.refs_before = {r.id for r in lib.concepts.refs(before.id)}
        for m in members:
            rec.photos.setdefault(m["photo_id"], _photo_before(lib, m["photo_id"], before.id))
    concept = service.name_cluster(lib, cluster_id, name, kind=kind)
    rec.name = concept.name
    rec.refs_added = [r.id for r in lib.concepts.refs(concept.id) if r.id not in rec.refs_before]
    return concept, rec


def unname(lib: Library, rec: NamingRecord) -> None:
    with lib.transaction():
        lib.retrieval.set_face_cluster_concept(rec.cluster_id, None)
        if rec.created:
            lib.concepts.remove(rec.name)        # its references, tags and regions go with it
            return
        for ref_id in rec.refs_added:
            try:
                lib.concepts.remove_ref(ref_id)
            except NotFound:
                pass
        for photo_id, was in rec.photos.items():
            try:
                lib.concepts.untag(photo_id, rec.name)
                if was.tag_source is not None:
                    lib.concepts.tag(photo_id, rec.name, source=was.tag_source)
                    for box, source in was.regions:
                        lib.concepts.tag(photo_id, rec.name, box=box, source=source, replace=False)
            except NotFound:                    # the photo is gone meanwhile
                pass


class NameClusterCommand(QUndoCommand):
    def __init__(self, lib: Library, service, rec: NamingRecord, on_change: Callable[[], None]):
        super().__init__(f"Name faces <{rec.name}>")
        self.lib, self.service, self.rec, self.on_change = lib, service, rec, on_change
        self._done = True

    def redo(self) -> None:
        if self._done:
            self._done = False
            return
        try:
            _concept, self.rec = name_recorded(self.lib, self.service, self.rec.cluster_id, self.rec.name,
                                               self.rec.kind)
        except LibraryError as exc:             # the cluster changed meanwhile (a new index run)
            log.warning("naming the faces again failed: %s", exc)
        self.on_change()

    def undo(self) -> None:
        unname(self.lib, self.rec)
        self.on_change()

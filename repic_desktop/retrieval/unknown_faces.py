"""Unknown faces: face crops that match no concept, clustered with dlib's identity rule so a whole cluster
can be named at once. A face the user dismisses ("not a face", a stranger) is ignored: it never clusters
or suggests, and a re-detection of the same box (an edited file, another model, another matcher) stays
ignored until the user un-ignores it.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

from ..core.library import Box, Concept, Library, LibraryError, NotFound
from .base import from_blob
from .index import cluster_faces
from .registry import FACE_MATCHER, MATCHERS

# A named face group gives its best faces (a crop: photo + face box) as references, the rest are tagged.
# References are never training photos (core/training_photos.py), so each photo made a reference is one
# photo fewer to learn from: one reference per 4 faces, 1 to 3 in all.
MAX_CLUSTER_REFS = 3
FACES_PER_CLUSTER_REF = 4


def cluster_reference_count(faces: int, existing: int = 0) -> int:
    """How many of a named group's `faces` become references when the concept already has `existing`."""
    want = min(MAX_CLUSTER_REFS, max(1, faces // FACES_PER_CLUSTER_REF))
    return max(0, want - existing)


@dataclass(frozen=True)
class FaceCrop:
    crop_id: int
    photo_id: int
    box: Box
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"crop_id": self.crop_id, "photo_id": self.photo_id, "box": self.box.as_list(),
                "score": round(self.score, 3)}


@dataclass(frozen=True)
class FaceCluster:
    id: int
    size: int
    members: list[FaceCrop]  # sorted by detector score, best first

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "size": self.size, "members": [m.as_dict() for m in self.members]}


def update_face_clusters(library: Library, *, matcher_id: str = FACE_MATCHER,
                         threshold: float | None = None) -> None:
    """Re-cluster the unknown faces, keeping cluster ids stable: a component keeps the id most of its
    members already had (ties: the older id), so the user's view does not reshuffle after indexing."""
    import numpy as np

    if threshold is None:
        threshold = MATCHERS[FACE_MATCHER].cluster_threshold
    crops = library.retrieval.unknown_face_crops(matcher_id)
    if not crops:
        library.retrieval.assign_face_clusters(matcher_id, {})
        return
    dims = Counter(c["dim"] for c in crops)
    dim = dims.most_common(1)[0][0]
    crops = [c for c in crops if c["dim"] == dim]
    vecs = np.stack([from_blob(c["vec"], dim) for c in crops])
    labels = cluster_faces(vecs, threshold)
    groups: dict[int, list[int]] = {}
    for i, root in enumerate(labels):
        groups.setdefault(root, []).append(i)
    used: set[int] = set()
    assignment: dict[int, int | None] = {}
    for n, (root, members) in enumerate(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))):
        old = Counter(crops[i]["cluster_id"] for i in members if crops[i]["cluster_id"] is not None)
        choice = next((cid for cid, _ in sorted(old.items(), key=lambda kv: (-kv[1], kv[0])) if cid not in used),
                      None)
        if choice is not None:
            used.add(choice)
        for i in members:
            assignment[crops[i]["id"]] = choice if choice is not None else -(n + 1)
    if any(assignment[c["id"]] != c["cluster_id"] for c in crops):
        library.retrieval.assign_face_clusters(matcher_id, assignment)


def face_clusters(library: Library, *, min_size: int = 1, matcher_id: str = FACE_MATCHER,
                  refresh: bool = True) -> list[FaceCluster]:
    """Clusters of unknown faces, largest first (ties: lower id)."""
    if refresh:
        update_face_clusters(library, matcher_id=matcher_id)
    groups: dict[int, list[FaceCrop]] = {}
    for c in library.retrieval.unknown_face_crops(matcher_id):
        if c["cluster_id"] is not None:
            groups.setdefault(c["cluster_id"], []).append(
                FaceCrop(c["id"], c["photo_id"], c["box"], float(c["det_score"])))
    out = [FaceCluster(cid, len(m), sorted(m, key=lambda f: (-f.score, f.crop_id)))
           for cid, m in groups.items() if len(m) >= min_size]
    return sorted(out, key=lambda c: (-c.size, c.id))


def ignore_faces(library: Library, crop_ids: Iterable[int]) -> int:
    """Dismiss single faces (a false detection, a stranger in the background): they leave the unknown
    faces for good, until unignore_faces. Returns how many face crops were dismissed."""
    return len(library.retrieval.set_faces_ignored(crop_ids, True))


def ignore_cluster(library: Library, cluster_id: int) -> int:
    """Dismiss every face of an unnamed cluster. Returns how many face crops were dismissed."""
    if library.retrieval.face_cluster_concept(cluster_id) is not None:
        raise LibraryError(f"face cluster {cluster_id} has a name: remove the person instead of ignoring faces")
    members = library.retrieval.face_cluster_members(cluster_id)
    if not members:
        raise LibraryError(f"face cluster {cluster_id} is empty (run `repic faces clusters` again)")
    return ignore_faces(library, [m["id"] for m in members])


def unignore_faces(library: Library, crop_ids: Iterable[int] | None = None, *,
                   matcher_id: str = FACE_MATCHER) -> int:
    """Bring dismissed faces back (all of the matcher's when crop_ids is None); they are clustered again
    on the next face_clusters(). Returns how many face crops came back."""
    if crop_ids is None:
        crop_ids = [c["id"] for c in library.retrieval.ignored_face_crops(matcher_id)]
    return len(library.retrieval.set_faces_ignored(crop_ids, False))


def ignored_faces(library: Library, *, matcher_id: str = FACE_MATCHER) -> list[FaceCrop]:
    """The dismissed faces, most recently dismissed first."""
    return [FaceCrop(c["id"], c["photo_id"], c["box"], float(c["det_score"]))
            for c in library.retrieval.ignored_face_crops(matcher_id)]


def name_cluster(library: Library, cluster_id: int, name: str, *, kind: str = "person") -> Concept:
    """Give a face cluster a name: the concept (new, or existing with that name) gets a few of the best
    faces as reference photos (cluster_reference_count: the face box of the photo), and every photo of
    the cluster is tagged with its face box, so the others are photos to learn from. One transaction."""
    if library.retrieval.face_cluster_concept(cluster_id) is not None:
        raise LibraryError(f"face cluster {cluster_id} already has a name")
    members = library.retrieval.face_cluster_members(cluster_id)
    if not members:
        raise LibraryError(f"face cluster {cluster_id} is empty (run `repic faces clusters` again)")
    with library.transaction():
        try:
            concept = library.concepts.get(name)
        except NotFound:
            concept = library.concepts.add(name, kind)
        existing = library.concepts.refs(concept.id)
        have = {r.photo_id for r in existing}
        budget = cluster_reference_count(len({m["photo_id"] for m in members}), len(existing))
        for m in members:  # best detections first; one reference per photo
            if budget > 0 and m["photo_id"] not in have:
                library.concepts.add_ref(concept.name, photo_id=m["photo_id"], box=m["box"])
                have.add(m["photo_id"])
                budget -= 1
            has_region = any(r.concept_id == concept.id for r in library.concepts.regions(m["photo_id"]))
            library.concepts.tag(m["photo_id"], concept.name, box=None if has_region else m["box"], source="suggestion")
        library.retrieval.set_face_cluster_concept(cluster_id, concept.id)
    return library.concepts.get(concept.id)


__all__ = ["FACES_PER_CLUSTER_REF", "MAX_CLUSTER_REFS", "FaceCluster", "FaceCrop", "cluster_reference_count",
           "face_clusters", "ignore_cluster", "ignore_faces", "ignored_faces", "name_cluster", "unignore_faces",
           "update_face_clusters"]

"""The exact vector index: one normalised numpy matrix per matcher, per-concept max, top-K.

Why exact numpy and no ANN library: at the app's scale (<= 500 concepts x 20 references) a brute
force product takes well under a millisecond per crop, is exact, and needs nothing native
(shared/reference/retrieval.md §3: faiss flat is no faster, hnswlib loses recall). Scores are
cosine similarities of unit vectors, which order matches exactly like RePIC's faiss IndexFlatL2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from .base import normalize

if TYPE_CHECKING:
    import numpy as np  # numpy is imported where vectors are made: the CLI and GUI import this module at start-up


@dataclass(frozen=True)
class ConceptMatch:
    concept_id: int
    score: float  # best cosine similarity between any crop and any of the concept's references
    crop: int  # index of the crop that gave it (the evidence)


class ExactIndex:
    """Reference vectors grouped by concept. Build once per matcher, query per photo."""

    def __init__(self, vectors: np.ndarray, concept_ids: Sequence[int], ref_ids: Sequence[int] | None = None):
        import numpy as np

        cids = np.asarray(concept_ids, dtype=np.int64)
        if len(cids) and vectors.shape[0] != len(cids):
            raise ValueError("one concept id per vector is needed")
        order = np.argsort(cids, kind="stable")  # contiguous runs per concept for reduceat
        self.vectors = normalize(vectors)[order] if len(cids) else np.zeros((0, 0), np.float32)
        self.concept_of_row = cids[order]
        self.ref_ids = np.asarray(ref_ids if ref_ids is not None else np.arange(len(cids)))[order]
        if len(cids):
            starts = np.flatnonzero(np.r_[True, self.concept_of_row[1:] != self.concept_of_row[:-1]])
        else:
            starts = np.zeros(0, dtype=np.int64)
        self._starts = starts
        self.concepts = self.concept_of_row[starts] if len(cids) else np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.concept_of_row)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1]) if len(self) else 0

    def concept_scores(self, queries: np.ndarray) -> np.ndarray:
        """(n_queries, n_concepts) best similarity of each query to each concept's references."""
        import numpy as np

        q = normalize(queries)
        if not len(self) or q.shape[0] == 0:
            return np.zeros((q.shape[0], len(self.concepts)), np.float32)
        if q.shape[1] != self.dim:
            raise ValueError(f"query vectors have {q.shape[1]} dimensions, the index {self.dim}")
        # Unit vectors' dot products can round past 1 (identical pixels give 1.0000001 on one CPU, 1.0 on
        # another); clipped, equal evidence from two matchers ties everywhere and the stored order decides.
        sims = np.clip(q @ self.vectors.T, -1.0, 1.0)
        return np.maximum.reduceat(sims, self._starts, axis=1)

    def match(self, queries: np.ndarray, *, top_k: int | None, threshold: float) -> tuple[list[ConceptMatch],
                                                                                          list[ConceptMatch | None]]:
        """Union over crops of per-concept best scores: the top-K concepts at or above `threshold`,
        best first (ties: lower concept id), each with its evidence crop; and per crop its own best
        concept at or above the threshold (None: an unknown face or object)."""
        import numpy as np

        scores = self.concept_scores(queries)
        per_crop: list[ConceptMatch | None] = []
        if scores.size == 0:
            return [], [None] * scores.shape[0]
        for i in range(scores.shape[0]):
            j = int(np.argmax(scores[i]))
            s = float(scores[i, j])
            per_crop.append(ConceptMatch(int(self.concepts[j]), s, i) if s >= threshold else None)
        best_crop = np.argmax(scores, axis=0)
        best = scores[best_crop, np.arange(scores.shape[1])]
        keep = np.flatnonzero(best >= threshold)
        ranked = sorted(keep, key=lambda j: (-float(best[j]), int(self.concepts[j])))
        if top_k is not None:
            ranked = ranked[:top_k]
        return [ConceptMatch(int(self.concepts[j]), float(best[j]), int(best_crop[j])) for j in ranked], per_crop


def cluster_faces(vectors: np.ndarray, threshold: float) -> list[int]:
    """Connected components of "similarity >= threshold" (single linkage): the label of each vector is
    the smallest index in its component, so the result depends only on the input's order and values.
    Vectorised min-label propagation with pointer jumping: one photo's person can contribute millions of
    linked pairs, which a Python union-find loop would walk one by one."""
    import numpy as np

    n = len(vectors)
    if n == 0:
        return []
    v = normalize(vectors)
    rows, cols = [], []
    for start in range(0, n, 1024):  # bounded memory for big unknown-face sets
        a, b = np.nonzero(v[start:start + 1024] @ v.T >= threshold)
        a = a + start
        keep = a < b
        rows.append(a[keep])
        cols.append(b[keep])
    r, c = np.concatenate(rows), np.concatenate(cols)
    labels = np.arange(n)
    while True:
        low = np.minimum(labels[r], labels[c])
        new = labels.copy()
        np.minimum.at(new, r, low)
        np.minimum.at(new, c, low)
        new = new[new]
        if np.array_equal(new, labels):
            return new.tolist()
        labels = new

"""The matcher interface shared by every detector + embedder pair.

A matcher turns an image into crops (box, kind, detector score, embedding). Everything downstream
(the index, suggestions, clustering) only sees crops and float32 vectors, so a new matcher needs no
change elsewhere. Boxes here are in the pixels of the image handed to the matcher; references.py and
index_job.py scale them to the photo's displayed full-resolution frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np  # numpy is imported where vectors are made: the CLI and GUI import this module at start-up

from ..core.errors import RepicError

CROP_KINDS = ("face", "cat", "dog", "person", "object", "image")


class MatcherUnavailable(RepicError):
    """The matcher cannot run here; str(exc) tells the user what to do (download, set a folder, ...)."""


@dataclass
class Crop:
    box: tuple[int, int, int, int]  # x, y, w, h in the pixels of the image the matcher was given
    kind: str
    score: float  # detector confidence (1.0 for "the whole image")
    vector: np.ndarray | None  # None: a presence hint without identity (the cat cascade)


@runtime_checkable
class Matcher(Protocol):
    id: str  # stable user-facing choice stored with every vector ("dlib-faces", "clip", "dinov2")
    name: str
    fingerprint: str  # the exact models and settings: a different one makes cached vectors stale
    threshold: float  # cosine similarity at or above which a crop matches a reference
    cluster_threshold: float | None  # similarity linking two unknown faces (None: no face clustering)
    max_side: int  # photos are decoded at most this large before detection
    faithful: bool  # True when the pipeline is RePIC's (open-vocabulary detector + embedder)

    def crops(self, image) -> list[Crop]:
        """Detect and embed every crop worth matching in a PIL RGB image."""

    def reference_crop(self, image, box: tuple[int, int, int, int] | None) -> Crop | None:
        """The one crop that represents a reference photo (inside `box` when given), or None."""


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Unit rows in float32: then cosine similarity is a dot product and ranks like RePIC's faiss L2."""
    import numpy as np

    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v[None, :]
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


def to_blob(vector: np.ndarray) -> bytes:
    import numpy as np

    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes, dim: int) -> np.ndarray:
    import numpy as np

    v = np.frombuffer(blob, dtype="<f4")
    if v.size != dim:
        raise ValueError(f"stored vector has {v.size} values, expected {dim}")
    return v


def l2_to_cosine(l2: float) -> float:
    """For unit vectors |a-b|^2 = 2 - 2 cos, so an L2 rule (dlib's 0.6) is a cosine rule."""
    return 1.0 - l2 * l2 / 2.0


def cosine_to_l2(cos: float) -> float:
    return math.sqrt(max(0.0, 2.0 - 2.0 * cos))


def clamp_box(x: float, y: float, w: float, h: float, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Round and clip a box to the image; None when nothing of it is left."""
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return x0, y0, x1 - x0, y1 - y0

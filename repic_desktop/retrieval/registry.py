"""Every fact about the suggestion matchers, in one place: ids, labels, the model folders they need (where
the settings keep them, what they must hold, what to download), default thresholds, and how to build one.

The CLI, the GUI, the model manager and the service read these tables; adding a matcher is one entry
here plus its class. Importing this module loads nothing heavy: the factories import dlib, OpenCV,
torch and transformers when a matcher is actually built, and hand it its facts (the matcher modules never
import this one, so there is no import circle).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .base import l2_to_cosine


@dataclass(frozen=True)
class MatcherModel:
    """A downloaded model folder a matcher uses: where the settings keep it and what it must be."""
    use: str                       # `repic model download --use-for` value, key of MATCHER_MODELS
    settings_key: str              # key under Settings.extra["retrieval"]
    label: str
    model_types: tuple[str, ...]   # accepted config.json model_type values
    default_id: str                # the Hugging Face repo suggested for download


# Suggested downloads (licences checked on their model cards):
# - openai/clip-vit-large-patch14-336: MIT; the embedder RePIC's retriever uses.
# - facebook/dinov2-base: Apache-2.0.
# - google/owlv2-base-patch16-ensemble: Apache-2.0; open-vocabulary boxes for person / cat / dog.
CLIP_MODEL = MatcherModel("clip", "clip_dir", "CLIP", ("clip", "clip_vision_model"),
                          "openai/clip-vit-large-patch14-336")
DINO_MODEL = MatcherModel("dinov2", "dino_dir", "DINOv2", ("dinov2",), "facebook/dinov2-base")
DETECTOR_MODEL = MatcherModel("detector", "detector_dir", "OWLv2 detector", ("owlv2",),
                              "google/owlv2-base-patch16-ensemble")
MATCHER_MODELS: dict[str, MatcherModel] = {m.use: m for m in (CLIP_MODEL, DINO_MODEL, DETECTOR_MODEL)}

# dlib's identity rule is L2 < 0.6 between raw descriptors, which are ~1.41 long; on the index's unit
# vectors that is a cosine (retrieval/dlib_faces.py explains the measurements).
DLIB_L2_THRESHOLD = 0.6
DLIB_DESCRIPTOR_NORM = 1.41  # typical length of a dlib face descriptor
# Clustering links faces transitively (single linkage), so one loose pair merges two groups. dlib's own
# face-clustering example uses L2 0.5; at 0.6 the 69 faces of scikit-image's LFW subset (different people,
# low resolution) chained into one cluster of 65, at 0.5 the largest cluster had 4
# (bench/retrieval_bench.py). A person split into two clusters costs one more naming; a merge is wrong.
DLIB_CLUSTER_L2_THRESHOLD = 0.5


@dataclass(frozen=True)
class MatcherInfo:
    id: str                          # stored with every vector and suggestion: never rename one
    label: str                       # what the user sees
    model: MatcherModel | None       # the embedder folder it needs (None: its weights come with pip packages)
    threshold: float                 # cosine similarity at or above which a crop matches a reference
    cluster_threshold: float | None  # similarity linking two unknown faces (None: this matcher does not cluster)
    faithful_with_detector: bool     # with the OWLv2 detector set, this is RePIC's own pipeline
    factory: Callable[[dict[str, Any]], Any]  # retrieval settings -> a Matcher (imports the heavy libraries)


def _dlib_faces(cfg: dict[str, Any]):
    from .dlib_faces import DlibFaceMatcher

    return DlibFaceMatcher(MATCHERS["dlib-faces"])


def _embedding(matcher_id: str) -> Callable[[dict[str, Any]], Any]:
    def build(cfg: dict[str, Any]):
        from .torch_matchers import build_matcher

        info = MATCHERS[matcher_id]
        return build_matcher(info, cfg[info.model.settings_key], detector_dir=cfg.get(DETECTOR_MODEL.settings_key))
    return build


MATCHERS: dict[str, MatcherInfo] = {m.id: m for m in (
    MatcherInfo("dlib-faces", "Faces (offline, dlib)", None,
                threshold=round(l2_to_cosine(DLIB_L2_THRESHOLD / DLIB_DESCRIPTOR_NORM), 3),
                cluster_threshold=round(l2_to_cosine(DLIB_CLUSTER_L2_THRESHOLD / DLIB_DESCRIPTOR_NORM), 3),
                faithful_with_detector=False, factory=_dlib_faces),
    # Starting points, not tuned values: no real CLIP/DINOv2 weights could be measured on the project
    # machine; the user can change them.
    MatcherInfo("clip", "CLIP (RePIC's embedder; downloaded weights)", CLIP_MODEL, threshold=0.80,
                cluster_threshold=None, faithful_with_detector=True, factory=_embedding("clip")),
    MatcherInfo("dinov2", "DINOv2 (downloaded weights)", DINO_MODEL, threshold=0.60,
                cluster_threshold=None, faithful_with_detector=False, factory=_embedding("dinov2")),
)}
DEFAULT_MATCHER = "dlib-faces"
FACE_MATCHER = "dlib-faces"  # the matcher whose unknown faces are clustered


"""Matchers on downloaded weights: CLIP (RePIC's embedder) or DINOv2, with an OWLv2 detector.

RePIC detects with YOLO-World and embeds each crop with CLIP ViT-L/14-336. YOLO-World (ultralytics) is
AGPL-3.0 and needs a git-installed CLIP, so the open-vocabulary detector here is OWLv2 from
transformers (Apache-2.0). Without a configured detector the crops are the whole image plus dlib's
face boxes: useful, but not RePIC's pipeline, and labelled as such (`faithful = False`).

Loading rules, as for the captioner: local folders only, safetensors only, never remote code. torch is
imported here and nowhere in core/. Thresholds for real CLIP/DINOv2 weights are starting points, not
tuned values (no real weights could be measured on the project machine): the user can change them.
"""
from __future__ import annotations

import hashlib
import os
import threading
from typing import TYPE_CHECKING

import numpy as np

from ..core.cpu_threads import apply_cpu_thread_policy
from .base import Crop, MatcherUnavailable, clamp_box

if TYPE_CHECKING:  # the registry builds these and hands them their facts; they never import it
    from .registry import MatcherInfo, MatcherModel

DETECTOR_QUERIES = {"person": "a photo of a person", "cat": "a photo of a cat", "dog": "a photo of a dog"}
DETECTOR_THRESHOLD = 0.1  # RePIC's YOLO-World confidence
MAX_DETECTIONS = 8
FACE_MARGIN = 0.25  # detector-less path: context around a dlib face box before embedding
BATCH = 8


def folder_fingerprint(folder: str) -> str:
    """Which weights these are, without hashing gigabytes: config bytes plus each weight file's size and
    modification time."""
    h = hashlib.sha1()
    for name in sorted(os.listdir(folder)):
        p = os.path.join(folder, name)
        if name.endswith((".json", ".txt")):
            with open(p, "rb") as f:
                h.update(name.encode() + f.read())
        elif name.endswith(".safetensors"):
            st = os.stat(p)
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def _load_error(what: str, folder: str, exc: Exception) -> MatcherUnavailable:
    return MatcherUnavailable(f"cannot load {what} from {folder}: {exc}")


class Embedder:
    """Image -> one vector: CLIP's projected image embedding, or DINOv2's CLS token (after its layer norm)."""

    def __init__(self, role: MatcherModel, folder: str):
        import torch
        from transformers import AutoConfig, AutoImageProcessor

        kind = role.use
        self.kind, self.folder = kind, folder
        self._torch = torch
        apply_cpu_thread_policy()  # these run on the CPU: the same one-core-free policy as captioning
        kw = dict(local_files_only=True, use_safetensors=True, trust_remote_code=False)
        try:
            config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
            if config.model_type not in role.model_types:
                raise MatcherUnavailable(f"{folder} holds a {config.model_type!r} model, not {role.label}")
            if config.model_type == "clip":
                from transformers import CLIPModel as cls
            elif config.model_type == "clip_vision_model":
                from transformers import CLIPVisionModelWithProjection as cls
            else:
                from transformers import Dinov2Model as cls
            self.model = cls.from_pretrained(folder, **kw).eval()
            self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        except MatcherUnavailable:
            raise
        except Exception as exc:  # a broken or partial download: say so instead of a traceback
            raise _load_error(kind, folder, exc) from exc

    def embed(self, images: list) -> np.ndarray:
        torch = self._torch
        out = []
        for i in range(0, len(images), BATCH):
            batch = [im.convert("RGB") for im in images[i:i + BATCH]]
            inputs = self.processor(images=batch, return_tensors="pt")
            with torch.inference_mode():
                if self.kind == "dinov2":
                    res = self.model(pixel_values=inputs["pixel_values"]).pooler_output
                elif hasattr(self.model, "get_image_features"):
                    res = self.model.get_image_features(pixel_values=inputs["pixel_values"])
                    # transformers 5 returns an output object whose pooler_output is the projected
                    # embedding; 4.x returned the tensor itself.
                    res = res if isinstance(res, torch.Tensor) else res.pooler_output
                else:
                    res = self.model(pixel_values=inputs["pixel_values"]).image_embeds
            out.append(res.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


class OwlDetector:
    """OWLv2 boxes for person / cat / dog, RePIC's confidence, duplicates removed (OWL has no NMS)."""

    def __init__(self, folder: str, threshold: float = DETECTOR_THRESHOLD):
        import torch
        from transformers import Owlv2ForObjectDetection, Owlv2Processor

        self._torch = torch
        self.threshold = threshold
        apply_cpu_thread_policy()  # these run on the CPU: the same one-core-free policy as captioning
        try:
            self.model = Owlv2ForObjectDetection.from_pretrained(
                folder, local_files_only=True, use_safetensors=True, trust_remote_code=False).eval()
            self.processor = Owlv2Processor.from_pretrained(folder, local_files_only=True)
        except Exception as exc:
            raise _load_error("the OWLv2 detector", folder, exc) from exc
        self.kinds = list(DETECTOR_QUERIES)
        self.fingerprint = "owlv2:" + folder_fingerprint(folder) + f"@{threshold}"

    def detect(self, image) -> list[tuple[tuple[int, int, int, int], str, float]]:
        torch = self._torch
        w, h = image.size
        # Queries padded to the text model's length, as OWL's own processor config does.
        n = self.model.config.text_config.max_position_embeddings
        inputs = self.processor(text=[[DETECTOR_QUERIES[k] for k in self.kinds]], images=image.convert("RGB"),
                                return_tensors="pt", padding="max_length", truncation=True, max_length=n)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        side = max(w, h)  # OWLv2 pads to a square: boxes come back in the padded frame
        res = self.processor.image_processor.post_process_object_detection(outputs, threshold=self.threshold,
                                                           target_sizes=torch.tensor([[side, side]]))[0]
        boxes = res["boxes"].float().cpu().numpy()
        scores = res["scores"].float().cpu().numpy()
        labels = res["labels"].cpu().numpy()
        keep = _nms(boxes, scores, 0.5)[:MAX_DETECTIONS]
        out = []
        for i in keep:
            x0, y0, x1, y1 = boxes[i]
            box = clamp_box(x0, y0, x1 - x0, y1 - y0, w, h)
            if box is not None:
                out.append((box, self.kinds[int(labels[i])], float(scores[i])))
        return out


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        rest = []
        for j in order:
            xx0, yy0 = max(boxes[i][0], boxes[j][0]), max(boxes[i][1], boxes[j][1])
            xx1, yy1 = min(boxes[i][2], boxes[j][2]), min(boxes[i][3], boxes[j][3])
            inter = max(0.0, xx1 - xx0) * max(0.0, yy1 - yy0)
            union = ((boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])
                     + (boxes[j][2] - boxes[j][0]) * (boxes[j][3] - boxes[j][1]) - inter)
            if union <= 0 or inter / union < iou:
                rest.append(j)
        order = rest
    return keep


class _DlibBoxes:
    """Face boxes only (HOG, no landmarks or embedding) for the detector-less path."""

    def __init__(self):
        try:
            import dlib
        except ImportError as exc:
            raise MatcherUnavailable(f"dlib is not installed: {exc}") from None
        self._detector = dlib.get_frontal_face_detector()
        self._lock = threading.Lock()

    def detect(self, image) -> list[tuple[tuple[int, int, int, int], float]]:
        from .dlib_faces import HOG_MIN_SCORE, HOG_UPSAMPLE

        arr = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
        with self._lock:
            rects, scores, _ = self._detector.run(arr, HOG_UPSAMPLE, 0.0)
        h, w = arr.shape[:2]
        out = []
        for r, s in zip(rects, scores):
            if s < HOG_MIN_SCORE:
                continue
            mx, my = r.width() * FACE_MARGIN, r.height() * FACE_MARGIN
            box = clamp_box(r.left() - mx, r.top() - my, r.width() + 2 * mx, r.height() + 2 * my, w, h)
            if box is not None:
                out.append((box, float(s)))
        return out


class EmbeddingMatcher:
    """Detector (OWLv2, or whole image + dlib faces) then an image embedder on every crop."""

    cluster_threshold = None  # unknown-face clusters come from the dlib matcher
    max_side = 1024

    def __init__(self, matcher_id: str, name: str, embedder: Embedder, detector: OwlDetector | None = None,
                 *, threshold: float, faithful_with_detector: bool = False):
        self.id, self.name, self.embedder, self.detector = matcher_id, name, embedder, detector
        self.threshold = threshold
        self.faithful = detector is not None and faithful_with_detector
        self._faces = None if detector is not None else _DlibBoxes()
        self._lock = threading.Lock()  # one forward pass at a time: torch already uses every core
        det = detector.fingerprint if detector is not None else "whole+dlibfaces"
        self.fingerprint = f"{embedder.kind}:{folder_fingerprint(embedder.folder)}|{det}"

    def _boxes(self, image) -> list[tuple[tuple[int, int, int, int], str, float]]:
        if self.detector is not None:
            return self.detector.detect(image)
        w, h = image.size
        return [((0, 0, w, h), "image", 1.0)] + [(b, "face", s) for b, s in self._faces.detect(image)]

    def crops(self, image) -> list[Crop]:
        with self._lock:
            boxes = self._boxes(image)
            if not boxes:
                return []
            pics = [image.crop((x, y, x + w, y + h)) for (x, y, w, h), _, _ in boxes]
            vecs = self.embedder.embed(pics)
        return [Crop(b, kind, score, v) for (b, kind, score), v in zip(boxes, vecs)]

    def reference_crop(self, image, box):
        """RePIC embeds each reference image whole; a drawn box narrows it to that region."""
        w, h = image.size
        b = box or (0, 0, w, h)
        with self._lock:
            v = self.embedder.embed([image.crop((b[0], b[1], b[0] + b[2], b[1] + b[3]))])[0]
        return Crop(tuple(b), "object" if box else "image", 1.0, v)


def build_matcher(info: MatcherInfo, folder: str, *, detector_dir: str | None = None,
                  threshold: float | None = None) -> EmbeddingMatcher:
    """The registry's embedding matcher `info` on the weights in `folder` (plus the OWLv2 detector)."""
    if info.model is None:
        raise MatcherUnavailable(f"{info.label} is not an embedding matcher")
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise MatcherUnavailable(f"{info.label} needs torch and transformers: {exc}") from None
    embedder = Embedder(info.model, folder)
    detector = OwlDetector(detector_dir) if detector_dir else None
    return EmbeddingMatcher(info.id, info.label, embedder, detector,
                            threshold=info.threshold if threshold is None else threshold,
                            faithful_with_detector=info.faithful_with_detector)

"""The default offline matcher: dlib faces (HOG detector, 5-point alignment, 128-d ResNet) plus
OpenCV's cat-face cascade as a weak "there is a cat" hint.

Choices (measured in shared/reference/retrieval.md §2):
- HOG with upsample 1 finds faces down to ~40 px; its false positives score below ~0.56 and true faces
  above ~0.8, so detections under 0.6 are dropped. The CNN detector is 5-7 s a photo on CPU: not used.
- Only the 5-point landmark model is loaded. The 68-point model was trained on iBUG 300-W, whose
  licence excludes commercial use; it is never opened.
- dlib's identity rule is L2 < 0.6 between raw descriptors. The descriptors are not unit length (1.37-1.46
  measured on the shipped faces), so on the index's unit vectors the same rule is cosine >= ~0.91
  (1 - (0.6/1.41)^2/2). Augmented copies of one face scored >= 0.988, the two shipped people 0.904.
- The model folder is found without importing face_recognition_models: its __init__ imports
  pkg_resources, which current setuptools no longer ships.
- The cat cascade finds a box but no identity, and misses often (it missed scikit-image's close-up
  cat); its crops carry no vector and only ever produce weak hints.
"""
from __future__ import annotations

import importlib.util
import os
import threading
from typing import TYPE_CHECKING

import numpy as np

from .base import Crop, MatcherUnavailable, clamp_box

if TYPE_CHECKING:  # the registry builds this matcher and hands it its facts; it never imports the registry
    from .registry import MatcherInfo

HOG_MIN_SCORE = 0.6
HOG_UPSAMPLE = 1
MODEL_FILES = {"resnet": "dlib_face_recognition_resnet_model_v1.dat",
               "landmarks5": "shape_predictor_5_face_landmarks.dat"}


def models_dir() -> str:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MatcherUnavailable("the face models are not installed (pip install face_recognition_models)")
    return os.path.join(list(spec.submodule_search_locations)[0], "models")


class DlibFaceMatcher:
    max_side = 1024
    faithful = False

    def __init__(self, info: MatcherInfo, *, cats: bool = True, min_score: float = HOG_MIN_SCORE,
                 upsample: int = HOG_UPSAMPLE):
        self.id, self.name = info.id, info.label
        self.threshold, self.cluster_threshold = info.threshold, info.cluster_threshold
        try:
            import dlib
        except ImportError as exc:
            raise MatcherUnavailable(f"dlib is not installed (pip install dlib-bin): {exc}") from None
        mdir = models_dir()
        paths = {k: os.path.join(mdir, f) for k, f in MODEL_FILES.items()}
        missing = [p for p in paths.values() if not os.path.isfile(p)]
        if missing:
            raise MatcherUnavailable(f"face model file missing: {missing[0]} (reinstall face_recognition_models)")
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._landmarks = dlib.shape_predictor(paths["landmarks5"])
        self._resnet = dlib.face_recognition_model_v1(paths["resnet"])
        self.min_score, self.upsample = min_score, upsample
        self._cat = None
        if cats:
            try:
                import cv2

                path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalcatface_extended.xml")
                cascade = cv2.CascadeClassifier(path)
                self._cat = None if cascade.empty() else cascade
                self._cv2 = cv2
            except (ImportError, AttributeError):  # OpenCV 5 ships no cascades: faces still work
                self._cat = None
        # dlib's models are not documented as thread-safe; one matcher may serve the GUI's workers.
        self._lock = threading.Lock()
        self.fingerprint = (f"dlib{dlib.__version__}:hog-up{upsample}-min{min_score}:sp5:resnet-v1"
                            + (":catcascade-ext" if self._cat is not None else ""))

    # --------------------------------------------------------------------------------------- faces
    def _detect(self, arr: np.ndarray) -> list[tuple[object, float]]:
        rects, scores, _ = self._detector.run(arr, self.upsample, 0.0)
        return [(r, float(s)) for r, s in zip(rects, scores) if s >= self.min_score]

    def _embed(self, arr: np.ndarray, rect) -> np.ndarray:
        shape = self._landmarks(arr, rect)
        return np.asarray(self._resnet.compute_face_descriptor(arr, shape), dtype=np.float32)

    @staticmethod
    def _array(image) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))

    def _face_crop(self, arr, rect, score) -> Crop | None:
        h, w = arr.shape[:2]
        box = clamp_box(rect.left(), rect.top(), rect.width(), rect.height(), w, h)
        if box is None:
            return None
        return Crop(box, "face", score, self._embed(arr, rect))

    def crops(self, image) -> list[Crop]:
        arr = self._array(image)
        with self._lock:
            out = [c for r, s in self._detect(arr) if (c := self._face_crop(arr, r, s)) is not None]
            out.sort(key=lambda c: -c.score)
            out += self._cats(arr)
        return out

    def reference_crop(self, image, box: tuple[int, int, int, int] | None) -> Crop | None:
        """The reference's face: inside `box` (the user's drawn face region) or, without a box, the
        best-scoring face of the photo. A drawn box too tight for the detector is used as the face
        rectangle itself, since the landmark model only needs a rough face box."""
        arr = self._array(image)
        dlib = self._dlib
        with self._lock:
            if box is None:
                found = self._detect(arr)
                if not found:
                    return None
                rect, score = max(found, key=lambda rs: rs[1])
                return self._face_crop(arr, rect, score)
            x, y, bw, bh = box
            h, w = arr.shape[:2]
            mx, my = bw // 2, bh // 2  # the detector needs context around the face
            x0, y0, x1, y1 = max(0, x - mx), max(0, y - my), min(w, x + bw + mx), min(h, y + bh + my)
            sub = np.ascontiguousarray(arr[y0:y1, x0:x1])
            found = self._detect(sub)
            inside = [(r, s) for r, s in found if x <= r.center().x + x0 <= x + bw and y <= r.center().y + y0 <= y + bh]
            if inside:
                r, s = max(inside, key=lambda rs: rs[1])
                rect = dlib.rectangle(r.left() + x0, r.top() + y0, r.right() + x0, r.bottom() + y0)
                return self._face_crop(arr, rect, s)
            rect = dlib.rectangle(x, y, x + bw - 1, y + bh - 1)
            return self._face_crop(arr, rect, 0.0)

    # --------------------------------------------------------------------------------------- cats
    def _cats(self, arr: np.ndarray) -> list[Crop]:
        if self._cat is None:
            return []
        cv2 = self._cv2
        grey = cv2.equalizeHist(cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY))
        found = self._cat.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(48, 48))
        h, w = arr.shape[:2]
        out = []
        for (x, y, bw, bh) in (found if len(found) else []):
            box = clamp_box(x, y, bw, bh, w, h)
            if box is not None:
                out.append(Crop(box, "cat", 0.0, None))
        return out

"""The torch matchers' plumbing on tiny random models built in fixtures: CLIP and DINOv2 embeddings
(detector-less path: whole image + dlib face boxes), and the OWLv2 detector path. Random weights say
nothing about accuracy; these tests check loading rules, shapes, boxes and that identical pixels match."""
from __future__ import annotations

import numpy as np
import pytest

from repic_desktop.core.library import Library
from repic_desktop.core.scanner import scan_folder
from repic_desktop.core.settings import Settings
from repic_desktop.retrieval import service
from repic_desktop.retrieval.registry import MATCHERS


def _settings(**kw):
    return Settings(extra={"retrieval": {k: str(v) for k, v in kw.items()}})


def test_tiny_clip_detectorless_crops_and_embeddings_match_the_model(tiny_clip_dir, real_faces):
    import torch
    from transformers import CLIPImageProcessor, CLIPModel

    listed = {m["id"]: m for m in service.available_matchers(_settings(clip_dir=tiny_clip_dir))}
    assert listed["clip"]["ready"] and not listed["clip"]["faithful"] and "not RePIC-faithful" in listed["clip"]["note"]
    m = service.get_matcher("clip", _settings(clip_dir=tiny_clip_dir))
    assert m.id == "clip" and not m.faithful and m.cluster_threshold is None
    img = real_faces["eileen"]
    crops = m.crops(img)
    assert [c.kind for c in crops] == ["image", "face"]
    assert crops[0].box == (0, 0, img.width, img.height)
    x, y, w, h = crops[1].box
    assert 0 <= x and 0 <= y and x + w <= img.width and y + h <= img.height
    assert all(c.vector.shape == (16,) for c in crops)
    # The vector is CLIP's projected image embedding (transformers 5: get_image_features().pooler_output).
    model = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    proc = CLIPImageProcessor.from_pretrained(tiny_clip_dir)
    with torch.inference_mode():
        direct = model.get_image_features(**proc(images=[img], return_tensors="pt")).pooler_output[0].numpy()
    np.testing.assert_allclose(crops[0].vector, direct, rtol=1e-4, atol=1e-5)
    ref = m.reference_crop(img, None)
    np.testing.assert_allclose(ref.vector, direct, rtol=1e-4, atol=1e-5)
    assert m.reference_crop(img, (10, 10, 50, 60)).box == (10, 10, 50, 60)


def test_tiny_clip_and_dino_through_the_service(tmp_path, tiny_clip_dir, tiny_dino_dir, real_faces):
    album = tmp_path / "album"
    album.mkdir()
    real_faces["eileen"].save(album / "a_ref_eileen.png")
    real_faces["grace"].save(album / "a_ref_grace.png")
    real_faces["eileen"].save(album / "b_again.png")
    real_faces["eileen"].transpose(0).save(album / "b_mirrored.png")  # different pixels
    lib = Library(tmp_path / "lib.sqlite")
    scan_folder(lib, str(album))
    ids = {p.filename: p.id for p in lib.photos.list()}
    lib.concepts.add("Eileen", "person")
    lib.concepts.add_ref("Eileen", photo_id=ids["a_ref_eileen.png"])
    lib.concepts.add("Grace", "person")
    lib.concepts.add_ref("Grace", photo_id=ids["a_ref_grace.png"])
    s = _settings(clip_dir=tiny_clip_dir, dino_dir=tiny_dino_dir)
    for mid, dim in (("clip", 16), ("dinov2", 32)):
        m = service.get_matcher(mid, s)
        summary = service.run_index_job(lib, m, threshold=-1.0, top_k=2)
        assert summary["indexed"] == 4 and summary["references"] == {"computed": 2}
        # This matcher's own rows: suggestions_for() keeps one row per concept across matchers, so after
        # the second matcher its Eileen may hide behind the first one's equally good Eileen.
        got = [x for x in lib.retrieval.suggestion_rows(ids["b_again.png"]) if x["matcher_id"] == mid]
        # Identical pixels give the identical whole-image vector: Eileen first, with similarity 1.
        assert got[0]["concept_name"] == "Eileen" and got[0]["score"] == pytest.approx(1.0, abs=1e-5)
        assert got[0]["kind"] == "image" and got[0]["box"].as_list() == [0, 0, 480, 480]
        assert all(r["dim"] == dim for r in lib.retrieval.ref_embeddings(mid))
    best = service.suggestions_for(lib, ids["b_again.png"])
    assert [x.concept_name for x in best] == ["Eileen", "Grace"]  # one per concept, the best evidence first
    assert best[0].score <= 1.0 and best[0].matcher_id == "clip"  # a tie at 1.0: the earlier row stands
    # Each matcher keeps its own cache; re-running with the same K and threshold changes nothing, and
    # another threshold re-matches the stored crops without running the model.
    clip = service.get_matcher("clip", s)
    assert service.run_index_job(lib, clip, threshold=-1.0, top_k=2)["skipped"] == 4
    again = service.run_index_job(lib, clip)
    assert again["skipped"] == 0 and again["indexed"] == 4 and again["references"] == {"cached": 2}
    lib.close()


def test_safetensors_only_and_wrong_model_type_are_refused(tmp_path, tiny_dino_dir):
    from repic_desktop.retrieval.base import MatcherUnavailable
    from repic_desktop.retrieval.torch_matchers import build_matcher

    with pytest.raises(MatcherUnavailable, match="not CLIP"):
        build_matcher(MATCHERS["clip"], str(tiny_dino_dir))
    with pytest.raises(MatcherUnavailable, match="safetensors"):
        service.get_matcher("dinov2", _settings(dino_dir=tmp_path))  # not even a config.json
    assert "no config.json" in {m["id"]: m for m in service.available_matchers(_settings(dino_dir=tmp_path))}[
        "dinov2"]["why"]


def test_tiny_owlv2_detector_path(tiny_owl_dir, tiny_clip_dir, real_faces):
    import torch

    from repic_desktop.retrieval.torch_matchers import OwlDetector, build_matcher

    det = OwlDetector(str(tiny_owl_dir), threshold=0.0)
    img = real_faces["grace"]
    inputs = det.processor(text=[["a photo of a cat"]], images=img, return_tensors="pt", padding="max_length",
                           truncation=True, max_length=16)
    with torch.inference_mode():
        raw = det.model(**inputs)
    assert torch.isfinite(raw.logits).any()  # the queries were not all masked as padding
    boxes = det.detect(img)  # random weights: boxes may be degenerate and dropped, but valid if kept
    for (x, y, w, h), kind, score in boxes:
        assert kind in ("person", "cat", "dog") and w > 0 and h > 0 and x + w <= img.width and y + h <= img.height
    m = build_matcher(MATCHERS["clip"], str(tiny_clip_dir), detector_dir=str(tiny_owl_dir))
    assert m.faithful and "owlv2:" in m.fingerprint
    assert all(c.kind in ("person", "cat", "dog") and c.vector.shape == (16,) for c in m.crops(img))

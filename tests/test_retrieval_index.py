"""Retrieval logic without any model: the exact index on synthetic vectors, and the service (suggestions,
confirm/reject, reference cache, durable index job, unknown-face clusters) with a fake matcher whose
"faces" are flat-coloured halves of a photo and whose embedding is that colour."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from repic_desktop.core.library import Box, Library, LibraryError
from repic_desktop.core.scanner import scan_folder
from repic_desktop.retrieval import references, service
from repic_desktop.retrieval.base import Crop, Matcher, cosine_to_l2, from_blob, l2_to_cosine, normalize, to_blob
from repic_desktop.retrieval.index import ExactIndex, cluster_faces

GREY = (128, 128, 128)
BLACK = (0, 0, 0)


# ----------------------------------------------------------------------------------------------- index

def test_exact_index_takes_the_best_reference_per_concept_and_the_union_over_crops():
    refs = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    idx = ExactIndex(refs * 3.0, [7, 7, 5, 9])  # unnormalised input: the index normalises
    scores = idx.concept_scores(np.array([[0.6, 0.8, 0.0]]))
    assert list(idx.concepts) == [5, 7, 9]
    np.testing.assert_allclose(scores[0], [0.8, 1.0, 0.0], atol=1e-6)  # concept 7: max over its two refs
    ranked, per_crop = idx.match(np.array([[0, 0, 1.0], [1.0, 0.1, 0]]), top_k=None, threshold=0.5)
    assert [(m.concept_id, m.crop) for m in ranked] == [(9, 0), (7, 1)]
    assert per_crop[0].concept_id == 9 and per_crop[1].concept_id == 7
    ranked, per_crop = idx.match(np.array([[0, 0, 1.0], [1.0, 0.1, 0]]), top_k=1, threshold=0.5)
    assert [m.concept_id for m in ranked] == [9]
    ranked, per_crop = idx.match(np.array([[1.0, -1.0, -1.0]]), top_k=5, threshold=0.9)
    assert ranked == [] and per_crop == [None]


def test_index_order_equals_repics_l2_order_on_random_vectors():
    rng = np.random.default_rng(1)
    refs = rng.normal(size=(200, 32)).astype(np.float32)
    concepts = rng.integers(0, 40, size=200)
    q = rng.normal(size=(1, 32)).astype(np.float32)
    idx = ExactIndex(refs, concepts)
    ranked, _ = idx.match(q, top_k=10, threshold=-1.0)
    # RePIC: faiss IndexFlatL2 over unit vectors, then unique concepts in distance order.
    d = np.linalg.norm(normalize(refs) - normalize(q), axis=1)
    expected = list(dict.fromkeys(concepts[np.argsort(d, kind="stable")].tolist()))[:10]
    assert [m.concept_id for m in ranked] == expected
    assert [round(cosine_to_l2(m.score), 5) for m in ranked] == sorted(round(cosine_to_l2(m.score), 5) for m in ranked)
    assert l2_to_cosine(cosine_to_l2(0.3)) == pytest.approx(0.3)


def test_blob_round_trip_and_dimension_check():
    v = np.arange(5, dtype=np.float32) / 3
    np.testing.assert_array_equal(from_blob(to_blob(v), 5), v)
    with pytest.raises(ValueError):
        from_blob(to_blob(v), 4)


def test_cluster_faces_is_single_linkage_and_deterministic():
    v = np.array([[1, 0], [0.99, 0.14], [0, 1], [0.14, 0.99], [-1, 0], [0.97, 0.28]], np.float32)
    labels = cluster_faces(v, 0.95)
    assert labels == [0, 0, 2, 2, 4, 0]  # 5 joins 0 through 1 (chain), label = smallest member index
    assert cluster_faces(v, 0.95) == labels and cluster_faces(v[:0], 0.9) == []


# ----------------------------------------------------------------------------------------------- service

class FakeMatcher:
    """Each non-grey half of an image is a "face" whose vector is its colour; a black half is a cat."""
    id = "fake"
    name = "Fake"
    fingerprint = "fake-v1"
    threshold = 0.9
    cluster_threshold = 0.9
    max_side = 256
    faithful = False

    def __init__(self):
        self.calls = {"crops": 0, "reference": 0}

    def _halves(self, image):
        w, h = image.size
        arr = np.asarray(image.convert("RGB"), dtype=np.float32)
        for x0, x1 in ((0, w // 2), (w // 2, w)):
            colour = arr[h // 2, (x0 + x1) // 2]
            if np.allclose(colour, GREY, atol=3):
                continue
            if np.allclose(colour, BLACK, atol=3):
                yield (x0, 0, x1 - x0, h), "cat", None
            else:
                yield (x0, 0, x1 - x0, h), "face", colour / 255.0 + 0.01

    def crops(self, image):
        self.calls["crops"] += 1
        return [Crop(b, k, 1.0, v) for b, k, v in self._halves(image)]

    def reference_crop(self, image, box):
        self.calls["reference"] += 1
        if box is not None:
            image = image.crop((box[0], box[1], box[0] + box[2], box[1] + box[3]))
        found = [c for c in self.crops(image) if c.vector is not None]
        self.calls["crops"] -= 1
        if not found:
            return None
        c = found[0]
        if box is not None:
            c = Crop((c.box[0] + box[0], c.box[1] + box[1], c.box[2], c.box[3]), c.kind, c.score, c.vector)
        return c


RED, RED2, GREEN, BLUE, YELLOW = (220, 20, 20), (210, 30, 25), (20, 200, 30), (20, 30, 220), (220, 220, 20)


def _photo(path, left, right=GREY, size=(80, 40)):
    im = Image.new("RGB", size, GREY)
    im.paste(Image.new("RGB", (size[0] // 2, size[1]), left), (0, 0))
    im.paste(Image.new("RGB", (size[0] - size[0] // 2, size[1]), right), (size[0] // 2, 0))
    im.save(path)


@pytest.fixture
def album(tmp_path):
    d = tmp_path / "album"
    d.mkdir()
    _photo(d / "ref_red.png", RED)
    _photo(d / "ref_green.png", GREEN)
    _photo(d / "p1_red.png", RED2)  # the red person again
    _photo(d / "p2_red_green.png", RED2, GREEN)  # both
    _photo(d / "p3_stranger.png", BLUE)  # nobody known
    _photo(d / "p4_stranger.png", (25, 35, 215))  # the same stranger
    _photo(d / "p5_cat.png", BLACK)  # a cat, unidentified
    lib = Library(tmp_path / "lib.sqlite")
    scan_folder(lib, str(d))
    ids = {p.filename: p.id for p in lib.photos.list()}
    lib.concepts.add("Red", "person")
    lib.concepts.add_ref("Red", photo_id=ids["ref_red.png"])
    lib.concepts.add("Green", "person")
    lib.concepts.add_ref("Green", photo_id=ids["ref_green.png"])
    lib.concepts.add("Mitzi", "pet", "A grey tabby cat.")
    lib.concepts.add("Rex", "pet", "A big brown dog.")
    yield lib, ids, d
    lib.close()


def names(sugs):
    return [s.concept_name for s in sugs]


def test_fake_matcher_satisfies_the_protocol():
    assert isinstance(FakeMatcher(), Matcher)


def test_index_job_suggests_the_right_concepts_with_boxes(album):
    lib, ids, _ = album
    m = FakeMatcher()
    seen = []
    summary = service.run_index_job(lib, m, progress=lambda done, total, pid: seen.append((done, total)))
    assert summary["indexed"] == 7 and summary["failed"] == 0 and not summary["cancelled"]
    assert seen[-1] == (7, 7)
    assert names(service.suggestions_for(lib, ids["p1_red.png"])) == ["Red"]
    both = service.suggestions_for(lib, ids["p2_red_green.png"])
    assert sorted(names(both)) == ["Green", "Red"]
    red = next(s for s in both if s.concept_name == "Red")
    assert red.box == Box(0, 0, 40, 40) and red.kind == "face" and not red.weak and red.status == "pending"
    assert next(s for s in both if s.concept_name == "Green").box == Box(40, 0, 40, 40)
    assert service.suggestions_for(lib, ids["p3_stranger.png"]) == []
    # The cat: a weak hint naming the library's cats (not the dog), never an identity.
    cat = service.suggestions_for(lib, ids["p5_cat.png"])
    assert names(cat) == ["Mitzi"] and cat[0].weak and cat[0].score == service.WEAK_SCORE
    assert "weak hint" in cat[0].as_dict()["note"]
    # Nothing is decided: no tags yet.
    assert lib.concepts.of_photo(ids["p1_red.png"]) == []
    # A second run re-detects nothing.
    before = m.calls["crops"]
    again = service.run_index_job(lib, m)
    assert again["skipped"] == 7 and again["indexed"] == 0 and m.calls["crops"] == before


def test_confirm_tags_with_box_and_reject_sticks_across_reindex(album):
    lib, ids, _ = album
    m = FakeMatcher()
    service.run_index_job(lib, m)
    p2 = ids["p2_red_green.png"]
    red = next(s for s in service.suggestions_for(lib, p2) if s.concept_name == "Red")
    green = next(s for s in service.suggestions_for(lib, p2) if s.concept_name == "Green")
    service.confirm_suggestion(lib, red.id)
    service.reject_suggestion(lib, green.id)
    assert [c.name for c in lib.concepts.of_photo(p2)] == ["Red"]
    regions = lib.concepts.regions(p2)
    assert [(r.box, r.source) for r in regions] == [(Box(0, 0, 40, 40), "suggestion")]
    assert {s.concept_name: s.status for s in service.suggestions_for(lib, p2, include_rejected=True)} == \
        {"Red": "confirmed", "Green": "rejected"}
    assert names(service.suggestions_for(lib, p2)) == ["Red"]
    # References change -> every photo is re-matched; the rejection and the confirmation survive.
    lib.concepts.add_ref("Green", photo_id=ids["p4_stranger.png"])
    summary = service.run_index_job(lib, m)
    assert summary["indexed"] == 7 - summary["skipped"]  # re-matched, not skipped
    after = {s.concept_name: s.status for s in service.suggestions_for(lib, p2, include_rejected=True)}
    assert after == {"Red": "confirmed", "Green": "rejected"}
    assert len(lib.concepts.regions(p2)) == 1


def test_reference_cache_is_reused_and_recomputed_when_a_reference_changes(album):
    lib, ids, d = album
    m = FakeMatcher()
    service.run_index_job(lib, m)
    assert m.calls["reference"] == 2
    service.run_index_job(lib, m)
    assert m.calls["reference"] == 2  # cached
    crops_before = m.calls["crops"]
    # The red reference now points at a box in the two-person photo: re-embedded, now it is green.
    ref = lib.concepts.refs("Red")[0]
    lib.concepts.remove_ref(ref.id)
    lib.concepts.add_ref("Red", photo_id=ids["p2_red_green.png"], box=Box(40, 0, 40, 40))
    summary = service.run_index_job(lib, m)
    assert m.calls["reference"] == 3 and summary["references"] == {"cached": 1, "computed": 1}
    assert m.calls["crops"] == crops_before  # photos are only re-matched, not re-detected
    rows = {r["ref_id"]: r for r in lib.retrieval.ref_embeddings("fake")}
    assert len(rows) == 2  # the removed reference's cache row went with it
    assert names(service.suggestions_for(lib, ids["p1_red.png"])) == []  # "Red" now looks green
    # Same file, new pixels: the content hash changes at rescan and the cache follows.
    _photo(d / "ref_green.png", YELLOW)
    scan_folder(lib, str(d))
    service.run_index_job(lib, m)
    assert m.calls["reference"] == 4


def test_index_job_resumes_after_interruption_and_failures_do_not_stop_it(album):
    lib, ids, d = album
    (d / "p3_stranger.png").write_bytes(b"")  # unreadable after import: 0 bytes
    m = FakeMatcher()
    stop_after = {"n": 0}

    def should_stop():
        stop_after["n"] += 1
        return stop_after["n"] > 3

    first = service.run_index_job(lib, m, should_stop=should_stop)
    assert first["cancelled"] and first["remaining"] == 4
    from repic_desktop.core.jobs import JobStore

    job = JobStore(lib).get(first["job_id"])
    assert job.kind == "index" and job.status == "paused"
    assert job.counts == {"done": 2, "failed": 1, "pending": 4}  # photos go by path: the bad one is third
    # A crash mid-photo: the photo in flight is redone, finished ones are not.
    calls = {"n": 0}
    original = m.crops

    def crashing(image):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(image)

    m.crops = crashing
    with pytest.raises(KeyboardInterrupt):
        service.run_index_job(lib, m)
    m.crops = original
    second = JobStore(lib).unfinished("index")[0]
    assert second.id != first["job_id"] and JobStore(lib).get(first["job_id"]).status == "cancelled"
    # p1, p2 skipped (done before), p3 known bad, p4 detected, then the crash on p5.
    assert second.counts == {"done": 3, "failed": 1, "pending": 3}
    detected = m.calls["crops"]
    resumed = service.run_index_job(lib, m, job_id=second.id)  # what the GUI's "resume" does
    assert resumed["job_id"] == second.id and resumed["remaining"] == 0 and resumed["indexed"] == 3
    assert m.calls["crops"] - detected == 3  # the photo in flight and the two after it, nothing else
    assert JobStore(lib).get(second.id).status == "done"
    final = service.run_index_job(lib, m)  # a fresh default run: nothing left to detect
    assert final["indexed"] == 0 and final["skipped"] == 6 and m.calls["crops"] - detected == 3
    bad = ids["p3_stranger.png"]
    assert "empty file" in service.index_error(lib, bad, "fake")
    assert final["failed"] + first["failed"] >= 1
    # Every photo got indexed exactly once overall, the bad one with its reason.
    assert lib.retrieval.counts("fake")["indexed"] == 6 and lib.retrieval.counts("fake")["failed"] == 1
    assert names(service.suggestions_for(lib, ids["p1_red.png"])) == ["Red"]


def test_suggest_photo_computes_on_demand_and_reports_unusable_photos(album):
    from repic_desktop.core.images import UnusableImage

    lib, ids, d = album
    m = FakeMatcher()
    got = service.suggest_photo(lib, ids["p2_red_green.png"], m, top_k=1)
    assert names(got) == ["Red"] or names(got) == ["Green"]
    assert len(got) == 1
    got = service.suggest_photo(lib, ids["p2_red_green.png"], m)
    assert sorted(names(got)) == ["Green", "Red"]
    (d / "p1_red.png").write_bytes(b"not an image at all")
    with pytest.raises(UnusableImage):
        service.suggest_photo(lib, ids["p1_red.png"], m)


def test_unknown_faces_cluster_with_stable_ids_and_naming_a_cluster_tags_its_photos(album):
    lib, ids, _ = album
    m = FakeMatcher()
    service.run_index_job(lib, m)
    clusters = service.face_clusters(lib, matcher_id="fake")
    assert [c.size for c in clusters] == [2]  # the blue stranger in p3 and p4; known faces are not "unknown"
    cl = clusters[0]
    assert sorted(f.photo_id for f in cl.members) == sorted([ids["p3_stranger.png"], ids["p4_stranger.png"]])
    assert service.face_clusters(lib, matcher_id="fake")[0].id == cl.id  # stable on recompute
    # Rejecting a match makes that face unknown again: it forms its own cluster; old ids stay.
    p1 = ids["p1_red.png"]
    service.reject_suggestion(lib, service.suggestions_for(lib, p1)[0].id)
    clusters2 = service.face_clusters(lib, matcher_id="fake")
    assert [c.size for c in clusters2] == [2, 1] and clusters2[0].id == cl.id
    concept = service.name_cluster(lib, cl.id, "Bluey")
    assert concept.kind == "person"
    assert len(lib.concepts.refs("Bluey")) == 1  # one of the two faces; the other photo is to learn from
    for pid in (ids["p3_stranger.png"], ids["p4_stranger.png"]):
        assert [c.name for c in lib.concepts.of_photo(pid)] == ["Bluey"]
        assert [r.box for r in lib.concepts.regions(pid)] == [Box(0, 0, 40, 40)]
    assert [c.size for c in service.face_clusters(lib, matcher_id="fake")] == [1]
    with pytest.raises(LibraryError):
        service.name_cluster(lib, cl.id, "Again")
    # The new concept's references are used by the next run.
    _ = service.run_index_job(lib, m)
    assert lib.retrieval.counts("fake")["references"] == 3


def test_auto_concepts_order_and_options(album):
    lib, ids, _ = album
    m = FakeMatcher()
    service.run_index_job(lib, m)
    p2 = ids["p2_red_green.png"]
    assert service.auto_concepts(lib, p2) == []  # nothing confirmed
    both = service.auto_concepts(lib, p2, include_suggestions=True)
    scores = {s.concept_name: s.score for s in service.suggestions_for(lib, p2)}
    assert both == sorted(scores, key=lambda n: -scores[n])  # closest first (RePIC's distance order)
    assert service.auto_concepts(lib, p2, include_suggestions=True, top_k=1) == both[:1]
    assert service.auto_concepts(lib, p2, include_suggestions=True, threshold=1.01) == []
    # A hand tag comes first; a confirmed suggestion stays even when top_k is smaller.
    lib.concepts.tag(p2, "Mitzi")
    green = next(s for s in service.suggestions_for(lib, p2) if s.concept_name == "Green")
    service.confirm_suggestion(lib, green.id)
    assert service.auto_concepts(lib, p2) == ["Mitzi", "Green"]
    assert service.auto_concepts(lib, p2, include_suggestions=True, top_k=1) == ["Mitzi", "Green"]
    assert service.auto_concepts(lib, p2, include_suggestions=True, top_k=3) == ["Mitzi", "Green", "Red"]
    # Weak cat hints name no one: never used for captions.
    assert service.auto_concepts(lib, ids["p5_cat.png"], include_suggestions=True) == []


def test_matcher_registry_without_models(tmp_path):
    from repic_desktop.core.settings import Settings
    from repic_desktop.retrieval.base import MatcherUnavailable

    listed = {m["id"]: m for m in service.available_matchers(Settings())}
    assert listed["dlib-faces"]["ready"] and not listed["clip"]["ready"] and "CLIP" in listed["clip"]["why"]
    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"x")
    s = Settings(extra={"retrieval": {"clip_dir": str(folder)}})
    assert "safetensors" in {m["id"]: m for m in service.available_matchers(s)}["clip"]["why"]
    with pytest.raises(MatcherUnavailable, match="safetensors"):
        service.get_matcher("clip", s)
    with pytest.raises(MatcherUnavailable, match="unknown matcher"):
        service.get_matcher("yolo", s)


def test_schema_v4_tables_and_cascade(album):
    lib, ids, _ = album
    assert lib.schema_version == 5
    service.run_index_job(lib, FakeMatcher())
    lib.concepts.remove("Red")
    assert all(r["concept_id"] != 1 for r in lib.retrieval.ref_embeddings("fake"))
    counts = lib.retrieval.counts("fake")
    assert counts["references"] == 1
    assert json.dumps(service.suggestions_for(lib, ids["p2_red_green.png"])[0].as_dict())


def test_caption_auto_uses_confirmed_concepts_and_optionally_suggestions(album, demo_model_dir, capsys):
    from repic_desktop.cli import main

    lib, ids, _ = album
    service.run_index_job(lib, FakeMatcher())
    p1, p2 = ids["p1_red.png"], ids["p2_red_green.png"]
    green = next(s for s in service.suggestions_for(lib, p2) if s.concept_name == "Green")
    service.confirm_suggestion(lib, green.id)
    base = ["--library", str(lib.path), "caption", str(p1), str(p2), "--model", str(demo_model_dir),
            "--max-new-tokens", "4", "--max-pixels", str(56 * 56), "--json", "--force"]
    capsys.readouterr()

    def concepts(*extra):
        assert main([*base, *extra]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        return {r["photo"]: r["provenance"]["concepts"] for r in rows}

    assert concepts("--auto") == {p1: [], p2: ["Green"]}
    # Closest match first (RePIC's retriever order), not library order (Red was added before Green).
    assert service.auto_concepts(lib, p2, include_suggestions=True) == ["Green", "Red"]
    assert concepts("--auto-include-suggestions") == {p1: ["Red"], p2: ["Green", "Red"]}
    assert main([*base, "--auto", "--concept", "Red"]) == 1


def test_suggestion_ids_survive_a_rematch_and_missing_photos_are_reported(album):
    from repic_desktop.core.images import UnusableImage

    lib, ids, d = album
    m = FakeMatcher()
    p2 = ids["p2_red_green.png"]
    first = {s.concept_name: s.id for s in service.suggest_photo(lib, p2, m)}
    lib.concepts.add_ref("Green", photo_id=ids["p4_stranger.png"])  # references change: a re-match
    again = {s.concept_name: s.id for s in service.suggest_photo(lib, p2, m)}
    assert again == first  # a window holding these ids can still confirm them
    (d / "p1_red.png").unlink()
    scan_folder(lib, str(d))  # marks it missing
    with pytest.raises(UnusableImage, match="missing"):
        service.suggest_photo(lib, ids["p1_red.png"], m)
    summary = service.run_index_job(lib, m, photo_ids=[ids["p1_red.png"], p2])
    assert summary["failed"] == 1 and "missing" in summary["errors"][ids["p1_red.png"]]
    assert service.index_error(lib, ids["p1_red.png"], "fake") is None  # retried when the file is back


def test_cli_labels_the_cat_hint_as_weak(album, monkeypatch, capsys):
    from repic_desktop.cli import main

    lib, ids, _ = album
    monkeypatch.setattr(service, "get_matcher", lambda matcher_id=None, settings=None: FakeMatcher())
    capsys.readouterr()
    assert main(["--library", str(lib.path), "suggest", str(ids["p5_cat.png"])]) == 0
    out = capsys.readouterr().out
    assert "<Mitzi>  weak hint: a cat was seen at 0,0,40,40, not recognised" in out and "Rex" not in out
    assert main(["--library", str(lib.path), "suggest", str(ids["p5_cat.png"]), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["suggestions"][0]
    assert row["weak"] is True and row["note"].startswith("weak hint")


def test_a_reference_whose_file_is_gone_is_retried_when_it_is_back(album):
    lib, ids, d = album
    m = FakeMatcher()
    saved = (d / "ref_green.png").read_bytes()
    (d / "ref_green.png").unlink()
    summary = service.run_index_job(lib, m)
    assert summary["references"] == {"computed": 1, "failed": 1}
    assert service.suggestions_for(lib, ids["p2_red_green.png"])[0].concept_name == "Red"
    (d / "ref_green.png").write_bytes(saved)  # back, byte for byte: same content hash, same signature
    assert "no longer exists" in service.index_error(lib, ids["ref_green.png"], "fake")
    summary = service.run_index_job(lib, m)
    assert summary["references"] == {"cached": 1, "computed": 1}
    assert sorted(names(service.suggestions_for(lib, ids["p2_red_green.png"]))) == ["Green", "Red"]
    assert service.index_error(lib, ids["ref_green.png"], "fake") is None  # the photo itself was retried too
    assert names(service.suggestions_for(lib, ids["ref_green.png"])) == ["Green"]


def test_a_matcher_error_on_one_photo_is_reported_and_the_job_goes_on(album):
    from repic_desktop.core.images import UnusableImage

    lib, ids, _ = album
    m = FakeMatcher()
    original = m.crops

    def flaky(image):
        if image.size == (80, 40) and np.asarray(image)[20, 20].tolist() == list(BLACK):
            raise RuntimeError("model exploded")
        return original(image)

    m.crops = flaky
    summary = service.run_index_job(lib, m)
    cat = ids["p5_cat.png"]
    assert summary["failed"] == 1 and summary["indexed"] == 6
    assert summary["errors"][cat] == "could not analyse it: RuntimeError: model exploded"
    with pytest.raises(UnusableImage, match="model exploded"):
        service.suggest_photo(lib, cat, m)
    m.crops = original  # fixed: the next run retries it (no failure was cached)
    again = service.run_index_job(lib, m)
    assert again["indexed"] == 1 and again["skipped"] == 6


# ----------------------------------------------------------------------------------------------- undo, ignore

def _status(lib, photo_id):
    return {s.concept_name: s.status for s in service.suggestions_for(lib, photo_id, include_rejected=True)}


def test_reset_a_confirmation_removes_only_what_it_added(album):
    lib, ids, _ = album
    service.run_index_job(lib, FakeMatcher())
    p1, p2 = ids["p1_red.png"], ids["p2_red_green.png"]
    red = service.find_suggestion(lib, p2, "Red")
    service.confirm_suggestion(lib, red.id)
    assert [r.box for r in lib.concepts.regions(p2)] == [Box(0, 0, 40, 40)]
    undone = service.reset_suggestion(lib, red.id)
    assert undone == {"was": "confirmed", "untagged": True, "regions_removed": 1}
    assert lib.concepts.of_photo(p2) == [] and lib.concepts.regions(p2) == []
    assert _status(lib, p2) == {"Red": "pending", "Green": "pending"}
    # confirmed again (redo): the same row, tagged again
    service.confirm_suggestion(lib, red.id)
    assert [c.name for c in lib.concepts.of_photo(p2)] == ["Red"] and len(lib.concepts.regions(p2)) == 1
    # The user had tagged Red by hand before confirming (no box): the confirmation added only the region.
    lib.concepts.tag(p1, "Red")
    s1 = service.find_suggestion(lib, p1, "Red")
    service.confirm_suggestion(lib, s1.id)
    assert [(r.box, r.source) for r in lib.concepts.regions(p1)] == [(Box(0, 0, 40, 40), "suggestion")]
    assert service.reset_suggestion(lib, s1.id) == {"was": "confirmed", "untagged": False, "regions_removed": 1}
    assert [c.name for c in lib.concepts.of_photo(p1)] == ["Red"] and lib.concepts.regions(p1) == []
    # A hand-drawn region of the same box, then a confirmation (which adds nothing): reset keeps both.
    lib.concepts.untag(p1, "Red")
    lib.concepts.tag(p1, "Red", box=Box(0, 0, 40, 40))
    service.confirm_suggestion(lib, s1.id)
    service.reset_suggestion(lib, s1.id)
    assert [c.name for c in lib.concepts.of_photo(p1)] == ["Red"]
    assert [(r.box, r.source) for r in lib.concepts.regions(p1)] == [(Box(0, 0, 40, 40), "manual")]


def test_reset_a_legacy_confirmation_uses_source_and_box(album):
    """Confirmed before schema v5 (nothing recorded): a suggestion-made tag with this box goes, others stay."""
    lib, ids, _ = album
    service.run_index_job(lib, FakeMatcher())
    p2 = ids["p2_red_green.png"]
    red, green = service.find_suggestion(lib, p2, "Red"), service.find_suggestion(lib, p2, "Green")
    service.confirm_suggestion(lib, red.id)
    lib.concepts.tag(p2, "Green", box=Box(40, 0, 40, 40))             # by hand
    service.confirm_suggestion(lib, green.id)
    with lib.transaction():
        lib.conn.execute("UPDATE suggestions SET confirm_tag = NULL, confirm_region_id = NULL")
    assert service.reset_suggestion(lib, green.id)["untagged"] is False
    assert service.reset_suggestion(lib, red.id)["untagged"] is True
    assert [c.name for c in lib.concepts.of_photo(p2)] == ["Green"]
    assert [(r.box, r.source) for r in lib.concepts.regions(p2)] == [(Box(40, 0, 40, 40), "manual")]


def test_reset_a_rejection_makes_it_pending_and_suggested_again(album):
    lib, ids, _ = album
    m = FakeMatcher()
    service.run_index_job(lib, m)
    p2 = ids["p2_red_green.png"]
    green = service.find_suggestion(lib, p2, "Green")
    service.reject_suggestion(lib, green.id)
    assert "Green" not in names(service.suggestions_for(lib, p2))
    assert service.reset_suggestion(lib, green.id) == {"was": "rejected", "untagged": False, "regions_removed": 0}
    assert _status(lib, p2) == {"Red": "pending", "Green": "pending"} and lib.concepts.of_photo(p2) == []
    # a re-match keeps it (pending, same id), where a rejection would have kept it away
    lib.concepts.add_ref("Green", photo_id=ids["p4_stranger.png"])
    service.run_index_job(lib, m)
    assert service.find_suggestion(lib, p2, "Green").id == green.id


def test_ignored_faces_never_cluster_or_suggest_and_survive_reindex(album):
    lib, ids, d = album
    m = FakeMatcher()
    service.run_index_job(lib, m)
    cl = service.face_clusters(lib, matcher_id="fake")
    assert [c.size for c in cl] == [2]
    assert service.ignore_cluster(lib, cl[0].id) == 2
    assert service.face_clusters(lib, matcher_id="fake") == []
    assert {f.photo_id for f in service.ignored_faces(lib, matcher_id="fake")} == \
        {ids["p3_stranger.png"], ids["p4_stranger.png"]}
    # A face that matches someone: dismissed as a false detection, its suggestion goes and stays away.
    p1 = ids["p1_red.png"]
    crop = lib.retrieval.photo_crops(p1, "fake")[0]
    assert service.ignore_faces(lib, [crop["id"]]) == 1
    assert service.suggestions_for(lib, p1) == []
    # References change (every photo re-matched), then p1's file changes (re-detected: new crop rows).
    lib.concepts.add("Blue", "person")
    lib.concepts.add_ref("Blue", photo_id=ids["p3_stranger.png"])
    _photo(d / "p1_red.png", RED2, GREY, size=(80, 41))
    scan_folder(lib, str(d))
    before = m.calls["crops"]
    service.run_index_job(lib, m)
    assert m.calls["crops"] > before                                   # p1 was detected again
    now = lib.retrieval.photo_crops(p1, "fake")[0]
    assert now["id"] != crop["id"] and now["ignored"]
    assert service.suggestions_for(lib, p1) == []
    assert service.suggestions_for(lib, ids["p4_stranger.png"]) == []   # ignored: not even as Blue
    assert service.face_clusters(lib, matcher_id="fake") == []
    # Un-ignoring brings the strangers back as one cluster.
    stranger_ids = [f.crop_id for f in service.ignored_faces(lib, matcher_id="fake") if f.photo_id != p1]
    assert service.unignore_faces(lib, stranger_ids) == 2
    assert [c.size for c in service.face_clusters(lib, matcher_id="fake")] == [2]
    with pytest.raises(LibraryError, match="empty|no face cluster"):
        service.ignore_cluster(lib, 999)


def test_ignoring_the_evidence_moves_a_suggestion_to_another_face(album):
    lib, ids, d = album
    _photo(d / "p6_two_reds.png", RED2, (215, 25, 20))
    scan_folder(lib, str(d))
    pid = next(p.id for p in lib.photos.list() if p.filename == "p6_two_reds.png")
    service.run_index_job(lib, FakeMatcher())
    s = service.find_suggestion(lib, pid, "Red")
    evidence = s.box
    crop = next(c for c in lib.retrieval.photo_crops(pid, "fake") if c["box"] == evidence)
    service.ignore_faces(lib, [crop["id"]])
    moved = service.find_suggestion(lib, pid, "Red")
    assert moved.id == s.id and moved.box != evidence and moved.status == "pending"


def test_cli_reset_and_faces_ignore(album, monkeypatch, capsys):
    from repic_desktop.cli import main

    lib, ids, _ = album
    monkeypatch.setattr(service, "get_matcher", lambda matcher_id=None, settings=None: FakeMatcher())
    base = ["--library", str(lib.path)]
    p2 = str(ids["p2_red_green.png"])
    assert main([*base, "index", "--quiet", "--matcher", "fake"]) == 0
    assert main([*base, "suggest", "--confirm", p2, "Red"]) == 0
    assert main([*base, "suggest", "--reject", p2, "Green"]) == 0
    capsys.readouterr()
    assert main([*base, "suggest", "--reset", p2, "Red", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "pending" and out["was"] == "confirmed" and out["untagged"] and out["concepts"] == []
    assert main([*base, "suggest", "--reset", p2, "Green"]) == 0
    assert "pending suggestion again (was rejected)" in capsys.readouterr().out
    assert _status(lib, int(p2)) == {"Red": "pending", "Green": "pending"}
    assert main([*base, "suggest", "--reset", p2, "Green"]) == 1          # already pending
    assert "nothing to reset" in capsys.readouterr().err
    # faces: the CLI works on the default face matcher; make the fake one's crops look like its
    with lib.transaction():
        lib.conn.execute("UPDATE photo_crops SET matcher_id = 'dlib-faces'")
    assert main([*base, "faces", "clusters", "--json"]) == 0
    clusters = json.loads(capsys.readouterr().out)
    assert [c["size"] for c in clusters] == [2]
    assert main([*base, "faces", "ignore", str(clusters[0]["id"])]) == 0
    assert "2 face(s) will not be suggested" in capsys.readouterr().out
    assert main([*base, "faces", "clusters"]) == 0 and "no unknown faces" in capsys.readouterr().out
    assert main([*base, "faces", "ignored", "--json"]) == 0
    ignored = json.loads(capsys.readouterr().out)
    assert len(ignored) == 2 and all(f["path"].endswith("stranger.png") for f in ignored)
    assert main([*base, "faces", "unignore", str(ignored[0]["crop_id"])]) == 0
    assert "1 face(s) are unknown faces again" in capsys.readouterr().out
    assert main([*base, "faces", "clusters", "--json"]) == 0
    assert [c["size"] for c in json.loads(capsys.readouterr().out)] == [1]
    assert main([*base, "faces", "ignore", "--face", str(ignored[0]["crop_id"])]) == 0
    assert main([*base, "faces", "unignore", "--all"]) == 0
    assert "2 face(s) are unknown faces again" in capsys.readouterr().out
    assert main([*base, "faces", "ignore"]) == 1


def test_confirming_again_after_the_tag_was_removed_tags_again_and_undo_removes_it(album):
    lib, ids, _ = album
    service.run_index_job(lib, FakeMatcher())
    p1 = ids["p1_red.png"]
    s = service.find_suggestion(lib, p1, "Red")
    service.confirm_suggestion(lib, s.id)
    lib.concepts.untag(p1, "Red")                     # removed by hand; the suggestion still says confirmed
    service.confirm_suggestion(lib, s.id)
    assert [c.name for c in lib.concepts.of_photo(p1)] == ["Red"] and len(lib.concepts.regions(p1)) == 1
    service.confirm_suggestion(lib, s.id)          # a third time changes nothing
    assert len(lib.concepts.regions(p1)) == 1
    assert service.reset_suggestion(lib, s.id)["untagged"] and lib.concepts.regions(p1) == []


# ----------------------------------------------------------------------------------------------- review fixes

def test_a_concept_or_photo_removed_during_an_index_job_does_not_kill_it(album):
    lib, ids, _ = album
    other = Library(lib.path)  # the GUI's connection, removing things while the job runs
    m = FakeMatcher()
    original = m.crops
    gone = ids["p4_stranger.png"]

    def crops(image):
        # Green goes just before p2 (red + green) is stored, p4 is deleted while it is being detected.
        if m.calls["crops"] == 1:
            other.concepts.remove("Green")
        if m.calls["crops"] == 3:
            other.conn.execute("DELETE FROM photos WHERE id = ?", (gone,))
        return original(image)

    m.crops = crops
    summary = service.run_index_job(lib, m)
    other.close()
    assert summary["failed"] == 0 and not summary["cancelled"]
    assert names(service.suggestions_for(lib, ids["p2_red_green.png"])) == ["Red"]
    assert lib.retrieval.index_state(gone, "fake") is None
    # A foreign-key failure of another kind is one photo's failure, retried by the next run.
    import sqlite3

    m.crops = original
    lib.concepts.add_ref("Red", photo_id=ids["p5_cat.png"])  # references change: everything is re-matched
    real = lib.retrieval.store_photo
    calls = {"n": 0}

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.IntegrityError("FOREIGN KEY constraint failed")
        return real(*a, **kw)

    lib.retrieval.store_photo = flaky
    summary = service.run_index_job(lib, m)
    assert summary["failed"] == 1 and "FOREIGN KEY" in next(iter(summary["errors"].values()))
    again = service.run_index_job(lib, m)
    assert again["failed"] == 0 and again["indexed"] == 1


def test_threshold_and_top_k_are_part_of_the_stored_match(album):
    lib, ids, _ = album
    m = FakeMatcher()
    p2 = ids["p2_red_green.png"]
    service.run_index_job(lib, m)
    assert sorted(names(service.suggestions_for(lib, p2))) == ["Green", "Red"]
    before = m.calls["crops"]
    strict = service.run_index_job(lib, m, top_k=1)
    assert len(service.suggestions_for(lib, p2)) == 1 and strict["skipped"] == 0
    assert m.calls["crops"] == before  # re-matched, not re-detected
    # A loose one-photo suggest is undone by the next default run.
    loose = service.suggest_photo(lib, ids["p3_stranger.png"], m, threshold=0.3)
    assert loose and service.run_index_job(lib, m)["skipped"] < 7
    assert service.suggestions_for(lib, ids["p3_stranger.png"]) == []
    assert sorted(names(service.suggestions_for(lib, p2))) == ["Green", "Red"]
    assert m.calls["crops"] == before


def test_settings_threshold_and_top_k_are_the_defaults(album, isolated_env):
    from repic_desktop.core.settings import Settings

    lib, ids, _ = album
    m = FakeMatcher()
    p2, p3 = ids["p2_red_green.png"], ids["p3_stranger.png"]
    s = Settings()
    s.extra["retrieval"] = {"top_k": 1, "threshold": 0.3, "default_matcher": "fake"}
    s.save()
    service.run_index_job(lib, m)
    assert len(service.suggestions_for(lib, p2)) == 1
    assert service.suggestions_for(lib, p3) != []  # the loose threshold applies to the default matcher
    assert len(service.suggest_photo(lib, p2, m)) == 1
    assert len(service.suggest_photo(lib, p2, m, top_k=5)) == 2  # the caller's word wins
    s.extra["retrieval"] = {"top_k": 0, "threshold": 0.3, "default_matcher": "dlib-faces"}
    s.save()
    service.run_index_job(lib, m)  # 0 = the matcher's own K; the threshold is another matcher's
    assert len(service.suggestions_for(lib, p2)) == 2 and service.suggestions_for(lib, p3) == []


def test_merge_moves_suggestions_embeddings_matches_and_clusters(album):
    lib, ids, _ = album
    m = FakeMatcher()
    service.run_index_job(lib, m)
    p1, p2 = ids["p1_red.png"], ids["p2_red_green.png"]
    service.reject_suggestion(lib, service.find_suggestion(lib, p1, "Red").id)
    service.confirm_suggestion(lib, service.find_suggestion(lib, p2, "Red").id)
    cl = service.face_clusters(lib, matcher_id="fake")[0]
    service.name_cluster(lib, cl.id, "Blue")
    lib.concepts.add("Rouge", "person")
    lib.concepts.add("Bleu", "person")
    refs_before = m.calls["reference"]
    rouge = lib.concepts.merge("Red", "Rouge")
    bleu = lib.concepts.merge("Blue", "Bleu")
    assert lib.retrieval.face_cluster_concept(cl.id) == bleu.id
    assert {r["concept_id"] for r in lib.retrieval.ref_embeddings("fake")} >= {rouge.id}
    assert lib.retrieval.photo_crops(p1, "fake")[0]["match_concept_id"] == rouge.id
    st = {s.concept_name: s.status for s in service.suggestions_for(lib, p1, include_rejected=True)}
    assert st == {"Rouge": "rejected"}
    assert lib.retrieval.index_state(p1, "fake")["refs_sig"] is None  # re-matched by the next run
    service.run_index_job(lib, m)
    assert m.calls["reference"] - refs_before == 1  # only Bleu's new reference (from the cluster)
    assert {s.concept_name: s.status for s in service.suggestions_for(lib, p1, include_rejected=True)} == \
        {"Rouge": "rejected"}
    assert service.find_suggestion(lib, p2, "Rouge").status == "confirmed"
    # The strangers stay in Bleu's cluster; only p1's face (its match was rejected) is unknown.
    assert [[f.photo_id for f in c.members] for c in service.face_clusters(lib, matcher_id="fake")] == [[p1]]


def test_merge_keeps_the_users_answer_over_a_pending_suggestion(album):
    lib, ids, _ = album
    m = FakeMatcher()
    lib.concepts.add("Rouge", "person")
    lib.concepts.add_ref("Rouge", photo_id=ids["ref_red.png"])
    service.run_index_job(lib, m)
    p1 = ids["p1_red.png"]
    assert sorted(names(service.suggestions_for(lib, p1))) == ["Red", "Rouge"]
    service.reject_suggestion(lib, service.find_suggestion(lib, p1, "Red").id)
    lib.concepts.merge("Red", "Rouge")
    rows = lib.retrieval.suggestion_rows(p1, include_rejected=True)
    assert [(r["concept_name"], r["status"]) for r in rows] == [("Rouge", "rejected")]


def test_unignoring_a_face_brings_its_suggestion_back_at_the_next_index(album):
    lib, ids, _ = album
    m = FakeMatcher()
    service.run_index_job(lib, m)
    p1 = ids["p1_red.png"]
    crop = lib.retrieval.photo_crops(p1, "fake")[0]
    service.ignore_faces(lib, [crop["id"]])
    assert service.suggestions_for(lib, p1) == []
    service.unignore_faces(lib, [crop["id"]])
    service.run_index_job(lib, m)
    assert names(service.suggestions_for(lib, p1)) == ["Red"]


def test_an_ignore_survives_an_unreadable_file_and_a_detection_that_misses_it(album):
    lib, ids, d = album
    m = FakeMatcher()
    service.run_index_job(lib, m)
    p1 = ids["p1_red.png"]
    service.ignore_faces(lib, [lib.retrieval.photo_crops(p1, "fake")[0]["id"]])
    h = lib.photos.get(p1).content_hash
    lib.retrieval.fail_photo(p1, "fake", content_hash=h, model_sig=m.fingerprint, error="cannot read it: busy")
    m.fingerprint = "fake-v2"  # re-detected
    service.run_index_job(lib, m)
    assert service.suggestions_for(lib, p1) == [] and lib.retrieval.photo_crops(p1, "fake")[0]["ignored"]
    # New pixels with no face where the ignored one was, then the face comes back.
    _photo(d / "p1_red.png", GREY, RED2)
    scan_folder(lib, str(d))
    service.run_index_job(lib, m)
    assert [f.box for f in service.ignored_faces(lib, matcher_id="fake") if f.photo_id == p1] == [Box(0, 0, 40, 40)]
    _photo(d / "p1_red.png", RED2, GREY, size=(80, 41))
    scan_folder(lib, str(d))
    service.run_index_job(lib, m)
    assert service.suggestions_for(lib, p1) == []
    assert len([c for c in lib.retrieval.photo_crops(p1, "fake") if c["ignored"]]) == 1  # no duplicate record
    # Un-ignoring a record of other pixels ends it; it never comes back as a face of these pixels.
    _photo(d / "p1_red.png", GREY, RED2)
    scan_folder(lib, str(d))
    service.run_index_job(lib, m)
    stale = [c["id"] for c in lib.retrieval.photo_crops(p1, "fake") if c["ignored"]]
    assert len(stale) == 1 and service.unignore_faces(lib, stale) == 1
    assert all(c["box"] == Box(40, 0, 40, 40) for c in lib.retrieval.photo_crops(p1, "fake"))


def test_a_face_that_now_matches_someone_leaves_its_old_cluster(album):
    lib, ids, _ = album
    m = FakeMatcher()
    service.run_index_job(lib, m)
    old = service.face_clusters(lib, matcher_id="fake")[0].id
    lib.concepts.add("Blue", "person")
    lib.concepts.add_ref("Blue", photo_id=ids["p3_stranger.png"])
    service.run_index_job(lib, m)
    assert service.face_clusters(lib, matcher_id="fake") == []
    members = []
    try:
        members = lib.retrieval.face_cluster_members(old)
    except LibraryError:
        pass
    assert members == []
    with pytest.raises(LibraryError):
        service.name_cluster(lib, old, "Someone")
    assert lib.concepts.of_photo(ids["p4_stranger.png"]) == []


def test_cli_validates_top_k_and_threshold_and_resume_checks_the_matcher(album, monkeypatch, capsys):
    from repic_desktop.cli import main

    lib, ids, _ = album
    monkeypatch.setattr(service, "get_matcher", lambda matcher_id=None, settings=None: FakeMatcher())
    base = ["--library", str(lib.path)]
    for bad in (["--top-k", "0"], ["--threshold", "1.5"], ["--threshold", "-0.1"]):
        assert main([*base, "index", "--quiet", "--matcher", "fake", *bad]) != 0
        err = capsys.readouterr().err
        assert "Traceback" not in err and ("top-k" in err or "threshold" in err)
    m = FakeMatcher()
    first = service.run_index_job(lib, m, should_stop=lambda: True)
    other = FakeMatcher()
    other.id = "other"
    with pytest.raises(LibraryError, match="fake"):
        service.run_index_job(lib, other, job_id=first["job_id"])


def test_references_are_decoded_at_a_bounded_size_and_boxes_scale_back(album, monkeypatch):
    lib, ids, _ = album
    lib.concepts.add("Verde", "person")
    lib.concepts.add_ref("Verde", photo_id=ids["p2_red_green.png"], box=Box(40, 0, 40, 40))
    ref = lib.concepts.refs("Verde")[0]
    m = FakeMatcher()
    full = references._embed_reference(lib, ref, m)
    seen = []
    real = references.open_oriented
    monkeypatch.setattr(references, "REF_MAX_SIDE", 40)  # the 80x40 photo decodes at 40x20
    monkeypatch.setattr(references, "open_oriented", lambda path, max_side=None: seen.append(max_side) or
                        real(path, max_side=max_side))
    small = references._embed_reference(lib, ref, m)
    assert seen == [40]
    assert small.box == full.box and small.kind == "face"  # back in the displayed full-size frame
    np.testing.assert_allclose(small.vector, full.vector, atol=0.02)


def test_status_reports_what_awaits_review_and_the_adapters(album, capsys, isolated_env):
    from repic_desktop.cli import main

    lib, ids, _ = album
    service.run_index_job(lib, FakeMatcher())
    n, photos = lib.retrieval.pending_suggestion_count()
    pending = [s for pid in ids.values() for s in service.suggestions_for(lib, pid)]
    assert (n, photos) == (len(pending), len({s.photo_id for s in pending})) and n > 0
    lib.adapters.register("fam", isolated_env / "fam", base_model="b", manifest={"flagged": True})
    capsys.readouterr()
    assert main(["--library", str(lib.path), "status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["suggestions"]["pending"] == n and data["suggestions"]["default_matcher"] == "dlib-faces"
    assert data["adapters"] == [{"name": "fam", "path": str(isolated_env / "fam"), "flagged": True,
                                 "active": False}]
    assert main(["--library", str(lib.path), "status"]) == 0
    out = capsys.readouterr().out
    assert f"{n} suggestion(s) on {photos} photo(s) to review" in out and "adapters:  fam [flagged]" in out


def test_a_named_face_group_gives_a_few_references_and_leaves_the_rest_to_learn_from():
    """Issue #14: every face of a named group (up to 10) became a reference, and references are never
    training photos. One reference per 4 faces, 1 to 3, fewer when the person already has some."""
    got = {n: service.cluster_reference_count(n) for n in (1, 2, 4, 7, 8, 12, 40)}
    assert got == {1: 1, 2: 1, 4: 1, 7: 1, 8: 2, 12: 3, 40: 3}
    assert service.cluster_reference_count(40, existing=2) == 1
    assert service.cluster_reference_count(4, existing=1) == 0

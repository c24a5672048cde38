"""Durable caption jobs: atomic commits, idempotent completion, cancel + resume, per-photo failures."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from PIL import Image

from repic_desktop.captioning.jobs import job_params, run_caption_job
from repic_desktop.core.jobs import JobStore
from repic_desktop.captioning.prompt import parse_tags
from repic_desktop.core.library import LibraryError


@dataclass
class FakeResult:
    key: int
    caption: str | None
    error: str | None
    tags: object
    seconds: float = 0.01
    prompt_tokens: int = 10
    new_tokens: int = 5


class FakeEngine:
    """Stands in for CaptionEngine (the real one is tested in test_engine.py and test_cli_caption.py)."""

    def __init__(self, fail_keys=()):
        self.fail_keys = set(fail_keys)
        self.seen = []
        self.known_names = ()

    def caption(self, requests, *, progress=None, cancel=None, on_result=None):
        for i, r in enumerate(requests):
            if cancel and cancel():
                break
            self.seen.append(r.key)
            if r.key in self.fail_keys:
                res = FakeResult(r.key, None, "cannot read the photo", None)
            else:
                text = f"{' and '.join(c.tag for c in r.prompt.concepts)} at the beach ({r.key})."
                res = FakeResult(r.key, text, None, parse_tags(text, r.prompt.expected_names(), self.known_names))
            on_result(res)
            if progress:
                progress(i + 1, len(requests), 0.0, r.key)


MODEL = {"source": "demo", "revision": None, "adapter": None, "quantization": "none"}


@pytest.fixture
def setup(library, tmp_path):
    ids = []
    for i in range(5):
        p = tmp_path / f"p{i}.jpg"
        Image.new("RGB", (40, 30), (i * 40, 0, 0)).save(p)
        ids.append(library.photos.add(p, size=1, mtime_ns=1, content_hash=f"h{i}", format="JPEG", width=40, height=30))
    ref = tmp_path / "ref.jpg"
    Image.new("RGB", (30, 30), (0, 0, 200)).save(ref)
    rid = library.photos.add(ref, size=1, mtime_ns=1, content_hash="ref", format="JPEG", width=30, height=30)
    library.concepts.add("Anya", "person", "Pink hair.")
    library.concepts.add_ref("Anya", photo_id=rid)
    for pid in ids:
        library.concepts.tag(pid, "Anya")
    return ids


def params(**kw):
    base = dict(model=MODEL, concepts=None, request="Give a personalized caption of this image.",
                system_preset="repic", max_refs=1, batch_size=2, max_pixels=802816, max_new_tokens=64)
    base.update(kw)
    return job_params(**base)


def test_job_items_keep_order_and_completion_is_idempotent(library, setup):
    store = JobStore(library)
    job = store.create([setup[2], setup[0], setup[2], setup[1]], params())
    assert store.pending_photo_ids(job.id) == [setup[2], setup[0], setup[1]]
    assert store.unfinished()[0].id == job.id and job.counts == {"pending": 3}
    c1 = store.complete_item(job.id, setup[0], "<Anya> waves.", tags=["Anya"], concept_set=["Anya"],
                             provenance={"x": 1})
    c2 = store.complete_item(job.id, setup[0], "<Anya> waves again.", tags=["Anya"], concept_set=["Anya"],
                             provenance={"x": 2})
    assert c1 == c2 and len(library.captions.history(setup[0])) == 1
    store.fail_item(job.id, setup[0], "late failure")  # never un-does a done item
    store.fail_item(job.id, setup[1], "broken")
    assert store.get(job.id).counts == {"done": 1, "failed": 1, "pending": 1}
    assert store.retry_failed(job.id) == 1 and store.pending_photo_ids(job.id) == [setup[2], setup[1]]
    with pytest.raises(LibraryError):
        store.complete_item(job.id, 99999, "x", tags=[], concept_set=[], provenance={})


def test_run_commits_each_caption_with_provenance(library, setup):
    store = JobStore(library)
    job = store.create(setup, params())
    outcomes = []
    summary = run_caption_job(library, job.id, FakeEngine(), model_provenance=MODEL, on_outcome=outcomes.append)
    assert (summary.done, summary.failed, summary.remaining) == (5, 0, 0)
    assert store.get(job.id).status == "done"
    cap = library.captions.current(setup[0])
    assert cap.text.startswith("<Anya> at the beach") and cap.tags == ["Anya"] and cap.job_id == job.id
    prov = cap.provenance
    assert prov["request"] == "Give a personalized caption of this image." and prov["system_preset"] == "repic"
    assert prov["concepts"] == ["Anya"] and prov["concept_ids"] == [library.concepts.get("Anya").id]
    assert prov["quantization"] == "none" and prov["seconds"] == 0.01 and len(prov["prompt_hash"]) == 16
    assert [o.photo_id for o in outcomes] == setup and outcomes[0].tags_found == ["Anya"]


def test_cancel_then_resume_captions_every_photo_exactly_once(library, setup):
    store = JobStore(library)
    job = store.create(setup, params())
    calls = {"n": 0}

    def cancel_after_two():
        calls["n"] += 1
        return calls["n"] > 2

    first = run_caption_job(library, job.id, FakeEngine(), model_provenance=MODEL, cancel=cancel_after_two)
    assert first.done == 2 and first.remaining == 3 and store.get(job.id).status == "paused"
    assert store.unfinished()[0].id == job.id
    engine = FakeEngine()
    second = run_caption_job(library, job.id, engine, model_provenance=MODEL)
    assert engine.seen == setup[2:]  # done photos are not sent again
    assert second.done == 3 and store.get(job.id).status == "done"
    assert all(len(library.captions.history(pid)) == 1 for pid in setup)


def test_bad_photos_fail_with_reasons_and_the_rest_go_on(library, setup, tmp_path):
    store = JobStore(library)
    library.concepts.add("Ghost", "other")  # no reference photo
    library.concepts.tag(setup[1], "Ghost")
    library.photos.mark_missing([setup[2]])
    job = store.create(setup, params())
    summary = run_caption_job(library, job.id, FakeEngine(fail_keys={setup[3]}), model_provenance=MODEL)
    items = {i["photo_id"]: i for i in store.items(job.id)}
    assert "no reference photo" in items[setup[1]]["error"]
    assert "missing" in items[setup[2]]["error"]
    assert items[setup[3]]["error"] == "cannot read the photo"
    assert (summary.done, summary.failed) == (2, 3)
    assert store.get(job.id).status == "done"  # finished: failures are reported, not retried forever


def test_explicit_concepts_apply_to_every_photo(library, setup):
    library.concepts.add("Bond", "pet")
    library.concepts.add_ref("Bond", photo_id=setup[4])
    store = JobStore(library)
    job = store.create(setup[:2], params(concepts=["Bond", "Anya"]))
    run_caption_job(library, job.id, FakeEngine(), model_provenance=MODEL)
    assert library.captions.current(setup[0]).concept_set == ["Anya", "Bond"]  # library order

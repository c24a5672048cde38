"""trainer/dataset.py on a small generated library: tasks, counts, boxes in the model's frame,
true negatives, the held-out split and the too-little-data messages."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from repic_desktop.captioning.prompt import fetch_image, render
from repic_desktop.core.library import Library
from tests.helpers.trainer_library import make_library
from trainer.dataset import (
    DatasetError,
    box_to_model_frame,
    build_dataset,
    known_concepts,
    model_frame,
    to_hf_dataset,
)

@pytest.fixture(scope="module")
def lib_path(tmp_path_factory):
    return make_library(tmp_path_factory.mktemp("trainlib"))


@pytest.fixture
def lib(lib_path):
    with Library(lib_path) as lib:
        yield lib


def _stem(lib, pid):
    return Path(lib.photos.get(pid).path).stem


def test_known_concepts_sources(lib):
    known = {_stem(lib, pid): {lib.concepts.get(c).name for c in ids} for pid, ids in known_concepts(lib).items()}
    assert known["c3"] == {"Cleo"}          # accepted caption counts
    assert "u1" not in known                # a draft caption does not
    assert "d1" not in known                # a detector suggestion does not
    assert known["ab1"] == {"Anya", "Bond"}


def test_tasks_counts_and_split(lib):
    ds = build_dataset(lib, seed=7)
    s = ds.summary()
    assert ds.concepts == ["Anya", "Bond", "Cleo"]
    assert s["train"] == len(ds.train) == sum(s["tasks"].values())
    assert all(s["tasks"][t] > 0 for t in ("ict", "oct", "vlt"))
    held = {h.photo_id for h in ds.heldout}
    assert s["heldout"] == len(held) >= 3  # every concept has a held-out photo
    assert {c for h in ds.heldout for c in h.concepts} == {"Anya", "Bond", "Cleo"}
    for smp in ds.train:  # no leakage: held-out photos appear nowhere in training
        assert smp.photo_id not in held
        # references are never queries; unlabelled photos are not even negatives
        assert not _stem(lib, smp.photo_id).startswith(("ref_", "u1", "d1"))
    # multi-concept ICT: both tags, library order, partial-credit method
    multi = [x for x in ds.train if x.method == "yes_no_name_multi"]
    singles = [x for x in ds.train if x.method == "yes_no_name"]
    for x in multi:
        assert x.solution == ["<Anya>", "<Bond>"] and [c.name for c in x.prompt.concepts] == ["Anya", "Bond"]
    for x in singles:
        assert x.solution == f"<{x.concepts[0]}>" and len(x.prompt.concepts) == 1
    # per-concept counts add up from the samples themselves
    for name, counts in s["concepts"].items():
        assert counts["ict"] == sum(1 for x in ds.train if x.task == "ict" and name in x.concepts)
    # seeded: same seed -> same samples, another seed -> another order
    key = lambda d: [(x.task, x.photo_id, x.solution) for x in d.train]  # noqa: E731
    assert key(build_dataset(lib, seed=7)) == key(ds)
    assert key(build_dataset(lib, seed=8)) != key(ds)


def test_oct_negatives_are_negatives(lib):
    ds = build_dataset(lib, seed=3)
    known = known_concepts(lib)
    oct_ = [x for x in ds.train if x.task == "oct"]
    assert {x.solution for x in oct_} == {"yes", "no"}
    for x in oct_:
        cid = lib.concepts.get(x.concepts[0]).id
        assert x.method == "yes_no"
        assert [c.name for c in x.prompt.concepts] == [x.concepts[0]]
        assert x.prompt.request.endswith("with no additional output.")
        if x.solution == "no":
            assert x.photo_id in known and cid not in known[x.photo_id]  # labelled, and not with this concept
        else:
            assert cid in known[x.photo_id]
    for name in ds.concepts:
        mine = [x for x in oct_ if x.concepts == (name,)]
        assert sum(x.solution == "yes" for x in mine) == sum(x.solution == "no" for x in mine)


def test_vlt_boxes_in_model_frame(lib):
    ds = build_dataset(lib, seed=0, heldout_fraction=0.0)
    vlt = {(_stem(lib, x.photo_id), x.concepts[0]): x for x in ds.train if x.task == "vlt"}
    assert set(vlt) == {("a1", "Anya"), ("ab1", "Anya"), ("ab1", "Bond")}
    # a1 is 112x84: fetch_image keeps 112x84 (multiples of 28); with max_pixels 56*56 the processor
    # then shrinks it, and the box must shrink with it.
    assert model_frame(112, 84) == (112, 84)
    assert vlt[("a1", "Anya")].solution == [10, 20, 60, 60]
    small = build_dataset(lib, seed=0, heldout_fraction=0.0, max_pixels=56 * 56)
    box = next(x for x in small.train if x.task == "vlt" and _stem(lib, x.photo_id) == "a1").solution
    w, h = model_frame(112, 84, max_pixels=56 * 56)
    assert (w, h) == (56, 28)  # what the processor really produces for this image (checked below)
    assert box == [5, 7, 30, 20]  # 10*0.5, 20*(28/84), 60*0.5, 60*(28/84)
    assert box == box_to_model_frame([10, 20, 50, 40], 112, 84, max_pixels=56 * 56)
    from transformers import Qwen2VLImageProcessor

    proc = Qwen2VLImageProcessor(size={"shortest_edge": 28 * 28, "longest_edge": 56 * 56})
    img = fetch_image(vlt[("a1", "Anya")].prompt.query)
    t, gh, gw = proc(images=[img], return_tensors="pt")["image_grid_thw"][0].tolist()
    assert (gw * 14, gh * 14) == (w, h)


def test_prompts_are_inference_prompts(lib):
    ds = build_dataset(lib, seed=1)
    ict = next(x for x in ds.train if x.task == "ict")
    text = render(ict.prompt)
    assert "1. Name: <" in text and "This is the query image. " in text
    assert text.count("<|vision_start|>") == len(ict.prompt.images()) == len(ict.prompt.concepts) + 1


def test_hf_dataset_rows(lib):
    ds = build_dataset(lib, seed=1)
    hf = to_hf_dataset(ds.train[:3])
    row = hf[0]
    assert set(row) >= {"prompt", "images", "solution", "accu_reward_method", "task"}
    assert len(row["images"]) == len(ds.train[0].prompt.images())
    assert row["prompt"][0]["role"] == "system"


def test_too_little_data_messages(tmp_path, lib_path):
    with Library(lib_path) as lib:
        with pytest.raises(DatasetError, match=r"add at least 5 photos of <Cleo>"):
            build_dataset(lib, ["Cleo"], min_photos=5)
        ds = build_dataset(lib, min_photos=6)  # only Anya has 6 (a1-a4, ab1, ab2); Bond 5, Cleo 3
        assert ds.concepts == ["Anya"]
        warnings = ds.summary()["warnings"]
        assert any("<Bond> has 5 photos: add at least 6 photos of <Bond>" in w for w in warnings)
        assert any("<Cleo> has 3 photos" in w for w in warnings)
    with Library(tmp_path / "empty.sqlite") as empty:
        with pytest.raises(DatasetError, match="no people or pets"):
            build_dataset(empty)
        empty.concepts.add("Bruno", "pet", "")
        with pytest.raises(DatasetError, match="<Bruno> has no reference photo"):
            build_dataset(empty)


def test_dataset_command_json(lib_path):
    out = subprocess.run([sys.executable, "-m", "trainer", "dataset", "--library", str(lib_path), "--json",
                          "--concepts", "Anya,Bond"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    ev = json.loads(lines[0])
    assert ev["event"] == "dataset" and set(ev["summary"]["concepts"]) == {"Anya", "Bond"}
    assert set(ev["summary"]["tasks"]) == {"ict", "oct", "vlt"}
    bad = subprocess.run([sys.executable, "-m", "trainer", "dataset", "--library", str(lib_path), "--json",
                          "--concepts", "Nobody"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and json.loads(bad.stdout)["event"] == "error"


def test_missing_files_are_left_out(tmp_path):
    lib_path = make_library(tmp_path)
    (tmp_path / "photos" / "a2.png").unlink()
    with Library(lib_path) as lib:
        ds = build_dataset(lib, seed=0)
        assert all(_stem(lib, x.photo_id) != "a2" for x in ds.train)
        assert all(_stem(lib, h.photo_id) != "a2" for h in ds.heldout)
        assert any("1 photo could not be found" in w for w in ds.warnings)
        (tmp_path / "photos" / "ref_cleo.png").unlink()
        with pytest.raises(DatasetError, match="reference photo of <Cleo> is missing"):
            build_dataset(lib, ["Cleo"])


def test_no_torch_at_import():
    """The GUI's training wizard imports the dataset builder and the rewards: they must stay light."""
    code = ("import sys, trainer.dataset, trainer.rewards, trainer.adapters; "
            "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_trl_renders_the_inference_prompt(lib, demo_model_dir):
    """What TRL feeds the model for a training row is the app's caption prompt, byte for byte."""
    from trl.data_utils import prepare_multimodal_messages

    from repic_desktop.captioning.processor import load_processor

    processor = load_processor(demo_model_dir)
    ds = build_dataset(lib, seed=2)
    hf = to_hf_dataset(ds.train)
    seen = set()
    for i, smp in enumerate(ds.train):
        if smp.method in seen:
            continue
        seen.add(smp.method)
        row = hf[i]
        msgs = prepare_multimodal_messages(row["prompt"], images=row["images"])
        text = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        assert text == render(smp.prompt)
    assert seen == {"yes_no_name", "yes_no_name_multi", "yes_no", "iou"}


def test_train_command_reports_errors_as_events(lib_path, tmp_path):
    cmd = [sys.executable, "-m", "trainer", "--json-progress", "--library", str(lib_path), "--base",
           str(tmp_path / "no-model"), "--concepts", "Cleo", "--device", "cpu"]
    out = subprocess.run(cmd + ["--max-steps", "1"], capture_output=True, text=True, timeout=120)
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 1
    assert events[-1]["event"] == "error" and events[-1]["message"]
    assert "dataset" in [e["event"] for e in events]  # data is checked before the model is looked for
    few = subprocess.run(cmd[:-4] + ["--concepts", "Nobody"], capture_output=True, text=True, timeout=120)
    ev = [json.loads(line) for line in few.stdout.splitlines()]
    assert few.returncode == 1 and ev[-1] == {"event": "error", "message": ev[-1]["message"]}
    assert "Nobody" in ev[-1]["message"]

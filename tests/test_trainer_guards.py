"""The GRPO trainer's guards that need no training run: safe `remove --delete-files`, the --out guard,
the cancel flag, reference duplicates, OCT negatives, complete checkpoints only."""
from __future__ import annotations

import io
import shutil
import signal
import time
from pathlib import Path

import pytest

from repic_desktop.core.library import Library
from repic_desktop.core.scanner import scan_folder
from tests.helpers.trainer_library import fake_run, make_library
from trainer.dataset import build_dataset


@pytest.fixture
def lib(tmp_path):
    with Library(make_library(tmp_path / "lib")) as lib:
        yield lib


def _pid(lib, stem):
    return next(p.id for p in lib.photos.list() if Path(p.path).stem == stem)


# ---- 1. remove --delete-files never deletes more than the run's own files

def test_remove_delete_files_keeps_the_users_other_files(tmp_path, library, isolated_env):
    from trainer import adapters as ad

    docs = tmp_path / "Documents"
    adapter = fake_run(docs)
    (docs / "thesis.docx").write_text("precious")
    (docs / "notes").mkdir()
    (docs / "notes" / "a.txt").write_text("precious")
    library.adapters.register("fam", adapter, base_model="b")
    out = ad.remove(library, "fam", delete_files=True)
    assert out["deleted"]
    assert (docs / "thesis.docx").read_text() == "precious" and (docs / "notes" / "a.txt").exists()
    assert not adapter.exists() and not (docs / "checkpoints").exists() and not (docs / "run_config.json").exists()

    run = tmp_path / "run"  # a run folder with nothing else in it goes entirely
    library.adapters.register("fam2", fake_run(run), base_model="b")
    ad.remove(library, "fam2", delete_files=True)
    assert not run.exists()


def test_training_refuses_an_out_folder_with_foreign_files(lib, tmp_path):
    from trainer.train import Events, TrainConfig, TrainError, train

    docs = tmp_path / "Documents"
    docs.mkdir()
    (docs / "thesis.docx").write_text("precious")
    with pytest.raises(TrainError, match=r"Documents.*not a training run.*thesis\.docx"):
        train(TrainConfig(base="nowhere", out=str(docs), name="x"), lib, Events(True, io.StringIO()))
    assert (docs / "thesis.docx").exists()


# ---- 2. the cancel flag

def test_cancel_flag_installed_twice_keeps_the_original_handler():
    from trainer.train import CancelFlag

    before = signal.getsignal(signal.SIGINT)
    flag = CancelFlag()
    flag.install()
    flag.install()
    try:
        signal.raise_signal(signal.SIGINT)  # first: only sets the flag
        assert flag.set
        assert signal.getsignal(signal.SIGINT) is before  # second: the original (KeyboardInterrupt)
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    finally:
        flag.restore()
    assert signal.getsignal(signal.SIGINT) is before


def test_evaluate_heldout_stops_between_photos(monkeypatch):
    from repic_desktop.captioning import engine as eng
    from trainer import train as tr
    from trainer.dataset import HeldOut

    seen = []

    class FakeEngine:
        def __init__(self, *a, **k):
            pass

        def caption(self, reqs):
            seen.extend(r.key for r in reqs)
            return [type("R", (), {"key": r.key, "caption": "x"})() for r in reqs]

        def clear_cache(self):
            pass

    monkeypatch.setattr(eng, "CaptionEngine", FakeEngine)

    class M:
        training = False

        def eval(self):
            pass

    held = [HeldOut(i, ("A",), None) for i in range(5)]
    calls = []
    with pytest.raises(tr.Cancelled):
        tr.evaluate_heldout(M(), None, held, max_new_tokens=4, batch_size=1, min_pixels=1, max_pixels=2,
                            should_stop=lambda: calls.append(1) or len(seen) >= 2)
    assert seen == [0, 1]


# ---- 3. reference files identical to a library photo; duplicate photos

def test_reference_file_identical_to_a_photo_is_never_a_query(lib, tmp_path):
    a1 = _pid(lib, "a1")
    copy = tmp_path / "elsewhere" / "anya_ref.png"
    copy.parent.mkdir()
    shutil.copy2(lib.photos.get(a1).path, copy)
    lib.concepts.add_ref("Cleo", file_path=str(copy))  # a file reference, not linked by photo_id
    ds = build_dataset(lib, seed=1)
    assert a1 not in {s.photo_id for s in ds.train} | {h.photo_id for h in ds.heldout}


def test_duplicate_photos_are_one_query(lib, tmp_path):
    a2 = _pid(lib, "a2")
    dup = tmp_path / "photos2"
    dup.mkdir()
    shutil.copy2(lib.photos.get(a2).path, dup / "a2_copy.png")
    scan_folder(lib, dup)
    d = _pid(lib, "a2_copy")
    lib.concepts.tag(d, "Anya")
    for seed in range(8):
        ds = build_dataset(lib, seed=seed)
        used = {s.photo_id for s in ds.train} | {h.photo_id for h in ds.heldout}
        assert not {a2, d} <= used, seed


# ---- 4. OCT negatives: never a photo where the concept appears in any way

def test_oct_negatives_exclude_any_trace_of_the_concept(lib):
    a2, a3, a4, b1 = (_pid(lib, s) for s in ("a2", "a3", "a4", "b1"))
    bond = lib.concepts.get("Bond").id
    lib.concepts.tag(a2, "Bond", source="detected")                      # unconfirmed tag
    lib.conn.execute("INSERT INTO regions (photo_id, concept_id, x, y, w, h, source, created_at)"
                     " VALUES (?,?,?,?,?,?,?,?)", (a3, bond, 1, 1, 5, 5, "detected", time.time()))              # a detected box
    now = time.time()
    lib.conn.execute("INSERT INTO suggestions (photo_id, concept_id, matcher_id, score, kind, status, created_at,"
                     " updated_at) VALUES (?,?,?,?,?,?,?,?)", (a4, bond, "m", 0.9, "face", "pending", now, now))
    lib.captions.add(b1, "<Bond> and <Cleo>", tags=["Cleo"], status="draft")  # a draft naming Cleo
    for seed in range(6):
        ds = build_dataset(lib, seed=seed)
        bond_neg = {s.photo_id for s in ds.train if s.task == "oct" and s.solution == "no" and s.concepts == ("Bond",)}
        cleo_neg = {s.photo_id for s in ds.train if s.task == "oct" and s.solution == "no" and s.concepts == ("Cleo",)}
        assert not bond_neg & {a2, a3, a4}, seed
        assert b1 not in cleo_neg, seed


# ---- 5. only complete checkpoints are resumed

def test_latest_checkpoint_skips_half_written_ones(tmp_path):
    from trainer.train import _latest_checkpoint

    for step, files in ((2, ("trainer_state.json", "adapter_model.safetensors")), (4, ("trainer_state.json",)),
                        (5, ("adapter_model.safetensors",)), (6, ())):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        for f in files:
            (d / f).write_text("{}")
    assert _latest_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    assert _latest_checkpoint(tmp_path / "missing") is None


def test_a_concepts_photo_count_does_not_depend_on_what_is_trained_with_it(lib):
    """Issue #14: the lists count a concept's photos once, so the trainer must count the same set
    whichever concepts are chosen: a reference photo of any concept is never a training photo (it was
    one while its own concept was not being trained)."""
    from repic_desktop.core.training_photos import photo_counts

    ab2 = _pid(lib, "ab2")                        # Anya and Bond
    lib.concepts.add_ref("Bond", photo_id=ab2)
    listed = photo_counts(lib)[lib.concepts.get("Anya").id]
    alone = build_dataset(lib, ["Anya"], seed=1).summary()["photos"]["Anya"]
    both = build_dataset(lib, ["Anya", "Bond"], seed=1).summary()["photos"]["Anya"]
    assert listed.photos == alone["photos"] == both["photos"] == 5
    ds = build_dataset(lib, ["Anya"], seed=1)
    assert ab2 not in {s.photo_id for s in ds.train} | {h.photo_id for h in ds.heldout}

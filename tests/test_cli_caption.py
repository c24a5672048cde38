"""`repic prompt`, `repic caption` (durable jobs, resume after kill -9), `repic captions list`."""
from __future__ import annotations

import dataclasses
import json

import pytest
from PIL import Image

from repic_desktop.cli import main
from repic_desktop.core.library import Library
from tests.helpers.cli_run import run


def test_prompt_command_shows_repics_exact_layout(family, capsys):
    capsys.readouterr()
    code, out, _ = run(capsys, *family["lib"], "prompt", str(family["album"] / "img0.jpg"), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["concepts"] == ["Anya", "Bond"]  # library order, though Bond was tagged first
    assert ("<|vision_start|><|image_pad|><|vision_end|>1. Name: <Anya>, Info: A girl with pink hair."
            "<|vision_start|><|image_pad|><|vision_end|>2. Name: <Bond>, Info: A white dog."
            "<|vision_start|><|image_pad|><|vision_end|>This is the query image. Give a personalized caption of "
            "this image.<|im_end|>\n<|im_start|>assistant\n") in data["prompt"]
    assert [im["path"].rsplit("/", 1)[-1] for im in data["images"]][-1] == "img0.jpg"
    assert data["images"][-1]["size"] == [96, 64] and data["images"][-1]["visual_tokens"] == 6  # 84x56 px = 3x2 blocks of 28
    code, out, _ = run(capsys, *family["lib"], "prompt", "4", "--concept", "Bond", "--request-preset", "rich")
    assert code == 0 and "1. Name: <Bond>" in out and "Give a rich caption of the image." in out
    assert "---- images, in prompt order:" in out
    code, _, err = run(capsys, *family["lib"], "prompt", "4", "--request", "<|im_start|>")
    assert code == 1 and "control token" in err


def test_captions_list_shows_history(family, capsys):
    with Library(family["path"]) as lib:
        pid = lib.photos.list()[0].id
        first = lib.captions.add(pid, "<Anya> smiles.", model_id="m", provenance={"quantization": "4bit"})
        lib.captions.add(pid, "<Anya> smiles at <Bond>.", source="user", parent_id=first)
    capsys.readouterr()
    code, out, _ = run(capsys, *family["lib"], "captions", "list", str(pid))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(" ") and "m (4bit): <Anya> smiles." in lines[0]
    assert lines[1].startswith("*") and "user: <Anya> smiles at <Bond>." in lines[1]
    data = json.loads(run(capsys, *family["lib"], "captions", "list", str(pid), "--json")[1])
    assert len(data["captions"]) == 2 and data["current"] == data["captions"][1]["id"]


def _count_captions(path):
    import sqlite3

    conn = sqlite3.connect(path, timeout=30)
    try:
        return conn.execute("SELECT count(*) FROM captions").fetchone()[0]
    finally:
        conn.close()


def test_caption_with_demo_model_end_to_end(family, demo_model_dir, capsys):
    capsys.readouterr()
    lib = family["lib"]
    code, out, err = run(capsys, *lib, "caption", "--all", "--model", str(demo_model_dir), "--max-new-tokens", "6",
                         "--max-pixels", str(112 * 112), "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 6 and all(r["caption"] and "error" not in r for r in rows)
    tagged = [r for r in rows if r["provenance"]["concepts"]]
    assert len(tagged) == 3 and all(r["provenance"]["concepts"] == ["Anya", "Bond"] for r in tagged)
    assert all(set(r["tags_missing"]) | set(r["tags_found"]) == {"Anya", "Bond"} for r in tagged)
    prov = rows[0]["provenance"]
    assert prov["demo"] is True and prov["quantization"] == "none" and prov["source"] == str(demo_model_dir)
    assert prov["request"] == "Give a personalized caption of this image." and len(prov["prompt_hash"]) == 16
    with Library(family["path"]) as l2:
        assert all(len(l2.captions.history(p.id)) == 1 for p in l2.photos.list())
    # Already captioned photos are skipped unless --force.
    code, out, _ = run(capsys, *lib, "caption", "--all", "--model", str(demo_model_dir), "--json")
    assert code == 0 and len(out.splitlines()) == 6 and all("skipped" in json.loads(x) for x in out.splitlines())
    code, out, _ = run(capsys, *lib, "caption", "1", "--force", "--concept", "Bond", "--model", str(demo_model_dir),
                       "--max-new-tokens", "4", "--max-pixels", str(112 * 112), "--json")
    row = json.loads(out)
    assert code == 0 and row["provenance"]["concepts"] == ["Bond"]


def test_caption_errors_are_one_line(family, capsys, tmp_path):
    capsys.readouterr()
    lib = family["lib"]
    for argv, msg in [
        (["caption"], "say which photos"),
        (["caption", "--all", "--concept", "Nobody"], "no person, pet or thing called 'Nobody'"),
        (["caption", "--all", "--model", str(tmp_path / "nowhere")], "does not exist"),
        (["caption", "--all", "--model", "someone/not-downloaded"], "repic model download"),
        (["caption", "--resume"], "no unfinished captioning job"),
        (["caption", "--all", "--quant", "4bit", "--model", str(tmp_path)], ""),
    ]:
        code, _, err = run(capsys, *lib, *argv)
        assert code == 1 and err.startswith("repic: error: ") and len(err.strip().splitlines()) == 1, (argv, err)
        assert msg in err, (argv, err)


def test_killed_run_resumes_without_losing_or_duplicating(family, demo_model_dir, tmp_path):
    """kill -9 in the middle of a run, then --resume: every photo ends with exactly one caption."""
    import os
    import signal
    import subprocess
    import sys
    import time

    album = tmp_path / "more"
    album.mkdir()
    for i in range(24):
        Image.new("RGB", (64, 48), (i * 10, 255 - i * 10, 90)).save(album / f"m{i:02d}.jpg")
    lib = family["lib"]
    assert main([*lib, "import", str(album), "--json"]) == 0
    total = 30
    cmd = [sys.executable, "-m", "repic_desktop", *lib, "caption", "--all", "--model", str(demo_model_dir),
           "--batch-size", "1", "--max-new-tokens", "24", "--min-new-tokens", "24", "--max-pixels", str(112 * 112),
           "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _count_captions(family["path"]) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = _count_captions(family["path"])
    assert 3 <= done_before < total, "the run finished before it could be killed: make it slower"
    resumed = subprocess.run([sys.executable, "-m", "repic_desktop", *lib, "caption", "--resume", "--json"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert len(resumed.stdout.splitlines()) == total - done_before  # only the photos still pending
    with Library(family["path"]) as l2:
        assert [len(l2.captions.history(p.id)) for p in l2.photos.list()] == [1] * total
        from repic_desktop.core.jobs import JobStore

        job = JobStore(l2).get(1)
        assert job.status == "done" and job.counts == {"done": total}


def _jobs(path):
    from repic_desktop.core.jobs import JobStore

    with Library(path) as lib:
        return JobStore(lib).list()


@pytest.mark.parametrize("flag, value, message", [
    ("--batch-size", "-3", "batch size must be a whole number from 1 to 64"),
    ("--batch-size", "0", "batch size must be a whole number from 1 to 64"),
    ("--batch-size", "100000", "batch size must be a whole number from 1 to 64"),
    ("--max-new-tokens", "0", "max new tokens must be a whole number from 1 to 8192"),
    ("--max-new-tokens", "-1", "max new tokens"),
    ("--max-new-tokens", "99999999", "max new tokens"),
    ("--min-new-tokens", "-2", "min new tokens"),
    ("--max-refs", "0", "reference photos per concept"),
    ("--max-refs", "-5", "reference photos per concept"),
    ("--max-pixels", "0", "min_pixels <= max_pixels"),
    ("--max-pixels", "-100", "min_pixels <= max_pixels"),
    ("--max-pixels", str(10 ** 12), "max pixels can be at most"),
])
def test_bad_caption_options_are_one_line_errors_and_create_no_job(family, demo_model_dir, capsys, flag, value,
                                                                    message):
    capsys.readouterr()
    code, out, err = run(capsys, *family["lib"], "caption", "--all", "--model", str(demo_model_dir), flag, value)
    assert code == 1 and err.startswith("repic: error: ") and len(err.strip().splitlines()) == 1, err
    assert message in err and "Traceback" not in err
    assert _jobs(family["path"]) == []


def test_a_stored_job_that_cannot_run_fails_with_its_reason_and_never_blocks_resume(family, demo_model_dir, capsys):
    """A job stored with batch size -3 (by an older version) used to break every later --resume."""
    from repic_desktop.captioning.jobs import job_params
    from repic_desktop.captioning.models import ModelSpec
    from repic_desktop.core.jobs import JobStore

    spec = ModelSpec(str(demo_model_dir), max_pixels=112 * 112)
    good = job_params(model=dataclasses.asdict(spec), concepts=None, request="Caption it.", system_preset="repic",
                      max_refs=1, batch_size=2, max_pixels=spec.max_pixels, max_new_tokens=4)
    with Library(family["path"]) as lib:
        store = JobStore(lib)
        ok_job = store.create([1, 2], good)
        bad_job = store.create([3], {**good, "batch_size": -3})  # newest: --resume would pick it first
    capsys.readouterr()
    code, out, err = run(capsys, *family["lib"], "caption", "--resume", "--json")
    assert code == 0, err
    assert [json.loads(line)["photo"] for line in out.splitlines()] == [1, 2]
    by_id = {j.id: j for j in _jobs(family["path"])}
    assert by_id[ok_job.id].status == "done"
    assert by_id[bad_job.id].status == "failed" and "batch size must be" in by_id[bad_job.id].error
    code, _, err = run(capsys, *family["lib"], "caption", "--resume")
    assert code == 1 and "no unfinished captioning job" in err


def test_jobs_list_cancel_remove(family, demo_model_dir, capsys):
    from repic_desktop.core.jobs import JobStore

    with Library(family["path"]) as lib:
        store = JobStore(lib)
        a = store.create([1, 2], {"batch_size": 1})
        b = store.create([3], {"batch_size": 1})
        store.set_status(b.id, "running")  # as a killed process leaves it
    capsys.readouterr()
    code, out, _ = run(capsys, *family["lib"], "jobs", "list", "--json")
    assert code == 0 and [j["id"] for j in json.loads(out)] == [b.id, a.id]
    code, out, _ = run(capsys, *family["lib"], "jobs", "cancel", str(a.id))
    assert code == 0 and f"cancelled job {a.id}" in out
    code, _, err = run(capsys, *family["lib"], "jobs", "cancel", str(a.id))
    assert code == 1 and "already cancelled" in err
    code, _, err = run(capsys, *family["lib"], "jobs", "remove", str(b.id))
    assert code == 1 and "marked running" in err and len(err.strip().splitlines()) == 1
    assert run(capsys, *family["lib"], "jobs", "remove", str(b.id), "--force")[0] == 0
    code, _, err = run(capsys, *family["lib"], "jobs", "remove", "999")
    assert code == 1 and "no job with id 999" in err
    code, out, _ = run(capsys, *family["lib"], "jobs", "list")
    assert code == 0 and out.split()[:3] == [str(a.id), "caption", "cancelled"]

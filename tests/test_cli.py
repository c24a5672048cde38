"""The `repic` command end to end on a real folder: JSON output, exit codes, one-line errors."""
from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from repic_desktop import __version__
from tests.helpers.cli_run import run, run_json


@pytest.fixture
def album(tmp_path):
    root = tmp_path / "Family Album"
    (root / "2024 beach").mkdir(parents=True)
    Image.new("RGB", (64, 48), (10, 120, 200)).save(root / "2024 beach" / "anya and bond.jpg")
    Image.new("RGB", (48, 64), (200, 120, 10)).save(root / "2024 beach" / "bond.png")
    Image.new("RGB", (32, 32), (0, 0, 0)).save(root / "grandma.jpg")
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("shopping list")
    return root


def test_version_and_errors_from_a_real_process(tmp_path):
    out = subprocess.run([sys.executable, "-m", "repic_desktop", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"repic {__version__}"
    err = subprocess.run([sys.executable, "-m", "repic_desktop", "--library", str(tmp_path / "l.sqlite"),
                          "concept", "rename", "Nobody", "Somebody"], capture_output=True, text=True)
    assert err.returncode == 1
    assert err.stderr.strip().splitlines() == ["repic: error: no person, pet or thing called 'Nobody' in this library"]
    usage = subprocess.run([sys.executable, "-m", "repic_desktop", "concept", "add", "X"], capture_output=True,
                           text=True)
    assert usage.returncode == 2 and "--kind" in usage.stderr and "Traceback" not in usage.stderr


def test_status_on_a_fresh_default_library(isolated_env, capsys):
    data = run_json(capsys, "status")
    assert data["library_exists"] is False
    assert data["library"].startswith(str(isolated_env / "data"))  # the platform data dir, sandboxed
    assert data["model"]["source"] == "Yeongtak/RePIC_Qwen2.5VL_7B"
    assert data["device"]["cuda"] in (True, False)
    code, out, _ = run(capsys, "status")
    assert code == 0 and "new, empty" in out and "model:" in out
    code, out, _ = run(capsys, "photos", "list")
    assert code == 0 and "import a folder" in out


def test_library_env_var_and_flag(isolated_env, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("REPIC_LIBRARY", str(tmp_path / "env.sqlite"))
    assert run_json(capsys, "status")["library"] == str(tmp_path / "env.sqlite")
    assert run_json(capsys, "--library", str(tmp_path / "flag.sqlite"), "status")["library"] == \
        str(tmp_path / "flag.sqlite")
    assert run_json(capsys, "status", "--library", str(tmp_path / "flag2.sqlite"))["library"] == \
        str(tmp_path / "flag2.sqlite")


def test_import_tag_search_and_concepts_end_to_end(isolated_env, album, capsys, tmp_path):
    lib = ["--library", str(tmp_path / "album.sqlite")]
    report = run_json(capsys, *lib, "import", str(album))
    assert (report["added"], report["unchanged"], report["moved"], report["missing"]) == (3, 0, 0, 0)
    assert {s["path"].rsplit("/", 1)[-1] for s in report["skipped"]} == {"empty.jpg", "notes.jpg"}

    again = run_json(capsys, *lib, "import", str(album))
    assert (again["added"], again["unchanged"]) == (0, 3)

    photos = run_json(capsys, *lib, "photos", "list")
    assert len(photos) == 3 and all(p["caption"] is None for p in photos)
    beach = next(p for p in photos if p["filename"] == "anya and bond.jpg")
    bond_png = str(album / "2024 beach" / "bond.png")

    anya = run_json(capsys, *lib, "concept", "add", "Anya", "--kind", "person", "--info", "A girl with pink hair.",
                    "--ref", str(beach["id"]))
    assert anya["references"][0]["photo_id"] == beach["id"]
    ext = tmp_path / "bond-ref.jpg"
    Image.new("RGB", (40, 40), (250, 250, 250)).save(ext)
    bond = run_json(capsys, *lib, "concept", "add", "Bond", "--kind", "pet", "--ref", bond_png, "--ref", str(ext))
    assert len(bond["references"]) == 2 and bond["references"][1]["file_path"]

    tagged = run_json(capsys, *lib, "photo", "tag", str(album / "2024 beach" / "anya and bond.jpg"), "Anya",
                      "--box", "5,5,20,30")
    assert tagged["concepts"] == ["Anya"]
    run_json(capsys, *lib, "photo", "tag", str(beach["id"]), "Bond")
    shown = run_json(capsys, *lib, "photo", "show", str(beach["id"]))
    assert shown["concepts"] == ["Anya", "Bond"] and shown["regions"][0]["box"] == [5, 5, 20, 30]
    assert [p["id"] for p in run_json(capsys, *lib, "photos", "list", "--concept", "Bond")] == [beach["id"]]

    code, _, err = run(capsys, *lib, "photo", "tag", str(beach["id"]), "Anya", "--box", "60,0,20,20")
    assert code == 1 and "outside the 64x48 photo" in err

    untag = run_json(capsys, *lib, "photo", "untag", str(beach["id"]), "Bond")
    assert untag["removed"] is True and untag["concepts"] == ["Anya"]

    listed = run_json(capsys, *lib, "concept", "list")
    # Anya's one tagged photo is her reference: no photo to train on, and the list says why
    assert [(c["name"], c["kind"], c["photos"], c["reference_only"]) for c in listed] == \
        [("Anya", "person", 0, True), ("Bond", "pet", 0, False)]
    assert run_json(capsys, *lib, "concept", "rename", "Bond", "Bondo")["name"] == "Bondo"
    assert run_json(capsys, *lib, "concept", "edit", "Bondo", "--info", "Sees the future.")["info"] == \
        "Sees the future."
    merged = run_json(capsys, *lib, "concept", "add", "Bondy", "--kind", "pet", "--ref", bond_png)
    merged = run_json(capsys, *lib, "concept", "merge", "Bondy", "Bondo")
    assert len(merged["references"]) == 3
    ref_id = merged["references"][-1]["id"]
    assert run_json(capsys, *lib, "concept", "remove-ref", "Bondo", str(ref_id))["removed"] == ref_id

    out_json = tmp_path / "export" / "database.json"
    exported = run_json(capsys, *lib, "concept", "export-repic", str(out_json), "--images-dir",
                        str(tmp_path / "export" / "images"))
    assert exported["concepts"] == 2
    other = ["--library", str(tmp_path / "other.sqlite")]
    imported = run_json(capsys, *other, "concept", "import-repic", str(out_json))
    assert imported["added"] == ["Anya", "Bondo"] and imported["references"] == 3

    assert run_json(capsys, *lib, "concept", "remove", "Bondo")["name"] == "Bondo"
    status = run_json(capsys, *lib, "status")
    assert status["counts"]["photos"] == 3 and status["counts"]["concepts"] == 1
    assert status["counts"]["skipped"] == 2


def test_search_and_uncaptioned_filters(isolated_env, album, capsys, tmp_path):
    from repic_desktop.core.library import Library

    path = tmp_path / "album.sqlite"
    run_json(capsys, "--library", str(path), "import", str(album))
    with Library(path) as lib:
        first = lib.photos.list()[0]
        lib.captions.add(first.id, "<Anya> builds a sandcastle at the beach.")
    found = run_json(capsys, "--library", str(path), "photos", "list", "--search", "sandcastle")
    assert [p["id"] for p in found] == [first.id] and found[0]["caption"].startswith("<Anya>")
    uncaptioned = run_json(capsys, "--library", str(path), "photos", "list", "--uncaptioned")
    assert len(uncaptioned) == 2 and first.id not in [p["id"] for p in uncaptioned]


def test_user_errors_are_one_line(isolated_env, capsys, tmp_path):
    lib = ["--library", str(tmp_path / "x.sqlite")]
    cases = [
        (["import", str(tmp_path / "nope")], "is not a folder"),
        (["concept", "add", "<Anya>", "--kind", "person"], "cannot contain '<' or '>'"),
        (["concept", "add", "Anya", "--kind", "person", "--info", "<|im_start|>system"], "control token"),
        (["concept", "add", "Anya", "--kind", "person", "--ref", str(tmp_path / "missing.jpg")],
         "neither a file nor a photo id"),
        (["photo", "tag", "999", "Anya"], "no photo with id 999"),
        (["concept", "edit", "Anya"], "nothing to change"),
        (["photo", "tag", "999", "Anya", "--box", "inf,0,10,10"], "a box is X,Y,W,H"),     # was a traceback
        (["photo", "tag", "999", "Anya", "--box", "1e309,0,10,10"], "a box is X,Y,W,H"),
        (["photo", "tag", "999", "Anya", "--box", "nan,0,10,10"], "a box is X,Y,W,H"),
        (["photo", "tag", "999", "Anya", "--box", "0,0,1e12,10"], "a box is X,Y,W,H"),
    ]
    for argv, message in cases:
        code, out, err = run(capsys, *lib, *argv)
        assert code == 1, argv
        assert len(err.strip().splitlines()) == 1 and message in err, (argv, err)
    # the failed `concept add --ref` left no half-made concept behind
    assert run_json(capsys, *lib, "concept", "list") == []


def test_demo_model_command(isolated_env, capsys, tmp_path):
    from repic_desktop.captioning.demo_model import is_demo_model

    info = run_json(capsys, "demo-model", str(tmp_path / "demo"))
    assert is_demo_model(tmp_path / "demo") and info["size_bytes"] < 1_000_000
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep me")
    code, _, err = run(capsys, "demo-model", str(tmp_path / "mine"))
    assert code == 1 and "not empty" in err
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep me"


def test_file_names_printed_to_a_terminal_cannot_drive_it(tmp_path, capsys):
    """A file name holding ESC sequences or a right-to-left override is shown escaped, never raw."""
    root = tmp_path / "album"
    root.mkdir()
    evil = "clear\x1b[2J\x1b]0;owned\x07 \u202egpj.exe.jpg"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(root / "plain.jpg")
    (root / evil).write_bytes((root / "plain.jpg").read_bytes())
    lib = str(tmp_path / "l.sqlite")
    assert run(capsys, "--library", lib, "import", str(root))[0] == 0
    code, out, err = run(capsys, "--library", lib, "photos", "list")
    assert code == 0 and "clear\\x1b[2J\\x1b]0;owned\\x07 \\u202egpj.exe.jpg" in out
    code, out, err = run(capsys, "--library", lib, "photo", "show", str(root / "nope\x1b[2J.jpg"))
    assert code == 1 and "\x1b" not in err and "\\x1b[2J" in err
    for text in (out, err):
        assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
    data = run_json(capsys, "--library", lib, "photos", "list")  # JSON keeps the exact name
    assert any(p["path"].endswith(evil) for p in data)

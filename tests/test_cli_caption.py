"""`repic prompt`, `repic caption` (durable jobs, resume after kill -9), `repic captions list`."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from repic_desktop.cli import main
from repic_desktop.core.library import Library


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def family(tmp_path):
    """A library with 6 photos, two concepts with reference photos, and tags on some photos."""
    album = tmp_path / "album"
    album.mkdir()
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (200, 30, 200)]
    for i, c in enumerate(colors):
        Image.new("RGB", (96 + 8 * i, 64), c).save(album / f"img{i}.jpg")
    refs = tmp_path / "refs"
    refs.mkdir()
    Image.new("RGB", (60, 60), (250, 180, 200)).save(refs / "anya.jpg")
    Image.new("RGB", (60, 60), (240, 240, 240)).save(refs / "bond.jpg")
    lib = ["--library", str(tmp_path / "lib.sqlite")]
    assert main([*lib, "import", str(album), "--json"]) == 0
    assert main([*lib, "concept", "add", "Anya", "--kind", "person", "--info", "A girl with pink hair.",
                 "--ref", str(refs / "anya.jpg")]) == 0
    assert main([*lib, "concept", "add", "Bond", "--kind", "pet", "--info", "A white dog.",
                 "--ref", str(refs / "bond.jpg")]) == 0
    for i in (0, 1, 2):
        assert main([*lib, "photo", "tag", str(album / f"img{i}.jpg"), "Bond"]) == 0
        assert main([*lib, "photo", "tag", str(album / f"img{i}.jpg"), "Anya"]) == 0
    return {"lib": lib, "path": tmp_path / "lib.sqlite", "album": album}


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
        pid = lib.list_photos()[0].id
        first = lib.add_caption(pid, "<Anya> smiles.", model_id="m", provenance={"quantization": "4bit"})
        lib.add_caption(pid, "<Anya> smiles at <Bond>.", source="user", parent_id=first)
    capsys.readouterr()
    code, out, _ = run(capsys, *family["lib"], "captions", "list", str(pid))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(" ") and "m (4bit): <Anya> smiles." in lines[0]
    assert lines[1].startswith("*") and "user: <Anya> smiles at <Bond>." in lines[1]
    data = json.loads(run(capsys, *family["lib"], "captions", "list", str(pid), "--json")[1])
    assert len(data["captions"]) == 2 and data["current"] == data["captions"][1]["id"]

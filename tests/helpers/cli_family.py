"""A small captioning library for CLI tests (`family`: 6 photos, two concepts with references, tags) and
`run(capsys, *argv)`, which runs `repic` in-process and returns (exit code, stdout, stderr)."""
from __future__ import annotations

import pytest
from PIL import Image

from repic_desktop.cli import main


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

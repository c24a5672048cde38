"""`repic import` of the real-file corpus (tests/realfiles/): every image file is imported or skipped
for the right reason, and `repic import --read-metadata` brings in the names and face regions that
digiKam/MWG/MP wrote, without problems."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from repic_desktop.cli import main
from repic_desktop.core.library import Library
from repic_desktop.metadata.exiftool_edit import exiftool_available
from repic_desktop.metadata.pyexiv2_edit import pyexiv2_available

from tests.helpers.realfiles_harness import CORPUS, EXPECTED_SKIPS, corpus_files

needs_a_backend = pytest.mark.skipif(not (pyexiv2_available() or exiftool_available()),
                                     reason="neither pyexiv2 nor exiftool is installed")


@pytest.fixture(scope="module")
def album(tmp_path_factory):
    d = tmp_path_factory.mktemp("realfiles-import") / "album"
    shutil.copytree(CORPUS, d, ignore=shutil.ignore_patterns("*.md"))
    return d


def _json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    return json.loads(out)


def test_import_takes_every_image_or_says_why_not(tmp_path, album, capsys):
    data = _json(capsys, "import", str(album), "--library", str(tmp_path / "l.sqlite"))
    skipped = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in data["skipped"]}
    assert set(skipped) == set(EXPECTED_SKIPS), skipped
    for name, why in EXPECTED_SKIPS.items():
        assert why in skipped[name]
    assert data["added"] == len(corpus_files()) - len(EXPECTED_SKIPS)
    with Library(tmp_path / "l.sqlite") as lib:
        photos = {p.filename: p for p in lib.photos.list()}
    assert set(photos) == set(corpus_files()) - set(EXPECTED_SKIPS)
    # sizes after EXIF orientation (the digiKam portrait is stored 700x840 with Orientation=6)
    assert (photos["portrait-orientation-6.jpg"].width, photos["portrait-orientation-6.jpg"].height) == (840, 700)
    assert all(p.width and p.height for p in photos.values())


@pytest.fixture(scope="module")
def read_import(tmp_path_factory, album):
    """`repic import DIR --read-metadata --create-concepts --json` once: (its JSON, the library path)."""
    lib = tmp_path_factory.mktemp("realfiles-read") / "m.sqlite"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["import", str(album), "--read-metadata", "--create-concepts", "--json",
                     "--library", str(lib)]) == 0
    return json.loads(buf.getvalue()), lib


@needs_a_backend
def test_import_read_metadata_brings_in_names_and_regions(read_import):
    data, path = read_import
    assert data["metadata"]["problems"] == []
    with Library(path) as lib:
        photos = {p.filename: p for p in lib.photos.list()}
        names = {c.name for c in lib.concepts.all()}
        # digiKam-style MWG+MP regions (Immich's portraits) and Exiv2's MWG test photo (one face, "America")
        assert {"Marie Curie", "Pierre Curie", "America"} <= names
        sony = photos["DSC_3079.jpg"]
        assert [lib.concepts.get(r.concept_id).name for r in lib.concepts.regions(sony.id)] == ["America"]
        boxes = {}
        for name in ("portrait.jpg", "portrait-orientation-6.jpg"):
            pid = photos[name].id
            boxes[name] = {lib.concepts.get(r.concept_id).name: r.box.as_list() for r in lib.concepts.regions(pid)}
            assert {c.name for c in lib.concepts.of_photo(pid)} >= {"Marie Curie", "Pierre Curie"}
    # the same two faces, once stored upright and once stored rotated (Orientation=6): the library's
    # displayed-frame boxes must agree (to a pixel of rounding)
    assert set(boxes["portrait.jpg"]) == set(boxes["portrait-orientation-6.jpg"]) == {"Marie Curie", "Pierre Curie"}
    for who in ("Marie Curie", "Pierre Curie"):
        a, b = boxes["portrait.jpg"][who], boxes["portrait-orientation-6.jpg"][who]
        assert all(abs(x - y) <= 2 for x, y in zip(a, b)), (who, a, b)


@needs_a_backend
def test_import_reads_the_mwg_test_image_by_the_mwg_rules(read_import):
    """exiftool's MWG.jpg says RIGHT/WRONG in every value; `exiftool -use MWG` reads the RIGHT ones."""
    with Library(read_import[1]) as lib:
        pid = next(p.id for p in lib.photos.list() if p.filename == "MWG.jpg")
        cap = lib.captions.current(pid)
    assert cap is not None and cap.text == "RIGHT-EXIF-Description"


@needs_a_backend
def test_import_json_stays_json_on_real_files(tmp_path, album):
    """A real process: exiv2 writes its warnings to the C-level stdout, which capsys would not see.
    'Issue 247-1.nef' (empty IPTC dates) makes exiv2 warn."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, "-m", "repic_desktop", "import", str(album), "--read-metadata", "--json",
                          "--library", str(tmp_path / "j.sqlite")], capture_output=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-2000:]
    data = json.loads(out.stdout)
    assert data["added"] == len(corpus_files()) - len(EXPECTED_SKIPS)

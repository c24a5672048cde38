"""`repic photo tag --box` moves a person's box (issue #14), and `repic photos list` pages and streams
with a number of SQL statements that does not grow with the library."""
from __future__ import annotations

import json

import pytest

from repic_desktop.cli import main
from repic_desktop.core.library import Box, Library
from repic_desktop.core.scanner import scan_folder
from repic_desktop.metadata import MetadataValues, RegionBox, WriteOptions, write_metadata

from .test_metadata_helpers import make_image, needs_pyexiv2


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


# ------------------------------------------------------------------------------ (a) tag --box moves the box

def test_tagging_a_tagged_person_with_a_box_moves_their_box(tmp_path):
    make_image(tmp_path / "a.jpg", size=(96, 64))
    with Library(tmp_path / "lib.sqlite") as lib:
        scan_folder(lib, str(tmp_path))
        pid = lib.list_photos()[0].id
        lib.add_concept("Anya", "person")
        lib.add_concept("Bond", "pet")
        assert lib.tag_photo(pid, "Anya", box=Box(1, 2, 10, 10)) == []
        lib.tag_photo(pid, "Bond", box=Box(50, 20, 30, 30))
        assert lib.tag_photo(pid, "Anya", box=Box(40, 5, 12, 14)) == [Box(1, 2, 10, 10)]   # moved, not added
        lib.tag_photo(pid, "Anya")                           # a tag without a box keeps where she is
        got = {lib.concept(r.concept_id).name: (r.box, r.source) for r in lib.regions(pid)}
        assert len(lib.regions(pid)) == 2 and got == {"Anya": (Box(40, 5, 12, 14), "manual"),
                                                      "Bond": (Box(50, 20, 30, 30), "manual")}
        # Several boxes of one person only when asked for (another tool's metadata, undo)
        lib.tag_photo(pid, "Anya", box=Box(0, 40, 10, 10), source="import", replace=False)
        assert sorted(r.box.x for r in lib.regions(pid) if r.concept_id == lib.concept("Anya").id) == [0, 40]


@needs_pyexiv2
def test_cli_tag_box_moves_the_box_after_an_import_that_brought_two(tmp_path, capsys):
    """Another tool marked Ben twice (a collage): the import keeps both; `photo tag --box` then says
    where Ben is, so one box is left, and the text and JSON say which boxes it replaced."""
    album = tmp_path / "album"
    album.mkdir()
    photo = make_image(album / "collage.jpg", size=(96, 64))
    write_metadata(photo, MetadataValues(regions=[RegionBox("Ben", "person", (0.05, 0.1, 0.2, 0.3)),
                                                  RegionBox("Ben", "person", (0.6, 0.5, 0.2, 0.3))],
                                         display_size=(96, 64)), WriteOptions(groups=("regions",)))
    lib = ["--library", tmp_path / "lib.sqlite"]
    assert run(capsys, *lib, "concept", "add", "Ben", "--kind", "person")[0] == 0
    assert run(capsys, *lib, "import", album, "--read-metadata")[0] == 0
    shown = run_json(capsys, *lib, "photo", "show", photo)
    assert [r["concept"] for r in shown["regions"]] == ["Ben", "Ben"]
    code, out, err = run(capsys, *lib, "photo", "tag", photo, "Ben", "--box", "30,10,20,20")
    assert code == 0, err
    assert "at 30,10,20,20 (moved from " in out
    shown = run_json(capsys, *lib, "photo", "show", photo)
    assert [(r["concept"], r["box"], r["source"]) for r in shown["regions"]] == [("Ben", [30, 10, 20, 20], "manual")]
    again = run_json(capsys, *lib, "photo", "tag", photo, "Ben", "--box", "31,11,20,20")
    assert again["replaced"] == [[30, 10, 20, 20]] and again["box"] == [31, 11, 20, 20]
    assert [r["box"] for r in run_json(capsys, *lib, "photo", "show", photo)["regions"]] == [[31, 11, 20, 20]]

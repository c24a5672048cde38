"""`repic photo tag --box` moves a person's box (issue #14), and `repic photos list` pages and streams
with a number of SQL statements that does not grow with the library."""
from __future__ import annotations

import json

import pytest

from repic_desktop.cli import main
from repic_desktop.core.library import Box, Library
from repic_desktop.core.scanner import scan_folder
from repic_desktop.metadata import MetadataValues, RegionBox, WriteOptions, write_metadata

from tests.helpers.metadata_files import make_image, needs_pyexiv2
from tests.helpers.cli_run import run, run_json


# ------------------------------------------------------------------------------ (a) tag --box moves the box

def test_tagging_a_tagged_person_with_a_box_moves_their_box(tmp_path):
    make_image(tmp_path / "a.jpg", size=(96, 64))
    with Library(tmp_path / "lib.sqlite") as lib:
        scan_folder(lib, str(tmp_path))
        pid = lib.photos.list()[0].id
        lib.concepts.add("Anya", "person")
        lib.concepts.add("Bond", "pet")
        assert lib.concepts.tag(pid, "Anya", box=Box(1, 2, 10, 10)) == []
        lib.concepts.tag(pid, "Bond", box=Box(50, 20, 30, 30))
        assert lib.concepts.tag(pid, "Anya", box=Box(40, 5, 12, 14)) == [Box(1, 2, 10, 10)]   # moved, not added
        lib.concepts.tag(pid, "Anya")                           # a tag without a box keeps where she is
        got = {lib.concepts.get(r.concept_id).name: (r.box, r.source) for r in lib.concepts.regions(pid)}
        assert len(lib.concepts.regions(pid)) == 2 and got == {"Anya": (Box(40, 5, 12, 14), "manual"),
                                                               "Bond": (Box(50, 20, 30, 30), "manual")}
        # Several boxes of one person only when asked for (another tool's metadata, undo)
        lib.concepts.tag(pid, "Anya", box=Box(0, 40, 10, 10), source="import", replace=False)
        anya = lib.concepts.get("Anya").id
        assert sorted(r.box.x for r in lib.concepts.regions(pid) if r.concept_id == anya) == [0, 40]


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


# ------------------------------------------------------------------------------ (b) photos list: paged, streamed

def _library_of(path, n: int) -> list[int]:
    """n photo rows inserted with SQL (no files): every third uncaptioned, names in varying order, every
    seventh missing. Returns the ids of the present photos in path order."""
    with Library(path) as lib:
        for name, kind in (("Zoë", "person"), ("Anya", "person"), ("Rex", "pet")):
            lib.concepts.add(name, kind)
        cids = [c.id for c in lib.concepts.all()]
        with lib.transaction():
            for i in range(n):
                p = f"/album/{i % 4}/IMG_{i:05d}.jpg"
                lib.conn.execute(
                    "INSERT INTO photos (id, path, path_bytes, folder, filename, size, mtime_ns, content_hash,"
                    " width, height, status, added_at, updated_at) VALUES (?,?,?,?,?,1,1,?,64,48,?,0,0)",
                    (i + 1, p, p.encode(), p.rsplit("/", 1)[0], p.rsplit("/", 1)[1], f"h{i}",
                     "missing" if i % 7 == 6 else "ok"))
                for c in cids[i % 3:][::-1][:i % 4]:
                    lib.conn.execute("INSERT INTO photo_concepts (photo_id, concept_id, created_at) VALUES (?,?,0)",
                                     (i + 1, c))
        for i in range(n):
            if i % 3:
                lib.captions.add(i + 1, f"<Anya> at the beach, picture {i}", provenance={"seconds": 0.1},
                                 status="accepted" if i % 2 else "draft")
        return [p.id for p in lib.photos.list()]


@pytest.fixture
def statements(monkeypatch):
    """Every SQL statement the command runs on its library connection (after opening it)."""
    seen: list[str] = []
    init = Library.__init__

    def traced(self, *a, **k):
        init(self, *a, **k)
        self.conn.set_trace_callback(seen.append)
    monkeypatch.setattr(Library, "__init__", traced)
    return seen


@pytest.mark.parametrize("argv", [["--json"], ["--limit", "1000"], ["--missing", "--json"],
                                  ["--concept", "Rex", "--limit", "1000"]])
def test_photos_list_runs_the_same_statements_for_3_or_60_photos(tmp_path, capsys, statements, argv):
    """Issue #14: 100k photos took 12 s (30 s with --json): two more queries per photo (its caption,
    its concepts). Now one statement, whatever the number of photos."""
    counts = []
    for n in (3, 60):
        _library_of(tmp_path / f"{n}.sqlite", n)
        statements.clear()
        code, out, err = run(capsys, "--library", tmp_path / f"{n}.sqlite", "photos", "list", *argv)
        assert code == 0, err
        assert out.count("IMG_") >= n // 3
        counts.append(len(statements))
    assert counts[0] == counts[1] and counts[1] <= 3, statements


def test_photo_listing_rows_are_the_photos_with_caption_and_names(tmp_path):
    ids = _library_of(tmp_path / "lib.sqlite", 30)
    with Library(tmp_path / "lib.sqlite") as lib:
        for kw in ({}, {"include_missing": True}, {"uncaptioned": True}, {"concept": "Rex"}, {"search": "beach"},
                   {"limit": 4, "offset": 5}, {"offset": 25}):
            want = []
            for p in lib.photos.list(**{"limit": 10 ** 6, **kw}):
                d = p.as_dict()
                cap = lib.captions.current(p.id)
                d.update(caption=cap.text if cap else None, caption_status=cap.status if cap else None,
                         concepts=[c.name for c in lib.concepts.of_photo(p.id)])
                want.append(d)
            got = list(lib.photos.listing(**kw))
            assert got == want and list(got[0]) == list(want[0]), kw
        assert [d["id"] for d in lib.photos.listing()] == ids
        assert lib.photos.count() == len(ids) and lib.photos.count(include_missing=True) == 30
        with pytest.raises(Exception, match="Nobody"):
            lib.photos.listing(concept="Nobody")          # before any row is written


def test_photos_list_text_is_one_page_and_says_how_to_get_the_next(tmp_path, capsys):
    ids = _library_of(tmp_path / "lib.sqlite", 140)     # 120 present
    lib = ["--library", tmp_path / "lib.sqlite"]
    code, out, _ = run(capsys, *lib, "photos", "list")
    lines = [x for x in out.splitlines() if "IMG_" in x]
    assert code == 0 and len(lines) == 50 and lines[0].split()[0] == str(ids[0])
    assert out.splitlines()[-1] == "… 70 more: --offset 50 for the next page, --limit N for longer pages " \
                                   "(or --json for all)"
    code, out, _ = run(capsys, *lib, "photos", "list", "--offset", "100")
    assert [x.split()[0] for x in out.splitlines() if "IMG_" in x] == [str(i) for i in ids[100:]]
    assert "more" not in out
    code, out, _ = run(capsys, *lib, "photos", "list", "--offset", "50", "--limit", "70")
    assert len([x for x in out.splitlines() if "IMG_" in x]) == 70 and "more" not in out
    code, out, _ = run(capsys, *lib, "photos", "list", "--offset", "500")
    assert out.strip() == "no photos at --offset 500: 120 match"
    code, out, _ = run(capsys, *lib, "photos", "list", "--search", "nothingmatches")
    assert out.strip() == "no photos match"


def test_photos_list_json_streams_every_photo_one_per_line(tmp_path, capsys):
    ids = _library_of(tmp_path / "lib.sqlite", 140)
    lib = ["--library", tmp_path / "lib.sqlite"]
    code, out, _ = run(capsys, *lib, "photos", "list", "--json")
    assert [d["id"] for d in json.loads(out)] == ids        # no default page for machines
    lines = out.splitlines()
    assert lines[0] == "[" and lines[-1] == "]" and len(lines) == len(ids) + 2
    assert [json.loads(x.rstrip(","))["id"] for x in lines[1:-1]] == ids
    page = run_json(capsys, *lib, "photos", "list", "--limit", "5", "--offset", "10")
    assert [d["id"] for d in page] == ids[10:15]
    assert run_json(capsys, *lib, "photos", "list", "--offset", "1000") == []


@pytest.mark.parametrize("bad", [["--limit", "0"], ["--limit", "-5"], ["--offset", "-1"], ["--limit", "inf"],
                                 ["--limit", "nan"], ["--limit", "1e3"], ["--offset", str(10 ** 30)],
                                 ["--limit", "\x1b[2J"]])
def test_photos_list_refuses_bad_pages(tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as exc:
        main(["--library", str(tmp_path / "lib.sqlite"), "photos", "list", *bad])
    _, err = capsys.readouterr()
    assert exc.value.code == 2 and err.splitlines()[-1].startswith("repic photos list: error: argument --")
    assert "Traceback" not in err and "\x1b" not in err
    assert not (tmp_path / "lib.sqlite").exists()

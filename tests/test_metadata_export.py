"""Export from the library (consistency check, record, photo row update), the `repic export` /
`repic metadata` commands, and a SIGKILL in the middle of a 200-file export."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from repic_desktop.cli import main
from repic_desktop.core.library import Box, Library
from repic_desktop.core.scanner import scan_folder
from repic_desktop.metadata import ExportOptions, WriteOptions, check_consistency, export_photos
from repic_desktop.metadata.export import accepted_photo_ids, photo_values
from repic_desktop.metadata.safety import cleanup_stale_temps
from repic_desktop.metadata.writer import default_backends

from tests.helpers.metadata_files import (
    HAVE_EXIFTOOL, exif_facts, make_image, needs_pyexiv2, pixel_hash, read_with, sha,
)
from tests.helpers.killed_export import POINT_SCRIPT, kill_album
from tests.helpers.cli_run import run

pytestmark = needs_pyexiv2


@pytest.fixture
def album(tmp_path):
    root = tmp_path / "album"
    root.mkdir()
    make_image(root / "a.jpg", size=(120, 80), orientation=6)   # displayed 80x120
    make_image(root / "b.png")
    make_image(root / "c.heic")
    make_image(root / "d.webp")
    make_image(root / "e.tif")
    return root


@pytest.fixture
def lib(tmp_path, album):
    lib = Library(tmp_path / "lib.sqlite")
    scan_folder(lib, str(album))
    for name, kind in (("Anya", "person"), ("Zoë", "person"), ("小明", "person"), ("Rex", "pet"), ("Teddy", "other")):
        lib.concepts.add(name, kind)
    ids = {Path(p.path).name: p.id for p in lib.photos.list()}
    a = ids["a.jpg"]
    lib.concepts.tag(a, "Anya", box=Box(5, 10, 20, 30))
    lib.concepts.tag(a, "Zoë", box=Box(40, 10, 20, 30))
    lib.concepts.tag(a, "小明", box=Box(10, 60, 20, 20))
    lib.concepts.tag(a, "Rex", box=Box(40, 70, 30, 40))
    lib.concepts.tag(a, "Teddy")
    lib.captions.add(a, "<Anya>, <Zoë> and <小明> with <Rex> and <Teddy> on the sofa", status="accepted")
    lib.concepts.tag(ids["b.png"], "Anya")
    lib.concepts.tag(ids["b.png"], "Rex")
    lib.captions.add(ids["b.png"], "<Anya> and <Bob> at the park", status="accepted")
    lib.concepts.tag(ids["c.heic"], "Zoë", box=Box(10, 10, 30, 30))
    lib.captions.add(ids["c.heic"], "<Zoë> smiling", status="accepted")
    lib.captions.add(ids["d.webp"], "<Anya> draft", status="draft")
    lib.ids = ids
    yield lib
    lib.close()


def test_consistency_is_checked_both_ways(lib):
    assert check_consistency(lib, lib.ids["a.jpg"]) == []
    issues = {(i.kind, i.name) for i in check_consistency(lib, lib.ids["b.png"])}
    assert issues == {("unknown_name", "Bob"), ("not_in_caption", "Rex")}
    lib.concepts.untag(lib.ids["c.heic"], "Zoë")
    assert [(i.kind, i.name) for i in check_consistency(lib, lib.ids["c.heic"])] == [("caption_name_not_tagged", "Zoë")]


def test_photo_values_strip_brackets_and_normalise_boxes(lib):
    p = lib.photos.get(lib.ids["a.jpg"])
    v = photo_values(lib, p, lib.captions.current(p.id))
    assert v.caption == "Anya, Zoë and 小明 with Rex and Teddy on the sofa"
    assert [(x.name, x.kind) for x in v.people] == [("Anya", "person"), ("Zoë", "person"), ("小明", "person"), ("Rex", "pet")]
    assert v.keywords == ["Teddy"] and v.display_size == (80, 120)
    assert v.regions[0].box == (5 / 80, 10 / 120, 20 / 80, 30 / 120)
    assert photo_values(lib, p, lib.captions.current(p.id), keep_brackets=True).caption.startswith("<Anya>")


def test_export_all_accepted_writes_records_and_stays_in_sync_with_the_library(lib, album):
    ids = accepted_photo_ids(lib)
    assert sorted(ids) == sorted([lib.ids["a.jpg"], lib.ids["b.png"], lib.ids["c.heic"]])
    pix = {n: pixel_hash(album / n) for n in lib.ids}
    before = {n: sha(album / n) for n in lib.ids}
    dry = export_photos(lib, ids, dry_run=True, backends=default_backends())
    assert dry.counts == {"would-write": 3}
    assert {n: sha(album / n) for n in lib.ids} == before
    assert lib.captions.current(lib.ids["a.jpg"]).status == "accepted"
    a_changes = {c["key"]: c for c in dry.photos[0].as_dict()["changes"]}
    assert a_changes["XMP-dc:Description"]["old"] is None
    assert a_changes["XMP-dc:Description"]["new"] == "Anya, Zoë and 小明 with Rex and Teddy on the sofa"

    rep = export_photos(lib, ids, backends=default_backends())
    assert rep.counts == {"written": 3}, [p.as_dict() for p in rep.photos]
    by = {Path(p.path).name: p for p in rep.photos}
    assert {i.name for i in by["b.png"].issues} == {"Bob", "Rex"}
    expected_target = "file" if HAVE_EXIFTOOL else "sidecar"
    assert by["c.heic"].result.target == expected_target
    for n in ("a.jpg", "b.png", "c.heic"):
        assert pixel_hash(album / n) == pix[n] and exif_facts(album / n)[0] == "2021:07:04 12:34:56"
        cap = lib.captions.current(lib.ids[n])
        assert cap.status == "exported"
        rec = cap.provenance["export"]
        assert rec["status"] == "written" and rec["caption"] and rec["owned"]
    # the photo rows follow the rewritten files, so a rescan sees nothing changed
    a = lib.photos.get(lib.ids["a.jpg"])
    assert a.content_hash == sha(album / "a.jpg") and a.size == os.path.getsize(album / "a.jpg")
    report = scan_folder(lib, str(album))
    assert report.updated == 0 and report.unchanged == 5
    # what other apps see, in the stored frame of the rotated photo
    v = read_with("auto", album / "a.jpg")
    assert v["XMP-dc:Description"] == "Anya, Zoë and 小明 with Rex and Teddy on the sofa"
    assert v["XMP-dc:Subject"] == ["Anya", "Zoë", "小明", "Rex", "Teddy"]
    assert v["XMP-mwg-rs:RegionInfo"]["AppliedToDimensions"] == {"W": 120, "H": 80, "Unit": "pixel"}
    # displayed box (5,10,20,30) of an 80x120 view = stored (10, 55, 30, 20) for orientation 6
    area = v["XMP-mwg-rs:RegionInfo"]["RegionList"][0]["Area"]
    assert (area["X"], area["Y"], area["W"], area["H"]) == (0.208333, 0.8125, 0.25, 0.25)
    # a second export changes nothing; untagging Rex removes only what we wrote
    again = export_photos(lib, [lib.ids["a.jpg"]], backends=default_backends())
    assert again.counts == {"unchanged": 1}
    lib.concepts.untag(lib.ids["a.jpg"], "Rex")
    lib.captions.add(lib.ids["a.jpg"], "<Anya>, <Zoë> and <小明> with <Teddy>", status="accepted")
    assert export_photos(lib, [lib.ids["a.jpg"]], backends=default_backends()).counts == {"written": 1}
    v = read_with("auto", album / "a.jpg")
    assert "Rex" not in v["XMP-dc:Subject"] and [r["Name"] for r in v["XMP-mwg-rs:RegionInfo"]["RegionList"]] == \
        ["Anya", "Zoë", "小明"]


def test_export_refusals_strict_drafts_and_missing(lib, album):
    opts = ExportOptions(strict=True)
    rep = export_photos(lib, [lib.ids["b.png"], lib.ids["d.webp"], lib.ids["e.tif"]], opts, backends=default_backends())
    reasons = {Path(p.path).name: (p.status, p.reason) for p in rep.photos}
    assert reasons["b.png"][0] == "refused" and "<Bob>" in reasons["b.png"][1]
    assert reasons["d.webp"] == ("refused", "the caption is a draft: accept it first (or use --include-drafts)")
    assert reasons["e.tif"] == ("refused", "no caption yet")
    rep = export_photos(lib, [lib.ids["d.webp"]], ExportOptions(include_drafts=True, keep_brackets=True),
                        backends=default_backends())
    assert rep.counts == {"written": 1}
    assert read_with("auto", album / "d.webp")["XMP-dc:Description"] == "<Anya> draft"
    os.unlink(album / "b.png")
    scan_folder(lib, str(album))
    rep = export_photos(lib, [lib.ids["b.png"]], backends=default_backends())
    assert rep.photos[0].status == "refused" and "missing" in rep.photos[0].reason


def test_sidecar_only_export_never_touches_originals(lib, album):
    before = {n: sha(album / n) for n in lib.ids}
    rep = export_photos(lib, accepted_photo_ids(lib), ExportOptions(write=WriteOptions(sidecar="always")),
                        backends=default_backends())
    assert rep.counts == {"written": 3}
    assert {n: sha(album / n) for n in lib.ids} == before
    assert sorted(p.name for p in album.glob("*.xmp")) == ["a.jpg.xmp", "b.png.xmp", "c.heic.xmp"]
    assert lib.photos.get(lib.ids["a.jpg"]).content_hash == before["a.jpg"]   # the photo row did not change


# ------------------------------------------------------------------------------------------ CLI


def test_cli_export_show_and_errors(lib, album, capsys, tmp_path):
    L = ["--library", str(tmp_path / "lib.sqlite")]
    code, out, err = run(capsys, "export", *L)
    assert code == 1 and err.strip() == "repic: error: nothing to export: give PHOTO ids/paths or --all-accepted"
    code, out, _ = run(capsys, "export", "--all-accepted", "--dry-run", "--json", *L)
    data = json.loads(out)
    assert code == 0 and data["dry_run"] and data["counts"] == {"would-write": 3}
    assert data["options"]["groups"] == ["caption", "title", "people", "regions", "keywords"]
    code, out, _ = run(capsys, "export", "--all-accepted", "--dry-run", *L)
    assert "XMP-dc:Description: (none) -> 'Anya, Zoë and 小明 with Rex and Teddy on the sofa'" in out
    assert "check: the caption names <Bob>, who is not a known person, pet or thing" in out
    code, out, _ = run(capsys, "export", str(album / "a.jpg"), "--fields", "caption", "--quiet", *L)
    assert code == 0 and "1 written" in out
    v = read_with("auto", album / "a.jpg")
    assert v["XMP-dc:Description"].startswith("Anya") and "XMP-iptcExt:PersonInImage" not in v
    code, out, err = run(capsys, "export", str(album / "d.webp"), "--json", *L)
    assert code == 1 and json.loads(out)["photos"][0]["status"] == "refused"
    assert err.strip() == "repic: error: 1 of 1 photo(s) not written (reasons above)"
    with pytest.raises(SystemExit) as exc:
        main(["export", "1", "--fields", "caption,faces", *L])
    assert exc.value.code == 2 and "unknown: faces" in capsys.readouterr().err
    # show: a library photo, and any file
    code, out, _ = run(capsys, "metadata", "show", str(lib.ids["a.jpg"]), *L)
    assert code == 0 and "caption:  'Anya, Zoë and 小明 with Rex and Teddy on the sofa'" in out
    code, out, _ = run(capsys, "metadata", "show", str(album / "e.tif"), "--json", *L)
    assert code == 0 and json.loads(out)["caption"] is None
    code, _, err = run(capsys, "metadata", "show", str(album / "nope.jpg"), *L)
    assert code == 1 and "neither a photo in the library nor a file" in err
    code, out, _ = run(capsys, "metadata", "fields")
    assert code == 0 and "XMP-mwg-rs:RegionInfo" in out


# ------------------------------------------------------------------------------------------ kill -9

KILL_SCRIPT = textwrap.dedent("""
    import sys
    from repic_desktop.core.library import Library
    from repic_desktop.metadata import export_photos, accepted_photo_ids
    lib = Library(sys.argv[1])
    ids = accepted_photo_ids(lib)
    print("start", len(ids), flush=True)
    export_photos(lib, ids, progress=lambda d, t, p: print(d, flush=True))
    print("done", flush=True)
""")


def test_sigkill_during_a_200_file_export_leaves_no_broken_file(tmp_path):
    db, folder, original, complete = kill_album(tmp_path, 200)
    repo = Path(__file__).resolve().parents[1]
    for stop_at, extra_delay in ((25, 0.0), (90, 0.0013), (160, 0.0007)):
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(db)], stdout=subprocess.PIPE, text=True,
                                cwd=repo)
        for line in proc.stdout:
            if line.strip().isdigit() and int(line) >= stop_at or line.startswith("done"):
                break
        time.sleep(extra_delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        states = {}
        for f in sorted(folder.iterdir()):
            if f.name.startswith("."):
                continue
            h = sha(f)
            assert h in (original, complete), f"{f.name} is neither the original nor completely written"
            states[h] = states.get(h, 0) + 1
        assert states.get(complete, 0) >= stop_at - 1
    # leftovers of a killed write are hidden temp files, which the next export removes once stale
    assert len([f for f in os.listdir(folder) if f.startswith(".")]) <= 3
    cleanup_stale_temps(str(folder), older_than=0)
    assert [f for f in os.listdir(folder) if f.startswith(".")] == []
    with Library(db) as lib:   # finishing the job: everything ends up complete, the library agrees
        rep = export_photos(lib, accepted_photo_ids(lib))
        assert not rep.failed
        assert all(sha(f) == complete for f in folder.iterdir())
        assert {lib.captions.current(p.id).status for p in lib.photos.list()} == {"exported"}


@pytest.mark.parametrize("where", ["before", "after"])
def test_sigkill_just_before_and_just_after_the_replace(tmp_path, where):
    """The two worst moments, hit exactly: the temp file is complete but not yet renamed (the original
    must be intact), and the file is replaced but the library has not recorded it yet (a re-run
    must find it unchanged and record it)."""
    db, folder, original, complete = kill_album(tmp_path, 5)
    out = subprocess.run([sys.executable, "-c", POINT_SCRIPT, str(db), where, "3"], cwd=Path(__file__).parents[1],
                         capture_output=True, text=True)
    assert out.returncode == -signal.SIGKILL, out.stderr
    files = sorted(f for f in folder.iterdir() if not f.name.startswith("."))
    hashes = [sha(f) for f in files]
    done = 3 if where == "after" else 2
    assert hashes == [complete] * done + [original] * (5 - done)
    leftovers = [f.name for f in folder.iterdir() if f.name.startswith(".")]
    assert len(leftovers) == (1 if where == "before" else 0)
    with Library(db) as lib:
        statuses = [lib.captions.current(p.id).status for p in lib.photos.list()]
        assert statuses == ["exported"] * 2 + ["accepted"] * 3
        rep = export_photos(lib, accepted_photo_ids(lib))
        assert [p.status for p in rep.photos] == (["unchanged", "written", "written"] if where == "after"
                                                  else ["written"] * 3)
    assert all(sha(f) == complete for f in files)

"""Export writes only the photo the library imported, never over another program's edit, leaves the
user a writable sidecar, and cleans up after a killed export (issue #13, item 2)."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from repic_desktop.core.library import Box, Library
from repic_desktop.core.scanner import scan_folder
from repic_desktop.metadata import ExportOptions, WriteOptions, export_photos
from repic_desktop.metadata import replace, safety
from repic_desktop.metadata.export import accepted_photo_ids
from repic_desktop.metadata.writer import default_backends

from tests.helpers.killed_export import POINT_SCRIPT, kill_album
from tests.helpers.metadata_files import HAVE_EXIFTOOL, make_image, needs_exiftool, needs_pyexiv2, sha

pytestmark = needs_pyexiv2


def exiftool_json(path) -> dict:
    out = subprocess.run(["exiftool", "-j", "-G1", "-struct", "--", str(path)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)[0]


@pytest.fixture
def pair(tmp_path):
    """Two photos of exactly the same size and mtime (a camera burst copied with its times), each with
    its own person, box and accepted caption."""
    root = tmp_path / "album"
    root.mkdir()
    a = make_image(root / "a.jpg", size=(64, 48), seed=1)
    data = a.read_bytes()
    assert data.count(b"2021:07:04") == 1
    (root / "b.jpg").write_bytes(data.replace(b"2021:07:04", b"2021:07:05"))   # same size, other bytes
    st = os.stat(a)
    os.utime(root / "b.jpg", ns=(st.st_atime_ns, st.st_mtime_ns))
    lib = Library(tmp_path / "lib.sqlite")
    scan_folder(lib, str(root))
    lib.concepts.add("Anya", "person")
    lib.concepts.add("Ben", "person")
    ids = {Path(p.path).name: p.id for p in lib.photos.list()}
    lib.concepts.tag(ids["a.jpg"], "Anya", box=Box(2, 2, 20, 20))
    lib.captions.add(ids["a.jpg"], "<Anya> on the left", status="accepted")
    lib.concepts.tag(ids["b.jpg"], "Ben", box=Box(30, 20, 20, 20))
    lib.captions.add(ids["b.jpg"], "<Ben> on the right", status="accepted")
    lib.ids = ids
    yield lib, root
    lib.close()


def _rows(lib):
    return {p.filename: (p.size, p.mtime_ns, p.content_hash) for p in lib.photos.list()}


def test_photos_swapped_by_rename_are_both_refused(pair):
    lib, root = pair
    rows = _rows(lib)
    os.rename(root / "a.jpg", root / "tmp.jpg")
    os.rename(root / "b.jpg", root / "a.jpg")
    os.rename(root / "tmp.jpg", root / "b.jpg")
    before = {n: sha(root / n) for n in ("a.jpg", "b.jpg")}
    rep = export_photos(lib, accepted_photo_ids(lib), backends=default_backends())
    assert [p.status for p in rep.photos] == ["refused", "refused"], [p.as_dict() for p in rep.photos]
    reasons = {Path(p.path).name: p.reason for p in rep.photos}
    assert reasons["a.jpg"].startswith(f"the file is now the photo imported as {root / 'b.jpg'} (swapped")
    assert reasons["b.jpg"].startswith(f"the file is now the photo imported as {root / 'a.jpg'} (swapped")
    assert {n: sha(root / n) for n in before} == before          # nothing written
    assert _rows(lib) == rows                                     # the library still knows the real photos
    assert {lib.captions.current(i).status for i in lib.ids.values()} == {"accepted"}
    if HAVE_EXIFTOOL:
        for n in before:
            tags = exiftool_json(root / n)
            assert not any(k.startswith("XMP") for k in tags), tags


def test_after_a_rescan_swapped_photos_get_their_own_captions(pair):
    lib, root = pair
    os.utime(root / "b.jpg", ns=(0, 1_600_000_000 * 10 ** 9))   # times differ: the rescan sees the swap
    scan_folder(lib, str(root))
    os.rename(root / "a.jpg", root / "tmp.jpg")
    os.rename(root / "b.jpg", root / "a.jpg")
    os.rename(root / "tmp.jpg", root / "b.jpg")
    assert scan_folder(lib, str(root)).moved == 2
    rep = export_photos(lib, accepted_photo_ids(lib), backends=default_backends())
    assert rep.counts == {"written": 2}
    if HAVE_EXIFTOOL:
        assert exiftool_json(root / "a.jpg")["XMP-dc:Description"] == "Ben on the right"   # b's picture
        assert exiftool_json(root / "b.jpg")["XMP-dc:Description"] == "Anya on the left"


def test_a_replaced_file_is_refused_and_the_rest_of_the_batch_goes_on(pair):
    lib, root = pair
    make_image(root / "a.jpg", size=(64, 48), seed=7)   # another picture saved under the same name
    replaced = sha(root / "a.jpg")
    rep = export_photos(lib, accepted_photo_ids(lib), backends=default_backends())
    by = {Path(p.path).name: p for p in rep.photos}
    assert by["a.jpg"].status == "refused" and "changed since it was imported" in by["a.jpg"].reason
    assert by["b.jpg"].status == "written"
    assert sha(root / "a.jpg") == replaced


def test_a_touched_but_identical_file_is_still_written(pair):
    lib, root = pair
    os.utime(root / "a.jpg", ns=(1, 1_000_000_000))   # a backup tool reset the time, content is the same
    rep = export_photos(lib, [lib.ids["a.jpg"]], backends=default_backends())
    assert rep.counts == {"written": 1}


def _edit_in_place_keeping_size_and_time(path: Path) -> bytes:
    """What `exiv2 -k` style tools do: rewrite bytes in the same inode, restore the mtime."""
    st = os.stat(path)
    data = path.read_bytes()
    theirs = data.replace(b"TestMake", b"TheirMak")
    assert theirs != data and len(theirs) == len(data)
    with open(path, "r+b") as f:
        f.write(theirs)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_ino == st.st_ino
    return theirs


def test_an_edit_saved_in_place_during_the_export_is_not_overwritten(pair, monkeypatch):
    lib, root = pair
    real = replace.atomic_replace
    theirs = {}

    def replace_after_another_program_saved(path, *a, **kw):
        theirs[path] = _edit_in_place_keeping_size_and_time(Path(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(replace, "atomic_replace", replace_after_another_program_saved)
    rep = export_photos(lib, [lib.ids["a.jpg"]], backends=default_backends())
    assert rep.photos[0].status == "refused" and "changed on disk while" in rep.photos[0].reason
    assert (root / "a.jpg").read_bytes() == theirs[str(root / "a.jpg")]
    assert [f for f in os.listdir(root) if f.startswith(".")] == []


def test_a_sidecar_saved_by_another_program_during_the_export_is_not_overwritten(pair, monkeypatch):
    lib, root = pair
    opts = ExportOptions(write=WriteOptions(sidecar="always"))
    assert export_photos(lib, [lib.ids["a.jpg"]], opts, backends=default_backends()).counts == {"written": 1}
    side = root / "a.jpg.xmp"
    lib.captions.add(lib.ids["a.jpg"], "<Anya> on the left, laughing", status="accepted")
    real = replace.atomic_replace
    digikam = side.read_bytes().replace(b"on the left", b"digiKam!!!!")

    def replace_after_digikam_saved(path, *a, **kw):
        side.write_bytes(digikam)
        return real(path, *a, **kw)

    monkeypatch.setattr(replace, "atomic_replace", replace_after_digikam_saved)
    rep = export_photos(lib, [lib.ids["a.jpg"]], opts, backends=default_backends())
    assert rep.photos[0].status == "refused" and "changed on disk while" in rep.photos[0].reason
    assert side.read_bytes() == digikam


def test_a_sidecar_created_by_another_program_during_the_export_is_not_overwritten(pair, monkeypatch):
    lib, root = pair
    side = root / "a.jpg.xmp"
    real = replace.atomic_replace
    theirs = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>"

    def replace_after_digikam_created_it(path, *a, **kw):
        side.write_bytes(theirs)
        return real(path, *a, **kw)

    monkeypatch.setattr(replace, "atomic_replace", replace_after_digikam_created_it)
    rep = export_photos(lib, [lib.ids["a.jpg"]], ExportOptions(write=WriteOptions(sidecar="always")),
                        backends=default_backends())
    assert rep.photos[0].status == "refused" and "created the file while" in rep.photos[0].reason
    assert side.read_bytes() == theirs


def test_a_read_only_photo_gets_a_writable_sidecar_and_exports_again(pair):
    lib, root = pair
    photo = root / "a.jpg"
    os.chmod(photo, 0o444)
    before = sha(photo)
    rep = export_photos(lib, [lib.ids["a.jpg"]], backends=default_backends())
    assert rep.counts == {"written": 1} and rep.photos[0].result.target == "sidecar"
    side = root / "a.jpg.xmp"
    mode = stat.S_IMODE(os.stat(side).st_mode)
    assert mode == safety.new_file_mode() and mode & stat.S_IWUSR, oct(mode)
    assert export_photos(lib, [lib.ids["a.jpg"]], backends=default_backends()).counts == {"unchanged": 1}
    lib.captions.add(lib.ids["a.jpg"], "<Anya> again", status="accepted")
    assert export_photos(lib, [lib.ids["a.jpg"]], backends=default_backends()).counts == {"written": 1}
    assert sha(photo) == before and stat.S_IMODE(os.stat(photo).st_mode) == 0o444
    if HAVE_EXIFTOOL:
        assert exiftool_json(side)["XMP-dc:Description"] == "Anya again"


def test_a_read_only_sidecar_is_refused_with_a_reason(pair):
    lib, root = pair
    opts = ExportOptions(write=WriteOptions(sidecar="always"))
    assert export_photos(lib, [lib.ids["a.jpg"]], opts, backends=default_backends()).counts == {"written": 1}
    os.chmod(root / "a.jpg.xmp", 0o444)    # the user protected it (root ignores the bit: we do not)
    lib.captions.add(lib.ids["a.jpg"], "<Anya> again", status="accepted")
    rep = export_photos(lib, [lib.ids["a.jpg"]], opts, backends=default_backends())
    assert rep.photos[0].status == "refused" and "read-only" in rep.photos[0].reason


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _temp_of(folder: Path, pid: int, name: str) -> Path:
    t = folder / f"{safety.TEMP_PREFIX}{safety._host_tag()}-{pid}-0123456789ab-{name}"
    t.write_bytes(b"a full copy of the photo")
    return t


def test_temps_of_a_dead_writer_go_at_the_next_export_those_of_a_live_one_stay(pair):
    lib, root = pair
    dead = _temp_of(root, _dead_pid(), "a.jpg")
    live_proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        live = _temp_of(root, live_proc.pid, "b.jpg")
        exiftool_side = Path(str(_temp_of(root, _dead_pid(), "b.jpg")) + "_exiftool_tmp")
        os.rename(str(exiftool_side)[:-len("_exiftool_tmp")], exiftool_side)
        rep = export_photos(lib, accepted_photo_ids(lib), backends=default_backends())
        assert rep.counts == {"written": 2}
        assert not dead.exists() and not exiftool_side.exists()
        assert live.exists()
    finally:
        live_proc.stdin.close()
        live_proc.wait()


def test_an_import_removes_a_dead_writers_temps_too(pair):
    lib, root = pair
    (root / "sub").mkdir()
    dead = _temp_of(root / "sub", _dead_pid(), "x.jpg")
    mine = _temp_of(root, os.getpid(), "a.jpg")       # a write running in this process right now
    old_style = root / f"{safety.TEMP_PREFIX}0123456789ab-b.jpg"
    old_style.write_bytes(b"young, owner unknown")
    r = scan_folder(lib, str(root))
    assert not dead.exists() and mine.exists() and old_style.exists()
    assert (r.added, r.unchanged, r.skipped) == (0, 2, [])


def test_the_leftover_of_a_real_killed_export_is_removed_by_the_next_one(tmp_path):
    db, folder, original, complete = kill_album(tmp_path, 3)
    out = subprocess.run([sys.executable, "-c", POINT_SCRIPT, str(db), "before", "2"],
                         cwd=Path(__file__).parents[1], capture_output=True, text=True)
    assert out.returncode == -signal.SIGKILL, out.stderr
    leftovers = [f for f in os.listdir(folder) if f.startswith(".")]
    assert len(leftovers) == 1 and os.path.getsize(folder / leftovers[0]) > 1000
    with Library(db) as lib:
        rep = export_photos(lib, accepted_photo_ids(lib))
        assert not rep.failed
    assert [f for f in os.listdir(folder) if f.startswith(".")] == []


# ------------------------------------------------------------------------------------------ RAW frame

@needs_exiftool
def test_a_digikam_raw_sidecar_keeps_its_applied_to_dimensions(tmp_path):
    """digiKam gives a RAW's regions in the RAW's full frame (6246x4170); we only know its embedded
    preview (1620x1080). Our regions go into the frame the sidecar already uses, normalised boxes
    unchanged (same aspect), instead of relabelling every region with the preview's size. The sidecar
    is built here in digiKam 8's layout (no public RAW sidecar with regions was found)."""
    from tests.helpers.corpus import encode_jpeg, gradient, tiff_raw_bytes
    from tests.helpers.metadata_files import digikam_packet

    album = tmp_path / "album"
    album.mkdir()
    nef = album / "DSC_0042.NEF"
    nef.write_bytes(tiff_raw_bytes(encode_jpeg(gradient(size=(1620, 1080))), date="2023:08:01 12:00:00"))
    side = album / "DSC_0042.NEF.xmp"
    side.write_text(digikam_packet(6246, 4170), encoding="utf-8")
    before = exiftool_json(side)
    assert before["XMP-mwg-rs:RegionInfo"]["AppliedToDimensions"] == {"W": 6246, "H": 4170, "Unit": "pixel"}
    with Library(tmp_path / "lib.sqlite") as lib:
        scan_folder(lib, str(album))
        photo = lib.photos.list()[0]
        assert (photo.width, photo.height) == (1620, 1080)
        lib.concepts.add("Anya Smith", "person")
        lib.concepts.add("Zoë", "person")
        lib.concepts.tag(photo.id, "Anya Smith", box=Box(162, 108, 324, 324))
        lib.concepts.tag(photo.id, "Zoë", box=Box(810, 540, 162, 216))
        lib.captions.add(photo.id, "<Anya Smith> and <Zoë> by the lake", status="accepted")
        rep = export_photos(lib, [photo.id], backends=default_backends())
        assert rep.counts == {"written": 1}, rep.photos[0].as_dict()
        after = exiftool_json(side)
        info = after["XMP-mwg-rs:RegionInfo"]
        assert info["AppliedToDimensions"] == {"W": 6246, "H": 4170, "Unit": "pixel"}
        areas = {r.get("Name"): r["Area"] for r in info["RegionList"]}
        # digiKam's own regions of other people stay exactly as they were
        old = {r.get("Name"): r["Area"] for r in before["XMP-mwg-rs:RegionInfo"]["RegionList"]}
        assert areas["Ben"] == old["Ben"] and areas[None] == old[None] and areas["Fido"] == old["Fido"]
        # ours: normalised in the same frame (centre x = (162 + 162) / 1620 = 0.2)
        assert (areas["Anya Smith"]["X"], areas["Anya Smith"]["Y"], areas["Anya Smith"]["W"]) == (0.2, 0.25, 0.2)
        assert (areas["Zoë"]["X"], areas["Zoë"]["Y"], areas["Zoë"]["H"]) == (0.55, 0.6, 0.2)
        assert export_photos(lib, [photo.id], backends=default_backends()).counts == {"unchanged": 1}

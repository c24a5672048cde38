"""Rescans that must not lose track of which photo is which (issue #13): an empty folder (the mount
point of an unplugged drive) marks nothing missing; photos swapped by renames follow their content."""
from __future__ import annotations

import hashlib
import json
import os
import shutil

from repic_desktop.cli import main
from repic_desktop.core.library import Library
from repic_desktop.core.scanner import scan_folder
from tests.helpers.corpus import make_jpegs


def _unplug(folder):
    """What the mount point looks like once the drive is gone: the empty folder (maybe a .DS_Store),
    unchanged since it was made, before the drive was mounted and imported."""
    shutil.rmtree(folder)
    os.mkdir(folder)
    (folder / ".DS_Store").write_bytes(b"\0")
    os.utime(folder, (1_500_000_000, 1_500_000_000))


def test_an_empty_root_is_a_vanished_drive_not_deleted_photos(tmp_path, library):
    root = tmp_path / "drive"
    make_jpegs(root / "2019", 3)
    make_jpegs(root, 2)
    scan_folder(library, root)
    _unplug(root)
    r = scan_folder(library, root)
    assert (r.missing, r.held) == (0, 5)
    assert r.skipped == [{"path": str(root), "reason": "the folder is empty or not mounted (unplugged drive?): "
                                                      "its 5 photo(s) were not marked missing"}]
    assert library.counts()["missing"] == 0
    assert library.counts()["skipped"] == 0   # nothing to remember about it


def test_an_empty_subfolder_mount_point_keeps_its_photos_a_deleted_folder_does_not(tmp_path, library):
    root = tmp_path / "photos"
    make_jpegs(root / "usb", 2)
    make_jpegs(root / "album", 2)
    (kept,) = make_jpegs(root, 1)
    scan_folder(library, root)
    _unplug(root / "usb")
    shutil.rmtree(root / "album")          # a folder the user deleted: its photos are missing
    r = scan_folder(library, root)
    assert (r.missing, r.held, r.unchanged) == (2, 2, 1)
    assert [s["path"] for s in r.skipped] == [str(root / "usb")]
    missing = {os.path.basename(os.path.dirname(p.path)) for p in library.photos.list(include_missing=True)
               if p.status == "missing"}
    assert missing == {"album"}


def test_photos_moved_out_of_a_folder_are_missing_although_it_is_empty(tmp_path, library):
    root = tmp_path / "photos"
    make_jpegs(root / "sorted", 2)
    scan_folder(library, root)
    for f in (root / "sorted").iterdir():
        os.rename(f, tmp_path / f.name)     # the folder's mtime moves on: these photos were taken away
    r = scan_folder(library, root)
    assert (r.missing, r.held, r.skipped) == (2, 0, [])


def test_cli_import_of_an_unplugged_drive_says_so(tmp_path, capsys):
    root = tmp_path / "drive"
    make_jpegs(root, 3)
    L = ["--library", str(tmp_path / "lib.sqlite")]
    assert main(["import", str(root), "--quiet", *L]) == 0
    capsys.readouterr()
    _unplug(root)
    assert main(["import", str(root), *L]) == 0
    out = capsys.readouterr().out
    assert "0 missing" in out and "empty or not mounted" in out and "3 photo(s) were not marked missing" in out
    assert main(["import", str(root), "--json", *L]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["missing"], data["held"]) == (0, 3)
    with Library(tmp_path / "lib.sqlite") as lib:
        assert lib.counts()["missing"] == 0
        assert len(lib.photos.list()) == 3


def _swap(a, b):
    tmp = a.with_name("swap.tmp")
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)


def test_photos_swapped_by_renames_follow_their_content(tmp_path, library):
    root = tmp_path / "photos"
    files = make_jpegs(root, 6)
    for i, f in enumerate(files):   # different times, as photos taken one after another have
        os.utime(f, ns=(0, (1_600_000_000 + i) * 10 ** 9))
    scan_folder(library, root)
    ids = {library.photos.by_path(f).content_hash: library.photos.by_path(f).id for f in files}
    for h, pid in ids.items():
        library.captions.add(pid, f"caption of {h}")
    a, b, c, d, e, f = files
    _swap(a, b)                                    # an exchange
    os.rename(c, root / "x.tmp")                   # a rotation: c <- d <- e <- c
    os.rename(d, c)
    os.rename(e, d)
    os.rename(root / "x.tmp", e)
    r = scan_folder(library, root)
    assert (r.moved, r.updated, r.unchanged, r.added, r.missing) == (5, 0, 1, 0, 0), r
    for path in files:
        p = library.photos.by_path(path)
        h = hashlib.sha256(path.read_bytes()).hexdigest()
        assert p.content_hash == h and p.id == ids[h] and library.captions.current(p.id).text == f"caption of {h}"
    assert scan_folder(library, root).unchanged == 6


def test_a_photo_copied_over_another_is_an_update_not_a_swap(tmp_path, library):
    root = tmp_path / "photos"
    a, b = make_jpegs(root, 2)
    os.utime(a, ns=(0, 1_600_000_000 * 10 ** 9))
    scan_folder(library, root)
    ida, idb = library.photos.by_path(a).id, library.photos.by_path(b).id
    shutil.copyfile(b, a)
    r = scan_folder(library, root)
    assert (r.moved, r.updated) == (0, 1)
    assert library.photos.by_path(a).id == ida and library.photos.by_path(b).id == idb

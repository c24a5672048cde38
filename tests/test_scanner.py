"""core/scanner.py: import of the odd/bad corpus, incremental rescans, moves, missing, cancel, batches."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from repic_desktop.core import images, scanner
from repic_desktop.core.images import is_transient_reason
from repic_desktop.core.library import Library, display_path
from repic_desktop.core.scanner import ScanError, scan_folder
from tests.helpers.corpus import build_corpus, jpeg_bytes, make_jpegs, write


@pytest.fixture
def corpus(tmp_path):
    return build_corpus(tmp_path)


def count_probes(monkeypatch) -> list[bytes]:
    calls: list[bytes] = []
    real = images.probe_file

    def spy(path):
        calls.append(os.fsencode(path))
        return real(path)
    monkeypatch.setattr(images, "probe_file", spy)
    return calls


def photo_paths(lib: Library, **kw) -> set[bytes]:
    return {p.path_bytes for p in lib.photos.list(**kw)}


# ------------------------------------------------------------------------------ the corpus

@pytest.mark.parametrize("threaded", [False, True], ids=["inline", "thread-pool"])
def test_corpus_import_imports_the_odd_and_skips_the_bad(corpus, library, monkeypatch, threaded):
    if threaded:  # real photos are big enough to be read by the worker threads; force it here
        monkeypatch.setattr(scanner, "THREAD_MIN_BYTES", 0)
    report = scan_folder(library, corpus.root)

    assert photo_paths(library) == set(corpus.good)
    for path, (w, h, fmt) in corpus.good.items():
        p = library.photos.by_path(path)
        assert (p.width, p.height, p.format, p.status) == (w, h, fmt, "ok"), path
    assert report.added == len(corpus.good) and report.total == len(corpus.good) + len(corpus.bad)

    skipped = {s["path"]: s["reason"] for s in report.skipped}
    assert set(skipped) == {display_path(p) for p in corpus.bad}
    for path, fragment in corpus.bad.items():
        assert fragment in skipped[display_path(path)]
        assert library.photos.skip_state(path)[0] == skipped[display_path(path)]
    for p in corpus.ignored:
        assert library.photos.by_path(p) is None
    nef = library.photos.by_path(corpus.p("DSC_0002.nef"))
    assert (nef.orientation, nef.date_taken, nef.format) == (6, "2022-03-04T05:06:07", "RAW")

    o6 = library.photos.by_path(corpus.p("oriented6.jpg"))
    assert (o6.orientation, o6.date_taken) == (6, "2021-07-04T10:11:12")
    # the non-UTF-8 name round-trips as bytes; the display form replaces the bad byte
    cafe = library.photos.by_path(corpus.p(b"caf\xe9.jpg"))
    assert cafe.fs_path == os.fsdecode(corpus.p(b"caf\xe9.jpg")) and cafe.filename == "caf\ufffd.jpg"

    d = json.loads(json.dumps(report.as_dict()))
    for key in ("added", "unchanged", "updated", "moved", "missing", "restored", "skipped",
                "seconds"):
        assert key in d


def test_nothing_in_the_corpus_is_modified(corpus, library):
    before = corpus.snapshot()
    scan_folder(library, corpus.root)
    scan_folder(library, corpus.root)
    assert corpus.snapshot() == before


def test_rescan_does_not_reopen_unchanged_or_already_skipped_files(corpus, library, monkeypatch):
    first = scan_folder(library, corpus.root)
    calls = count_probes(monkeypatch)
    again = scan_folder(library, corpus.root)
    transient = {p for p, r in ((s["path"], s["reason"]) for s in first.skipped) if is_transient_reason(r)}
    assert {display_path(c) for c in calls} <= transient   # only access errors are retried
    if not corpus.permission_enforced:
        assert calls == []
    assert again.unchanged == len(corpus.good)
    assert (again.added, again.updated, again.moved, again.missing) == (0, 0, 0, 0)
    assert sorted(map(str, again.skipped)) == sorted(map(str, first.skipped))


def test_changed_file_is_reread_and_keeps_its_id(tmp_path, library, monkeypatch):
    root = tmp_path / "photos"
    (p,) = make_jpegs(root, 1)
    scan_folder(library, root)
    old = library.photos.by_path(p)
    cap = library.captions.add(old.id, "Grandma in the garden.")
    p.write_bytes(jpeg_bytes(size=(80, 40)))
    os.utime(p, ns=(old.mtime_ns + 10**9, old.mtime_ns + 10**9))
    calls = count_probes(monkeypatch)
    r = scan_folder(library, root)
    assert (r.updated, r.added, len(calls)) == (1, 0, 1)
    new = library.photos.by_path(p)
    assert new.id == old.id and new.content_hash != old.content_hash and (new.width, new.height) == (80, 40)
    assert library.captions.current(new.id).id == cap


def test_photo_that_becomes_unusable_is_missing_not_dropped(tmp_path, library):
    root = tmp_path / "photos"
    (p,) = make_jpegs(root, 1)
    scan_folder(library, root)
    pid = library.photos.by_path(p).id
    library.captions.add(pid, "A cat.")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    r = scan_folder(library, root)
    assert r.missing == 1 and "truncated JPEG" in r.skipped[0]["reason"]
    assert library.photos.get(pid).status == "missing" and library.captions.current(pid).text == "A cat."
    p.write_bytes(data)  # repaired
    r = scan_folder(library, root)
    assert r.restored == 1 and library.photos.get(pid).status == "ok" and library.photos.skip_state(p) is None


# ------------------------------------------------------------------------------ moves, copies, missing

def test_rename_is_a_move_that_keeps_id_and_caption(tmp_path, library):
    root = tmp_path / "photos"
    a, b = make_jpegs(root, 2)
    scan_folder(library, root)
    pid = library.photos.by_path(a).id
    library.captions.add(pid, "<Anna> blowing out candles.")
    (root / "2019 trip").mkdir()
    moved_to = root / "2019 trip" / "renamed.jpg"
    os.rename(a, moved_to)
    r = scan_folder(library, root)
    assert (r.moved, r.added, r.missing) == (1, 0, 0)
    p = library.photos.by_path(moved_to)
    assert p.id == pid and p.status == "ok" and p.folder == str(root / "2019 trip")
    assert library.captions.current(pid).text == "<Anna> blowing out candles."
    assert library.photos.by_path(a) is None


def test_folder_rename_moves_every_photo(tmp_path, library):
    root = tmp_path / "photos"
    files = make_jpegs(root / "old name", 5)
    scan_folder(library, root)
    ids = {library.photos.by_path(f).id for f in files}
    os.rename(root / "old name", root / "new name")
    r = scan_folder(library, root)
    assert (r.moved, r.added, r.missing) == (5, 0, 0)
    assert {p.id for p in library.photos.list()} == ids


def test_move_to_another_imported_folder(tmp_path, library):
    a, b = tmp_path / "A", tmp_path / "B"
    (f,) = make_jpegs(a, 1)
    b.mkdir()
    scan_folder(library, a)
    pid = library.photos.by_path(f).id
    shutil.move(f, b / f.name)
    r = scan_folder(library, b)
    assert r.moved == 1 and library.photos.by_path(b / f.name).id == pid
    assert scan_folder(library, a).missing == 0  # nothing left to lose there


def test_copy_is_a_new_photo(tmp_path, library):
    root = tmp_path / "photos"
    (f,) = make_jpegs(root, 1)
    scan_folder(library, root)
    shutil.copy2(f, root / "copy.jpg")
    r = scan_folder(library, root)
    assert (r.added, r.moved, r.unchanged) == (1, 0, 1)
    a, b = library.photos.by_path(f), library.photos.by_path(root / "copy.jpg")
    assert a.id != b.id and a.content_hash == b.content_hash


def test_deleted_is_missing_then_restored(tmp_path, library):
    root = tmp_path / "photos"
    f1, f2 = make_jpegs(root, 2)
    scan_folder(library, root)
    pid = library.photos.by_path(f1).id
    library.captions.add(pid, "Beach.")
    backup = tmp_path / "backup.jpg"
    shutil.copy2(f1, backup)
    f1.unlink()
    r = scan_folder(library, root)
    assert r.missing == 1 and library.photos.get(pid).status == "missing"
    assert photo_paths(library) == {os.fsencode(f2)}
    assert os.fsencode(f1) in photo_paths(library, include_missing=True)
    assert scan_folder(library, root).missing == 0  # counted once
    shutil.copy2(backup, f1)  # same bytes, same mtime: not even reopened
    r = scan_folder(library, root)
    assert (r.restored, r.added, r.moved) == (1, 0, 0)
    assert library.photos.get(pid).status == "ok" and library.captions.current(pid).text == "Beach."


def test_deleted_and_moved_back_under_another_name(tmp_path, library):
    root = tmp_path / "photos"
    (f,) = make_jpegs(root, 1)
    scan_folder(library, root)
    pid = library.photos.by_path(f).id
    os.rename(f, tmp_path / "away.jpg")
    assert scan_folder(library, root).missing == 1
    os.rename(tmp_path / "away.jpg", root / "back.jpg")
    r = scan_folder(library, root)
    assert r.moved == 1 and library.photos.get(pid).status == "ok" and library.photos.get(pid).filename == "back.jpg"


def test_skip_records_follow_the_files(tmp_path, library):
    root = tmp_path / "photos"
    make_jpegs(root, 1)
    bad = write(root / "notes.jpg", b"just text\n")
    gone = write(root / "gone.jpg", b"")
    scan_folder(library, root)
    assert library.photos.skip_state(bad) and library.photos.skip_state(gone)
    os.unlink(gone)
    with open(bad, "wb") as f:
        f.write(jpeg_bytes())
    r = scan_folder(library, root)
    assert r.added == 1 and r.skipped == []
    assert library.photos.skip_state(bad) is None and library.photos.skip_state(gone) is None
    assert library.counts()["skipped"] == 0


def test_root_unavailable_raises_and_marks_nothing_missing(tmp_path, library):
    root = tmp_path / "drive"
    make_jpegs(root, 3)
    scan_folder(library, root)
    shutil.move(root, tmp_path / "unplugged")
    with pytest.raises(ScanError, match="folder not found"):
        scan_folder(library, root)
    assert library.counts()["missing"] == 0
    with pytest.raises(ScanError, match="not a folder"):
        scan_folder(library, tmp_path / "unplugged" / "img_00000.jpg")


def test_unreadable_subfolder_is_reported_and_its_photos_not_lost(tmp_path, library, monkeypatch):
    root = tmp_path / "photos"
    make_jpegs(root / "private", 2)
    make_jpegs(root / "public", 1)
    scan_folder(library, root)
    real = os.scandir
    locked = os.fsencode(root / "private")

    def scandir(path):
        if os.fsencode(path) == locked:
            raise PermissionError(13, "Permission denied", path)
        return real(path)
    monkeypatch.setattr(os, "scandir", scandir)
    r = scan_folder(library, root)
    assert r.missing == 0 and library.counts()["photos"] == 3
    assert r.skipped == [{"path": str(root / "private"), "reason": "cannot read folder: permission denied"}]


# ------------------------------------------------------------------------------ links and special files

def test_hard_links_and_file_links_import_once(tmp_path, library):
    root = tmp_path / "photos"
    (f,) = make_jpegs(root, 1)
    os.link(f, root / "zz_hardlink.jpg")
    os.symlink(f, root / "aa_symlink.jpg")
    r = scan_folder(library, root)
    assert r.added == 1 and photo_paths(library) == {os.fsencode(f)}


def test_fifo_named_jpg_does_not_block(tmp_path, library):
    root = tmp_path / "photos"
    make_jpegs(root, 1)
    os.mkfifo(root / "pipe.jpg")
    r = scan_folder(library, root)
    assert r.added == 1 and "not a regular file" in r.skipped[0]["reason"]


def test_library_files_folder_is_not_imported(tmp_path):
    root = tmp_path / "album"
    make_jpegs(root, 2)
    lib = Library(root / "lib.sqlite")  # library kept inside the album folder
    try:
        make_jpegs(lib.data_dir, 3)      # copied reference photos
        assert scan_folder(lib, root).added == 2
    finally:
        lib.close()


# ------------------------------------------------------------------------------ progress, cancel, batches

@pytest.mark.parametrize("threaded", [False, True], ids=["inline", "thread-pool"])
def test_progress_and_cancel_mid_scan(tmp_path, library, monkeypatch, threaded):
    if threaded:
        monkeypatch.setattr(scanner, "THREAD_MIN_BYTES", 0)
    root = tmp_path / "photos"
    files = make_jpegs(root, 12)
    seen = []
    r = scan_folder(library, root, progress=lambda d, t, p: seen.append((d, t, p)), cancel=lambda: len(seen) >= 5)
    assert r.cancelled and r.added == 5 and library.counts()["photos"] == 5
    assert [s[:2] for s in seen] == [(i, 12) for i in range(1, 6)]
    assert seen[0][2] == str(files[0])
    assert library.counts()["missing"] == 0
    r = scan_folder(library, root)
    assert (r.unchanged, r.added, r.cancelled) == (5, 7, False)


def test_cancel_during_walk_changes_nothing(tmp_path, library):
    root = tmp_path / "photos"
    make_jpegs(root, 3)
    scan_folder(library, root)
    for f in root.iterdir():
        f.unlink()
    r = scan_folder(library, root, cancel=lambda: True)
    assert r.cancelled and r.missing == 0 and library.counts()["missing"] == 0


def test_writes_are_committed_in_batches(tmp_path, library, monkeypatch):
    monkeypatch.setattr(scanner, "BATCH_FILES", 4)
    root = tmp_path / "photos"
    make_jpegs(root, 10)
    visible = []
    other = Library(library.path)  # another connection, like the GUI process

    def progress(done, total, path):
        visible.append(other.counts()["photos"])
    try:
        scan_folder(library, root, progress=progress)
    finally:
        other.close()
    assert visible[3] == 4 and visible[7] == 8 and visible[-1] == 10
    assert visible[2] == 0  # not one transaction per file either


def test_permission_denied_is_skipped_then_retried_after_chmod(tmp_path, library, monkeypatch):
    root = tmp_path / "photos"
    ok, locked = make_jpegs(root, 2)
    os.chmod(locked, 0)
    try:
        with open(locked, "rb"):
            enforced = False
    except PermissionError:
        enforced = True
    if not enforced:  # tests run as root: chmod 000 does not stop root, so let the OS "refuse" instead
        real_open = os.open

        def deny(path, *a, **k):
            if os.fsencode(path) == os.fsencode(locked) and os.stat(locked).st_mode & 0o777 == 0:
                raise PermissionError(13, "Permission denied", path)
            return real_open(path, *a, **k)
        monkeypatch.setattr(os, "open", deny)
    r = scan_folder(library, root)
    assert r.added == 1 and r.skipped == [{"path": str(locked), "reason": "permission denied"}]
    os.chmod(locked, 0o644)  # chmod does not change mtime: the stored skip must not stick
    r = scan_folder(library, root)
    assert (r.added, r.unchanged, r.skipped) == (1, 1, [])


def test_an_unexpected_error_skips_one_file_and_goes_on(tmp_path, library, monkeypatch):
    root = tmp_path / "photos"
    a, b, c = make_jpegs(root, 3)
    real = images.probe_file

    def flaky(path):
        if os.fsencode(path) == os.fsencode(b):
            raise RuntimeError("decoder exploded")
        return real(path)
    monkeypatch.setattr(images, "probe_file", flaky)
    r = scan_folder(library, root)
    assert r.added == 2 and "decoder exploded" in r.skipped[0]["reason"]
    monkeypatch.undo()
    assert scan_folder(library, root).added == 1  # retried: such reasons never stick

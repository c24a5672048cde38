"""The library must stay one library while the GUI holds it and other processes come and go (issue #13, 1).

Any close() of any descriptor on the library's inode drops every POSIX lock this process holds on it; the
next process to close the library then deletes the -wal and -shm files still in use here, and the two
processes diverge until the file is malformed. tests/lock_harness.py replays that with real processes; the
GUI's file dialog has its own test in tests/gui/test_file_dialogs.py.
"""
from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading

import pytest
from PIL import Image

from repic_desktop.cli import app as cli, common as cli_common
from repic_desktop.cli import main
from repic_desktop.core.concepts import import_reference_file
from repic_desktop.core.library import Library, LibraryError
from repic_desktop.core.scanner import scan_folder
from tests.helpers.lock_harness import Holder

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX advisory locks")

# Every file Python opens (builtins.open, io.open, os.open, from any thread) while `_recording` is set.
# Audit hooks cannot be removed, so one hook serves the whole session and records only when asked.
_recording: dict[int, list[str]] = {}
_lock = threading.Lock()


def _audit(event: str, args) -> None:
    if event == "open" and _recording and args and isinstance(args[0], (str, bytes, os.PathLike)):
        with _lock:
            for opened in _recording.values():
                opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


def test_the_harness_sees_the_damage_of_one_foreign_open_and_close(tmp_path):
    """The pitfall itself: the reproduction must notice it, or the other tests prove nothing."""
    holder = Holder(tmp_path / "library.sqlite")
    try:
        with open(holder.path, "rb") as f:  # what Qt's MIME sniffing did in the GUI process
            f.read(16)
        problems = holder.shared_problems()
    finally:
        holder.close()
    assert any("-wal/-shm deleted" in p for p in problems), problems
    assert any("does not see the holder's write" in p for p in problems), problems


def test_importing_the_folder_that_holds_the_library_never_opens_its_files(tmp_path):
    """The library may sit inside a photo folder, under any name (--library), and be reached through links
    named like photos: the scanner leaves its files alone by stat, without opening them."""
    album = tmp_path / "Album"
    album.mkdir()
    Image.new("RGB", (40, 30), (200, 120, 40)).save(album / "IMG_0001.jpg")
    holder = Holder(album / "library.sqlite")
    (album / "IMG_0002.jpg").symlink_to("library.sqlite")
    (album / "IMG_0003.jpg").symlink_to("library.sqlite-wal")
    (album / "IMG_0004.png").symlink_to(album / "library.sqlite-shm")
    own = {os.path.realpath(f"{holder.path}{s}") for s in ("", "-wal", "-shm", "-journal")}
    opened: list[str] = []
    try:
        _recording[id(opened)] = opened
        try:
            report = scan_folder(holder.lib, album)
        finally:
            del _recording[id(opened)]
        touched = sorted({p for p in opened if os.path.realpath(p) in own})
        problems = holder.shared_problems()
    finally:
        holder.close()
    assert touched == []
    assert problems == []
    assert report.added == 1 and not report.skipped    # the real photo; the library is no photo to report
    assert any(p.endswith("IMG_0001.jpg") for p in opened)  # the hook does see the scanner's reads


def test_a_reference_photo_file_that_is_the_library_is_refused_unopened(tmp_path):
    """`repic concept add-ref NAME FILE` / the People page: a typed name passes any file-type filter."""
    holder = Holder(tmp_path / "library.sqlite")
    (tmp_path / "me.jpg").symlink_to("library.sqlite")
    own = {os.path.realpath(f"{holder.path}{s}") for s in ("", "-wal", "-shm", "-journal")}
    opened: list[str] = []
    try:
        _recording[id(opened)] = opened
        try:
            for src in (holder.path, tmp_path / "me.jpg", f"{holder.path}-wal"):
                with pytest.raises(LibraryError, match="own database file"):
                    import_reference_file(holder.lib, "Held", src)
        finally:
            del _recording[id(opened)]
        problems = holder.shared_problems()
    finally:
        holder.close()
    assert [p for p in opened if os.path.realpath(p) in own] == []
    assert problems == []


def _damaged_library(path) -> None:
    """A real library whose concepts table's root page was overwritten (as a torn or foreign write would)."""
    with Library(path) as lib:
        with lib.transaction():
            for i in range(200):
                lib.concepts.add(f"Person {i}", "person", info="a few words about them " * 8)
    con = sqlite3.connect(path)
    root, page_size = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'concepts'").fetchone()[0], \
        con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    assert not os.path.exists(f"{path}-wal")  # the last close checkpointed: everything is in the file
    with open(path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xa5" * page_size)


@pytest.fixture
def no_torch(monkeypatch):
    """`repic status` without its multi-second torch import (the GPU line is not what is tested here)."""
    monkeypatch.setattr(cli, "device_summary", lambda: {"torch": None, "cuda": False, "summary": "not probed"})


def test_status_reports_a_library_that_fails_quick_check(isolated_env, no_torch, tmp_path, capsys):
    lib_path = tmp_path / "library.sqlite"
    _damaged_library(lib_path)

    code = main(["--library", str(lib_path), "status"])
    out, err = capsys.readouterr()
    assert code == cli_common.EXIT_DAMAGED != 0
    assert "DAMAGED" in out and "Page" in out                    # SQLite's own words for the problem
    assert ".recover" in out and "--read-metadata" in out        # and what the user can do about it
    assert "photos:" not in out                                  # no counts as if all were well

    code = main(["--library", str(lib_path), "status", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == cli_common.EXIT_DAMAGED
    assert data["integrity"]["ok"] is False and data["integrity"]["problems"]
    assert any(".recover" in step for step in data["recovery"])


def test_status_of_a_sound_library_says_so(isolated_env, no_torch, tmp_path, capsys):
    lib_path = tmp_path / "library.sqlite"
    Library(lib_path).close()
    assert main(["--library", str(lib_path), "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["integrity"] == {"ok": True, "problems": []}


def test_a_command_on_a_damaged_library_says_what_to_do_instead_of_a_traceback(isolated_env, tmp_path, capsys):
    lib_path = tmp_path / "library.sqlite"
    _damaged_library(lib_path)
    assert main(["--library", str(lib_path), "concept", "list"]) == 1
    err = capsys.readouterr().err
    assert "malformed" in err and "repic status" in err and "Traceback" not in err

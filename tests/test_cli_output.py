"""What `repic` prints, run as a real process (a UTF-8 stdout, C libraries writing to fd 1): a non-UTF-8 file
name in an export batch, exiv2 warnings during import --json (issue #13, item 2)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from repic_desktop.core.library import Library
from repic_desktop.core.scanner import scan_folder

from tests.helpers.metadata_files import make_image, needs_pyexiv2

ROOT = Path(__file__).resolve().parent.parent


def repic(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8", "LC_ALL": "C.UTF-8"}
    return subprocess.run([sys.executable, "-m", "repic_desktop", *args], capture_output=True, env=env, timeout=120)


NAMES = [b"a.jpg", b"caf\xe9.jpg", b"z.jpg"]  # the middle one is Latin-1, not UTF-8


@needs_pyexiv2
@pytest.mark.parametrize("as_json", [False, True])
def test_export_batch_with_a_latin1_file_name(tmp_path, as_json):
    album = os.path.join(os.fsencode(tmp_path), b"album")
    os.mkdir(album)
    for n in NAMES:
        make_image(os.fsdecode(os.path.join(album, n)))
    lib_path = str(tmp_path / "lib.sqlite")
    with Library(lib_path) as lib:
        scan_folder(lib, os.fsdecode(album))
        for p in lib.photos.list():
            lib.captions.add(p.id, "a day at the beach", status="accepted")
    r = repic("export", "--library", lib_path, "--all-accepted", *(["--json"] if as_json else []))
    out, err = r.stdout.decode("utf-8"), r.stderr.decode("utf-8")  # stdout is valid UTF-8
    assert r.returncode == 0, err
    assert "Traceback" not in err
    if as_json:
        data = json.loads(out)
        assert data["counts"] == {"written": 3}
        assert [os.fsencode(p["written_path"]) for p in data["photos"]] == [os.path.join(album, n) for n in NAMES]
    else:
        assert out.startswith("3 written, 0 unchanged, 0 refused, 0 failed")
        assert "caf\\xe9.jpg: written" in out
    with Library(lib_path) as lib:  # every photo's export was recorded
        assert [lib.captions.current(p.id).status for p in lib.photos.list()] == ["exported"] * 3
        for p in lib.photos.list():
            assert lib.captions.current(p.id).provenance["export"]["status"] == "written"


REAL = Path(__file__).parent / "realfiles"


def _album_with_raws(tmp_path: Path) -> Path:
    d = tmp_path / "raws"
    d.mkdir()
    canon = (REAL / "exiv2-bug528.jpg").read_bytes()  # its Canon maker note makes exiv2 print a [warn]
    (d / "photo.nef").write_bytes(canon)               # a JPEG named as a RAW
    (d / "cut.cr3").write_bytes(canon[:4000])           # a RAW that is not one, cut short
    (d / "ok.jpg").write_bytes(canon)
    return d


@needs_pyexiv2
def test_raw_facts_never_write_to_stdout(tmp_path):
    code = ("import sys; from repic_desktop.core import raw\n"
            "try:\n    raw.raw_facts(open(sys.argv[1], 'rb').read(), 10**8)\nexcept raw.NoPreview:\n    pass\n")
    r = subprocess.run([sys.executable, "-c", code, str(REAL / "exiv2-bug528.jpg")], capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b""


@needs_pyexiv2
def test_import_json_stdout_is_only_json_even_when_a_c_library_writes_to_fd_1(tmp_path):
    album = _album_with_raws(tmp_path)
    lib = str(tmp_path / "lib.sqlite")
    r = repic("import", str(album), "--library", lib, "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["added"] == 1 and {Path(s["path"]).name for s in data["skipped"]} == {"photo.nef", "cut.cr3"}
    # the CLI guard alone: exiv2 un-muted writes its warnings to fd 1 while `repic import --json` runs
    code = ("import sys; from repic_desktop.core import exiv2lib; from repic_desktop.cli import main\n"
            "exiv2lib.load().set_log_level(1)\n"
            "sys.exit(main(sys.argv[1:]))\n")
    r = subprocess.run([sys.executable, "-c", code, "import", str(album), "--library", str(tmp_path / "lib2.sqlite"),
                        "--json"], capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["added"] == 1
    assert b"[warn]" in r.stderr  # it went somewhere visible, just not into the JSON

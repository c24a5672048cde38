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

from .test_metadata_helpers import make_image, needs_pyexiv2

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
        for p in lib.list_photos():
            lib.add_caption(p.id, "a day at the beach", status="accepted")
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
        assert [lib.current_caption(p.id).status for p in lib.list_photos()] == ["exported"] * 3
        for p in lib.list_photos():
            assert lib.current_caption(p.id).provenance["export"]["status"] == "written"

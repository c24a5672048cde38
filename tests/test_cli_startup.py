"""Start-up cost of `repic`: commands that need no model import none of the heavy libraries.

Asserted on which modules a real process imports (python -X importtime lists every first import), not
on time: a time limit would fail on a loaded machine and pass on a fast one whatever the code does.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

# Each costs 0.1 s to several seconds to import; none is needed to list, tag or import photos.
HEAVY = ("torch", "transformers", "pandas", "pyarrow", "numpy", "PySide6", "cv2", "dlib", "pyexiv2",
         "huggingface_hub", "safetensors", "sqlite_utils")


def imported_packages(*args: str) -> set[str]:
    """Top-level names of every module the process imported (stdlib included)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":  # the header line
                names.add(name.split(".")[0])
    return names


def test_the_probe_sees_an_import():
    # Without this the assertions below could pass on a probe that sees nothing.
    assert {"numpy", "PIL"} <= imported_packages("-c", "import numpy, PIL.Image")


@pytest.mark.parametrize("command", [
    ["--version"],
    ["--help"],
    ["photos", "list"],
    ["concept", "list"],
    ["import", "{album}"],
    ["concept", "add", "Anya", "--kind", "person"],
    ["jobs", "list"],
])
def test_library_commands_import_no_heavy_library(tmp_path, command):
    album = tmp_path / "album"
    album.mkdir()
    Image.new("RGB", (64, 48), (10, 120, 200)).save(album / "a.jpg")
    argv = [a.format(album=album) for a in command]
    names = imported_packages("-m", "repic_desktop", "--library", str(tmp_path / "lib.sqlite"), *argv)
    assert "repic_desktop" in names
    assert sorted(names & set(HEAVY)) == []

"""Metadata benchmark (not a test): ms per photo to write a caption + 3 names + 3 face regions.

Everything is measured in one run, on fresh copies of the same JPEG, side by side:

  writer (auto)           the project's writer: checks (truncation, extension), merge with what is there,
                          pyexiv2 edit in memory, temp file + fsync + verify + os.replace + folder fsync
  writer (exiftool)       the same writer with the exiftool backend (stay-open)
  exiftool stay-open      bare exiftool -stay_open (PyExifTool), the same arguments, -overwrite_original
  exiftool per file       `exiftool ARGS -overwrite_original FILE`, a new process per photo: what users
                          script today

    python bench/metadata_bench.py                       # 200 photos, 640x480 and 4032x3024 (12 MP)
    python bench/metadata_bench.py --photos 50 --cli-photos 20 --sizes 640x480

Goal (issue 6): the project's writer >= 5x faster than the per-file command line.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repic_desktop.metadata.backends import Backends  # noqa: E402
from repic_desktop.metadata.exiftool_edit import exiftool_args, exiftool_executable  # noqa: E402
from repic_desktop.metadata.fields import CONTAINERS  # noqa: E402
from repic_desktop.metadata.plan import MetadataValues, Person, RegionBox, WriteOptions, plan_changes  # noqa: E402
from repic_desktop.metadata.writer import write_metadata  # noqa: E402

VALUES = MetadataValues(
    caption="Anya, Zoë and 小明 building a sandcastle at the beach",
    people=[Person("Anya"), Person("Zoë"), Person("小明")],
    regions=[RegionBox("Anya", "person", (0.10, 0.20, 0.10, 0.15)),
             RegionBox("Zoë", "person", (0.40, 0.20, 0.10, 0.15)),
             RegionBox("小明", "person", (0.65, 0.30, 0.08, 0.12))])


def make_jpeg(path: Path, w: int, h: int) -> None:
    """A photo-like JPEG (gradient + noise, quality 90) with EXIF date, GPS and orientation."""
    y, x = np.mgrid[0:h, 0:w]
    base = (x / w * 200 + y / h * 55).astype("int16")
    arr = np.clip(base[..., None] + np.random.default_rng(1).integers(-20, 20, (h, w, 3)), 0, 255).astype("uint8")
    ex = Image.Exif()
    ex[0x0112] = 1
    ex[0x010F] = "BenchCam"
    ex.get_ifd(0x8769)[0x9003] = "2024:07:04 12:34:56"
    gps = ex.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (52.0, 31.0, 12.0), "E", (13.0, 24.0, 36.0)
    Image.fromarray(arr).save(path, quality=90, exif=ex.tobytes())


def copies(src: Path, folder: Path, n: int) -> list[Path]:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    out = []
    for i in range(n):
        p = folder / f"IMG_{i:04d}.jpg"
        shutil.copyfile(src, p)
        out.append(p)
    return out


def timed(files, fn) -> float:
    t = time.perf_counter()
    for f in files:
        fn(f)
    return (time.perf_counter() - t) / len(files) * 1000


def run_size(work: Path, size: tuple[int, int], n: int, n_cli: int, have_et: bool) -> dict[str, float]:
    w, h = size
    src = work / f"src_{w}x{h}.jpg"
    make_jpeg(src, w, h)
    res: dict[str, float] = {"file_kb": src.stat().st_size / 1024}
    # the exact arguments our exiftool backend would send for this photo (same fields as the writer)
    plan = plan_changes({}, VALUES, WriteOptions(), containers=CONTAINERS["JPEG"], stored_dims=(w, h))
    args = exiftool_args(plan.changes)

    files = copies(src, work / "w_auto", n)
    with Backends("auto") as b:
        b.for_format("JPEG")
        res["writer (auto: pyexiv2)"] = timed(files, lambda f: _ok(write_metadata(f, VALUES, backends=b)))
    if have_et:
        files = copies(src, work / "w_et", n)
        with Backends("exiftool") as b:
            b.get("exiftool").et.execute("-ver")  # start the process outside the timing
            res["writer (exiftool backend)"] = timed(
                files, lambda f: _ok(write_metadata(f, VALUES, WriteOptions(backend="exiftool"), backends=b)))
        files = copies(src, work / "et_open", n)
        import exiftool
        with exiftool.ExifTool(executable=exiftool_executable(), common_args=[], encoding="utf-8") as et:
            et.execute("-ver")
            res["exiftool stay-open (bare)"] = timed(files, lambda f: et.execute(*args, "-overwrite_original", str(f)))
        files = copies(src, work / "et_cli", n_cli)
        exe = exiftool_executable()
        res["exiftool per file (CLI)"] = timed(files, lambda f: subprocess.run(
            [exe, *args, "-overwrite_original", str(f)], check=True, capture_output=True))
    for d in ("w_auto", "w_et", "et_open", "et_cli"):
        shutil.rmtree(work / d, ignore_errors=True)
    return res


def _ok(r):
    if r.status != "written":
        raise SystemExit(f"benchmark write failed: {r.path}: {r.status} {r.reason}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--cli-photos", type=int, default=None, help="photos for the per-file CLI (default: --photos)")
    ap.add_argument("--sizes", default="640x480,4032x3024")
    ap.add_argument("--dir", help="work folder (default: a temp folder, removed afterwards)")
    a = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
    have_et = exiftool_executable() is not None
    work = Path(a.dir) if a.dir else Path(tempfile.mkdtemp(prefix="repic-metadata-bench-"))
    try:
        et_version = (subprocess.run([exiftool_executable(), "-ver"], capture_output=True, text=True).stdout.strip()
                      if have_et else "not installed")
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, exiftool: {et_version}")
        import pyexiv2
        print(f"pyexiv2 {pyexiv2.__version__} (libexiv2 {pyexiv2.exiv2api.version()}), "
              f"{a.photos} photos per method ({a.cli_photos or a.photos} for the per-file CLI)\n")
        print("| size | file | method | ms/photo | per-file CLI / method |")
        print("| --- | --- | --- | --- | --- |")
        for size in sizes:
            r = run_size(work, size, a.photos, a.cli_photos or a.photos, have_et)
            kb = r.pop("file_kb")
            cli = r.get("exiftool per file (CLI)")
            for k, v in r.items():
                ratio = f"{cli / v:.1f}x" if cli else "-"
                print(f"| {size[0]}x{size[1]} | {kb:.0f} KB | {k} | {v:.1f} | {ratio} |", flush=True)
            if cli:
                mine = r["writer (auto: pyexiv2)"]
                print(f"\n{size[0]}x{size[1]}: the project's writer is {cli / mine:.1f}x faster than exiftool per file "
                      f"(goal >= 5x: {'met' if cli / mine >= 5 else 'NOT met'}), "
                      f"{r['exiftool stay-open (bare)'] / mine:.1f}x faster than bare exiftool stay-open\n")
    finally:
        if not a.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

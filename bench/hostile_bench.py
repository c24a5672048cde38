"""Hostile-input benchmark (not a test): how long the import takes to get past files built to make a
parser crawl, with the code of an older revision beside the current code, and a bare baseline.

    python bench/hostile_bench.py                     # old = ca66acb (before issue 14's "Hangs" fixes)
    python bench/hostile_bench.py --old REV --old-timeout 60 --regions 5000

Each case runs in a fresh subprocess, once with the working tree's code and once with `git archive REV`
of repic_desktop/ (old code that hangs is stopped at --old-timeout and shown as "> N s"). The bare
baseline is what any reader of the input must do at least: sha256 of the file, or exiv2 parsing the
sidecar without our code. Printed: seconds for each, old/new and new/bare ratios.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = ("dng_start_markers", "jpeg_start_then_zeros", "raw_ifd_big_entries", "sidecar_regions")


# ------------------------------------------------------------------ inputs

def build_inputs(folder: Path, regions: int) -> None:
    from PIL import Image
    (folder / "dng").mkdir()
    (folder / "dng" / "hostile.dng").write_bytes(b"\xff\xd8\xff" * 34_000)          # 102 KB
    (folder / "zeros").mkdir()
    b = io.BytesIO()
    Image.new("RGB", (16, 16)).save(b, "JPEG")
    (folder / "zeros" / "hostile.jpg").write_bytes(b.getvalue()[:20] + bytes(20 << 20))  # 20 MB
    (folder / "ifd").mkdir()
    n = 8000
    data_off = 8 + 2 + 12 * n + 4
    entries = b"".join(struct.pack("<HHII", 0x8000 + i, 4, 4096, data_off) for i in range(n))
    (folder / "ifd" / "hostile.dng").write_bytes(b"II*\x00" + struct.pack("<IH", 8, n) + entries + bytes(16388))
    album = folder / "sidecar"
    album.mkdir()
    Image.new("RGB", (1000, 1000), (200, 180, 160)).save(album / "photo.jpg")
    items = "".join(
        f'<rdf:li rdf:parseType="Resource"><mwg-rs:Name>Person {i}</mwg-rs:Name><mwg-rs:Type>Face</mwg-rs:Type>'
        f'<mwg-rs:Area stArea:x="{i % 50 / 50 + 0.01:.4f}" stArea:y="{i // 50 % 50 / 50 + 0.01:.4f}" '
        f'stArea:w="0.02" stArea:h="0.02" stArea:unit="normalized"/></rdf:li>' for i in range(regions))
    (album / "photo.jpg.xmp").write_text(
        '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
        'xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/" '
        'xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#" xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#">'
        '<mwg-rs:Regions rdf:parseType="Resource"><mwg-rs:AppliedToDimensions stDim:w="1000" stDim:h="1000" '
        f'stDim:unit="pixel"/><mwg-rs:RegionList><rdf:Bag>{items}</rdf:Bag></mwg-rs:RegionList></mwg-rs:Regions>'
        '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')


# ------------------------------------------------------------------ one measurement (in a subprocess)

def worker(case: str, folder: Path, bare: bool) -> float:
    import hashlib
    if case == "sidecar_regions":
        if bare:
            from repic_desktop.core import exiv2lib
            pyexiv2 = exiv2lib.load()
            t0 = time.perf_counter()
            with pyexiv2.Image(str(folder / "sidecar" / "photo.jpg.xmp")) as img:
                img.read_xmp()
            return time.perf_counter() - t0
        from repic_desktop.core.library import Library
        from repic_desktop.core.scanner import scan_folder
        from repic_desktop.metadata import read_metadata_into_library
        lib = Library(folder / f"lib-{os.getpid()}.sqlite")
        scan_folder(lib, folder / "sidecar")
        t0 = time.perf_counter()
        read_metadata_into_library(lib, [p.id for p in lib.photos.list()], create_concepts=True)
        return time.perf_counter() - t0
    path = folder / {"dng_start_markers": "dng/hostile.dng", "jpeg_start_then_zeros": "zeros/hostile.jpg",
                     "raw_ifd_big_entries": "ifd/hostile.dng"}[case]
    if bare:
        t0 = time.perf_counter()
        hashlib.sha256(path.read_bytes()).hexdigest()
        return time.perf_counter() - t0
    from repic_desktop.core import images
    images.probe_file(str(folder / "sidecar" / "photo.jpg"))   # warm: imports and lazy loads not timed
    t0 = time.perf_counter()
    try:
        images.probe_file(path)
    except images.UnusableImage:
        pass
    return time.perf_counter() - t0


def run(case: str, folder: Path, code: Path, bare: bool, timeout: float) -> float | None:
    env = dict(os.environ, PYTHONPATH=str(code))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", case, str(folder)] + (["--bare"] if bare else [])
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", default="ca66acb", help="revision whose repic_desktop/ is the old code")
    ap.add_argument("--old-timeout", type=float, default=120.0)
    ap.add_argument("--regions", type=int, default=20_000)
    ap.add_argument("--worker", nargs=2, metavar=("CASE", "FOLDER"), help=argparse.SUPPRESS)
    ap.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(worker(args.worker[0], Path(args.worker[1]), args.bare))
        return
    tmp = Path(tempfile.mkdtemp(prefix="repic-hostile-"))
    try:
        old = tmp / "old"
        old.mkdir()
        tar = subprocess.run(["git", "-C", str(REPO), "archive", args.old, "repic_desktop"], capture_output=True,
                             check=True).stdout
        tarfile.open(fileobj=io.BytesIO(tar)).extractall(old)
        inputs = tmp / "inputs"
        inputs.mkdir()
        build_inputs(inputs, args.regions)
        print(f"{'case':<24} {'new s':>8} {'old s':>9} {'old/new':>9} {'bare s':>8} {'new/bare':>9}")
        for case in CASES:
            new = run(case, inputs, REPO, False, 600)
            bare = run(case, inputs, REPO, True, 600)
            was = run(case, inputs, old, False, args.old_timeout)
            old_s = f"{was:9.3f}" if was is not None else f"{'> ' + str(int(args.old_timeout)):>9}"
            ratio = f"{was / new:8.0f}×" if was is not None else f"{'> ' + str(int(args.old_timeout / new)):>8}×"
            print(f"{case:<24} {new:8.3f} {old_s} {ratio} {bare:8.3f} {new / bare:8.1f}×", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

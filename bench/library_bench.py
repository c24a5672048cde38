"""Library benchmark (not a test): import speed, rescan speed and caption search latency.

Every number is printed next to a bare baseline measured in the same run on the same files, because
these machines are noisy and only ratios travel between them.

    python bench/library_bench.py                 # 10,000 photos, 100,000 caption rows
    python bench/library_bench.py --photos 2000   # quicker

Goals (from the Foundation issue):
  import time per photo          <= 1.5 x  a bare loop that reads each file, hashes it and opens it with PIL
  unchanged rescan               <= 3   x  a bare os.scandir walk (with stat) of the same tree
  FTS search on 100k captions    <= 20 ms  per query (median)
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repic_desktop.core.library import Library  # noqa: E402
from repic_desktop.core.scanner import scan_folder  # noqa: E402

WORDS = ("beach park dog cat birthday cake garden snow bicycle sofa kitchen grandma picnic lake forest "
         "mountain ball kite boat train window balloon candle guitar sunset morning rain umbrella").split()
NAMES = ["Anya", "Bond", "Loid", "Yor", "Bruno", "Luna", "Max", "Mia", "Oma", "Opa"]


def make_photos(root: Path, n: int, size: tuple[int, int] = (320, 240), seed: int = 0) -> None:
    rnd = random.Random(seed)
    w, h = size
    # One noisy base picture (JPEG-compressed like a photo, not a flat colour), varied per file so every
    # file has its own content hash.
    base = Image.effect_noise((w, h), 40).convert("RGB")
    for i in range(n):
        folder = root / f"{2000 + i // 1000}" / f"album {i // 100 % 10:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        img = base.copy()
        img.paste((rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)), (0, 0, w // 4, h // 4))
        img.putpixel((i % w, (i // w) % h), (i % 256, (i // 256) % 256, 7))
        img.save(folder / f"IMG_{i:06d}.jpg", quality=85)


def list_files(root: Path) -> list[str]:
    out = []
    for dirpath, _dirs, files in os.walk(root):
        out.extend(os.path.join(dirpath, f) for f in files)
    return out


def bare_open_and_hash(root: Path) -> float:
    t = time.perf_counter()
    for path in list_files(root):
        with open(path, "rb") as fh:
            data = fh.read()
        hashlib.sha256(data).hexdigest()
        with Image.open(io.BytesIO(data)) as im:
            im.size  # noqa: B018 - the header parse is the point
    return time.perf_counter() - t


def bare_scandir_walk(root: Path) -> float:
    t = time.perf_counter()
    stack = [str(root)]
    n = 0
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                else:
                    e.stat()
                    n += 1
    return time.perf_counter() - t


def fts_latency(lib_path: Path, rows: int, queries: int = 50) -> dict[str, tuple[float, float]]:
    rnd = random.Random(1)
    with Library(lib_path) as lib, lib.transaction():
        base = lib.conn.execute("SELECT coalesce(max(id), 0) FROM photos").fetchone()[0]
        lib.conn.executemany(
            "INSERT INTO photos (id, path, path_bytes, folder, filename, size, mtime_ns, content_hash, status,"
            " added_at, updated_at) VALUES (?, ?, ?, '/fts', ?, 1, 1, ?, 'ok', 0, 0)",
            [(base + i + 1, f"/fts/{i}.jpg", f"/fts/{i}.jpg".encode(), f"{i}.jpg", f"fts{i}") for i in range(rows)])
        captions = []
        for i in range(rows):
            a, b = rnd.sample(NAMES, 2)
            text = (f"<{a}> and <{b}> " + " ".join(rnd.choice(WORDS) for _ in range(12))
                    + f" on a {rnd.choice(WORDS)} day.")
            captions.append((base + i + 1, text))
        lib.conn.executemany("INSERT INTO captions (photo_id, text, created_at) VALUES (?, ?, 0)", captions)
        lib.conn.execute("UPDATE photos SET current_caption_id = (SELECT max(id) FROM captions c"
                         " WHERE c.photo_id = photos.id) WHERE folder = '/fts'")
    # Deliberately unselective: a 30-word vocabulary puts each word in about a third of all captions,
    # the worst case for a full-text index.
    qs = [" ".join(rnd.sample(WORDS, 2)) if rnd.random() < 0.7 else rnd.choice(NAMES) for _ in range(queries)]
    results = {}
    with Library(lib_path) as lib:
        lib.search_captions("warmup")
        for label, fn in [("search_captions", lambda q: lib.search_captions(q, limit=100)),
                          ("list_photos(search=)", lambda q: lib.list_photos(search=q, limit=100))]:
            timings = []
            for q in qs:
                t = time.perf_counter()
                fn(q)
                timings.append(time.perf_counter() - t)
            results[label] = (statistics.median(timings), max(timings))
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=10_000)
    ap.add_argument("--captions", type=int, default=100_000)
    ap.add_argument("--size", default="320x240", help="photo size WxH (default 320x240, about 20 KB each)")
    ap.add_argument("--keep", action="store_true", help="keep the generated folder")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="repic-bench-"))
    root = work / "photos"
    try:
        t = time.perf_counter()
        size = tuple(int(v) for v in args.size.lower().split("x"))
        make_photos(root, args.photos, size)
        mb = sum(os.path.getsize(p) for p in list_files(root)) / 1e6
        print(f"generated {args.photos} {args.size} JPEGs ({mb / args.photos * 1e3:.1f} KB each) in "
              f"{time.perf_counter() - t:.1f} s under {root}")

        bare1 = bare_open_and_hash(root)  # also warms the page cache for both contenders
        lib_path = work / "bench.sqlite"
        with Library(lib_path) as lib:
            t = time.perf_counter()
            report = scan_folder(lib, root)
            import_s = time.perf_counter() - t
        assert report.added == args.photos, report.as_dict()
        bare2 = bare_open_and_hash(root)
        bare = min(bare1, bare2)
        n = args.photos
        print(f"\nimport:  {import_s / n * 1e3:.3f} ms/photo   bare read+sha256+PIL open: {bare / n * 1e3:.3f} ms/photo"
              f"   ratio {import_s / bare:.2f}x  (goal <= 1.5x)")

        rescans, walks = [], []
        for _ in range(3):  # interleaved so both see the same machine state
            walks.append(bare_scandir_walk(root))
            with Library(lib_path) as lib:
                t = time.perf_counter()
                r = scan_folder(lib, root)
                rescans.append(time.perf_counter() - t)
            assert r.unchanged == n and r.added == 0, r.as_dict()
        rescan, walk = min(rescans), min(walks)
        print(f"rescan:  {rescan * 1e3:.1f} ms unchanged rescan   bare os.scandir walk: {walk * 1e3:.1f} ms"
              f"   ratio {rescan / walk:.2f}x  (goal <= 3x)")

        t = time.perf_counter()
        for label, (med, worst) in fts_latency(lib_path, args.captions).items():
            print(f"search:  {label}: median {med * 1e3:.2f} ms, worst {worst * 1e3:.2f} ms per query on "
                  f"{args.captions:,} caption rows (goal <= 20 ms)")
        print(f"         [caption rows inserted and queried in {time.perf_counter() - t:.1f} s]")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Library benchmark (not a test): import speed, rescan speed and caption search latency.

Every number is printed next to a bare baseline measured in the same run on the same files, because
these machines are noisy and only ratios travel between them.

    python bench/library_bench.py                 # 10,000 photos, 100,000 caption rows
    python bench/library_bench.py --photos 2000   # quicker

Goals (from the Foundation issue):
  import time per photo          <= 1.5 x  a bare loop that reads each file, hashes it and opens it with PIL
  unchanged rescan               <= 3   x  a bare os.scandir walk (with stat) of the same tree
  FTS search on 100k captions    <= 20 ms  per query (median)

`repic photos list` (issue #14: 12 s, 30 s with --json, on 100k photos):

    python bench/library_bench.py --listing 100000  # only this: rows inserted with SQL, no image files

runs the command as it was (a query per photo for its caption and one for its concepts, every row kept,
one indented JSON document) and as it is (one streamed statement), each in a fresh process, and prints
time, memory growth and SQL statements side by side.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import resource
import statistics
import subprocess
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
        lib.captions.search("warmup")
        for label, fn in [("captions.search", lambda q: lib.captions.search(q, limit=100)),
                          ("photos.list(search=)", lambda q: lib.photos.list(search=q, limit=100))]:
            timings = []
            for q in qs:
                t = time.perf_counter()
                fn(q)
                timings.append(time.perf_counter() - t)
            results[label] = (statistics.median(timings), max(timings))
    return results


def make_listing_library(lib_path: Path, n: int, seed: int = 0) -> None:
    """n photos as rows only (no files): 70% captioned, 0-3 of 10 people/pets each."""
    rnd = random.Random(seed)
    with Library(lib_path) as lib:
        for name in NAMES:
            lib.concepts.add(name, "pet" if name in ("Bond", "Bruno", "Luna") else "person")
        cids = [c.id for c in lib.concepts.all()]
        with lib.transaction():
            rows = []
            for i in range(n):
                folder = f"/photos/{2000 + i // 1000}/album {i // 100 % 10:02d}"
                path = f"{folder}/IMG_{i:06d}.jpg"
                rows.append((i + 1, path, path.encode(), folder, f"IMG_{i:06d}.jpg", 40_000 + i, i, f"h{i:012x}"))
            lib.conn.executemany(
                "INSERT INTO photos (id, path, path_bytes, folder, filename, size, mtime_ns, content_hash, format,"
                " width, height, status, added_at, updated_at) VALUES (?,?,?,?,?,?,?,?,'JPEG',320,240,'ok',0,0)",
                rows)
            lib.conn.executemany(
                "INSERT INTO captions (photo_id, text, created_at, provenance) VALUES (?, ?, 0, ?)",
                [(i + 1, f"<{rnd.choice(NAMES)}> " + " ".join(rnd.choice(WORDS) for _ in range(10)),
                  json.dumps({"model": "demo", "seconds": 0.4, "preset": "default"}))
                 for i in range(n) if i % 10 < 7])
            lib.conn.execute("UPDATE photos SET current_caption_id ="
                             " (SELECT max(id) FROM captions c WHERE c.photo_id = photos.id)")
            lib.conn.executemany("INSERT INTO photo_concepts (photo_id, concept_id, created_at) VALUES (?, ?, 0)",
                                 [(i + 1, c) for i in range(n) for c in rnd.sample(cids, rnd.choice((0, 1, 1, 2, 3)))])


def old_cmd_photos_list(args) -> int:
    """`repic photos list` before issue #14, verbatim."""
    from repic_desktop.cli.common import open_library as _open_library
    from repic_desktop.cli.output import emit as _emit

    with _open_library(args) as lib:
        photos = lib.photos.list(uncaptioned=args.uncaptioned, concept=args.concept, search=args.search,
                                 include_missing=args.missing, limit=args.limit)
        rows = []
        for p in photos:
            d = p.as_dict()
            cap = lib.captions.current(p.id)
            d["caption"] = cap.text if cap else None
            d["caption_status"] = cap.status if cap else None
            d["concepts"] = [c.name for c in lib.concepts.of_photo(p.id)]
            rows.append(d)
        any_photos = bool(rows) or lib.counts()["photos"] > 0

    def text() -> str:
        out = []
        for r in rows:
            names = ", ".join(r["concepts"])
            line = f"{r['id']:>6}  {r['path']}" + (f"  [{names}]" if names else "")
            if r["status"] != "ok":
                line += f"  ({r['status']})"
            out.append(line)
            if r["caption"]:
                out.append(f"        {r['caption']}")
        if out:
            return "\n".join(out)
        return "no photos match" if any_photos else "no photos yet: import a folder with `repic import DIR`"

    _emit(args, rows, text)
    return 0


def listing_child(variant: str, lib_path: str, trace: bool) -> None:
    """One measurement in a fresh process: seconds, peak RSS growth (KB) over the imports, statements."""
    from repic_desktop.cli import app as cli

    impl, as_json = variant.split(":")
    statements = []
    if trace:
        init = Library.__init__

        def traced(self, *a, **k):
            init(self, *a, **k)
            self.conn.set_trace_callback(statements.append)
        Library.__init__ = traced
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if impl == "old":  # build_parser() binds the command when main() runs
        cli.cmd_photos_list = old_cmd_photos_list
    argv = ["--library", lib_path, "photos", "list"] + (["--json"] if as_json == "json" else [])
    if impl == "new-all" and as_json != "json":
        argv += ["--limit", str(10 ** 9)]
    with open(os.devnull, "w", encoding="utf-8") as out, contextlib.redirect_stdout(out):
        t = time.perf_counter()
        code = cli.main(argv)
        seconds = time.perf_counter() - t
    assert code == 0, code
    print(json.dumps({"seconds": seconds, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base,
                      "statements": len(statements)}))


def listing_bench(n: int, work: Path) -> None:
    lib_path = work / "listing.sqlite"
    t = time.perf_counter()
    make_listing_library(lib_path, n)
    print(f"generated a library of {n:,} photo rows (70% captioned, 0-3 names each) in "
          f"{time.perf_counter() - t:.1f} s")

    def child(variant: str, trace: bool = False) -> dict:
        out = subprocess.run([sys.executable, __file__, "--listing-child", variant, str(lib_path)]
                             + (["--trace"] if trace else []), capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    print(f"\n{'repic photos list':<34}{'before':>22}{'now':>22}{'ratio':>9}")
    for label, old, new in [("text, every photo", "old:text", "new-all:text"),
                            ("text, default page", "old:text", "new:text"),
                            ("--json, every photo", "old:json", "new:json")]:
        a = min((child(old) for _ in range(2)), key=lambda r: r["seconds"])
        b = min((child(new) for _ in range(2)), key=lambda r: r["seconds"])
        sa, sb = child(old, True)["statements"], child(new, True)["statements"]
        print(f"{label:<34}{a['seconds']:>20.2f} s{b['seconds']:>20.2f} s{a['seconds'] / b['seconds']:>8.1f}x")
        ratio = f"{a['rss_kb'] / b['rss_kb']:>8.1f}x" if b["rss_kb"] >= 1024 else f"{'-':>9}"
        print(f"{'  peak memory growth':<34}{a['rss_kb'] / 1024:>19.1f} MB{b['rss_kb'] / 1024:>19.1f} MB{ratio}")
        print(f"{'  SQL statements':<34}{sa:>22,}{sb:>22,}{sa / sb:>8.0f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=10_000)
    ap.add_argument("--captions", type=int, default=100_000)
    ap.add_argument("--size", default="320x240", help="photo size WxH (default 320x240, about 20 KB each)")
    ap.add_argument("--keep", action="store_true", help="keep the generated folder")
    ap.add_argument("--listing", type=int, metavar="N", help="only `repic photos list` on N photo rows")
    ap.add_argument("--listing-child", nargs=2, metavar=("VARIANT", "LIBRARY"), help=argparse.SUPPRESS)
    ap.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.listing_child:
        listing_child(*args.listing_child, args.trace)
        return 0
    if args.listing:
        work = Path(tempfile.mkdtemp(prefix="repic-bench-"))
        try:
            listing_bench(args.listing, work)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        return 0

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

"""Start-up time of `repic` commands that need no model (not a test).

Each command runs as a whole process, alternating with a bare interpreter (`python -c pass`, the floor
every command pays) and, with --before DIR, with the same command from another checkout (e.g. a
`git archive` of an older commit), so the numbers are side by side under the same load. Prints min and
median wall seconds and the ratios.

    python bench/startup_bench.py                          # this checkout
    python bench/startup_bench.py --before /tmp/old-tree   # against another checkout, side by side
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def run(tree: Path | None, argv: list[str], env: dict) -> float:
    cmd = [sys.executable, "-c", "pass"] if tree is None else [sys.executable, "-m", "repic_desktop", *argv]
    e = dict(env)
    if tree is not None:
        e["PYTHONPATH"] = str(tree)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=e, cwd=tree or HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", type=Path, help="another checkout to compare with, side by side")
    ap.add_argument("--runs", type=int, default=9)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="startup-bench-"))
    env = dict(os.environ, REPIC_CONFIG_DIR=str(work / "config"), HF_HUB_OFFLINE="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode cached after the first run
    album = work / "album"
    album.mkdir()
    from PIL import Image

    for i in range(5):
        Image.new("RGB", (64, 48), (40 * i, 0, 0)).save(album / f"p{i}.jpg")
    trees = {"this": HERE} | ({"before": args.before.resolve()} if args.before else {})
    libs = {}
    for name, tree in trees.items():
        libs[name] = work / name / "library.sqlite"
        run(tree, ["--library", str(libs[name]), "import", str(album)], env)
        run(tree, ["--library", str(libs[name]), "concept", "add", "Anya", "--kind", "person"], env)
    commands = {
        "--version": lambda lib: ["--version"],
        "photos list": lambda lib: ["--library", str(lib), "photos", "list"],
        "concept list": lambda lib: ["--library", str(lib), "concept", "list"],
        "import (5 photos, rescan)": lambda lib: ["--library", str(lib), "import", str(album)],
    }
    print(f"{'command':28s} {'tree':7s} {'min s':>7s} {'median s':>9s} {'/ bare':>7s}" +
          (f" {'before/this':>12s}" if args.before else ""))
    for label, argv in commands.items():
        times: dict[str, list[float]] = {"bare": []} | {name: [] for name in trees}
        for r in range(args.runs):
            order = ["bare", *trees] if r % 2 == 0 else [*reversed(list(trees)), "bare"]
            for name in order:
                tree = None if name == "bare" else trees[name]
                times[name].append(run(tree, argv(libs.get(name)), env))
        bare = statistics.median(times["bare"])
        for name in trees:
            med = statistics.median(times[name])
            extra = ""
            if args.before and name == "this":
                extra = f" {statistics.median(times['before']) / med:12.2f}"
            print(f"{label:28s} {name:7s} {min(times[name]):7.3f} {med:9.3f} {med / bare:7.1f}{extra}")
    print(f"bare interpreter (python -c pass): median {bare:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

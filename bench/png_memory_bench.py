"""Big-PNG memory benchmark (not a test): peak memory of import, thumbnail and captioning image
preparation for a 248-megapixel PNG of ~0.8 MB (issue #14, "Memory").

Each step runs in a fresh interpreter; its cost is the rise of /proc/self/status VmHWM (the high-water
mark of resident memory) over the mark after the imports. The baseline beside it is a bare Pillow
full decode of the same file (`Image.open(p).load()`, what every step cost before: ~1 GB), so the
ratios travel between machines. Linux only.

    python bench/png_memory_bench.py                  # 15748 x 15748 (248 MP), solid colour
    python bench/png_memory_bench.py --size 8000x6000 # 48 MP
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.png_builder import solid_png  # noqa: E402

_PROBE = """
import json, time
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
{setup}
base, t0 = hwm(), time.perf_counter()
result = {action}
print(json.dumps([hwm() - base, time.perf_counter() - t0, repr(result)]))
"""

STEPS = [
    ("bare Pillow full decode (baseline)", "from PIL import Image\nImage.MAX_IMAGE_PIXELS = None",
     "Image.open(PATH).load() and 0"),
    ("import: probe_file (hash + header)", "from repic_desktop.core.images import probe_file",
     "probe_file(PATH).info.width"),
    ("thumbnail 256 px", "from repic_desktop.core.thumbnails import ThumbnailCache\ncache = ThumbnailCache(TMP)",
     "cache.get_or_create(PATH, 'ab' * 32, 256).name"),
    ("fetch_image, engine's max_pixels (0.8 MP)",
     "from repic_desktop.captioning.prompt import ImageRef, MAX_PIXELS, fetch_image",
     "fetch_image(ImageRef(PATH), MAX_PIXELS).size"),
    ("fetch_image, default (keeps 12.8 MP)", "from repic_desktop.captioning.prompt import ImageRef, fetch_image",
     "fetch_image(ImageRef(PATH)).size"),
    ("fetch_image, box of 3000x2500 px",
     "from repic_desktop.captioning.prompt import ImageRef, MAX_PIXELS, fetch_image",
     "fetch_image(ImageRef(PATH, (1000, 2000, 3000, 2500)), MAX_PIXELS).size"),
]


def run(path: str, tmp: str, setup: str, action: str) -> tuple[float, float, str]:
    code = _PROBE.format(setup=setup.replace("TMP", repr(tmp)), action=action.replace("PATH", repr(path)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
    rise, seconds, result = json.loads(out.stdout.strip().splitlines()[-1])
    return rise, seconds, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="15748x15748")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.png")
        solid_png(path, w, h)
        print(f"{w}x{h} = {w * h / 1e6:.0f} MP PNG, {os.path.getsize(path) / 1e6:.2f} MB on disk")
        base_mb = base_s = None
        print(f"{'step':44} {'peak rise':>10} {'vs bare':>8} {'time':>8} {'vs bare':>8}  result")
        for name, setup, action in STEPS:
            rise, seconds, result = run(path, tmp, setup, action)
            if base_mb is None:
                base_mb, base_s = rise, seconds
            print(f"{name:44} {rise:8.0f} MB {rise / base_mb:7.2f}x {seconds:7.2f}s {seconds / base_s:7.2f}x  {result}")


if __name__ == "__main__":
    main()

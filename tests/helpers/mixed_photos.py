"""Twelve photos of different sizes and aspects: what a user's album looks like to the trainer (prompts of
different lengths in one batch), unlike the same-size test photos that hid the padding bug of issue 14."""
from __future__ import annotations

from pathlib import Path

SIZES = [(640, 480), (480, 640), (1024, 300), (300, 300), (800, 600), (200, 500), (700, 350), (512, 512),
         (333, 777), (900, 400), (256, 640), (640, 256)]


def make_mixed_size_photos(folder: Path) -> list[Path]:
    """p00.jpg … p11.jpg in `folder`, each with a blob the size of its quarter."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (w, h) in enumerate(SIZES):
        im = Image.new("RGB", (w, h), ((40 * i) % 256, (90 * i) % 256, (150 + 7 * i) % 256))
        ImageDraw.Draw(im).ellipse([w // 4, h // 4, w // 2, h // 2], fill=(200, 40, 90))
        out.append(folder / f"p{i:02d}.jpg")
        im.save(out[-1])
    return out

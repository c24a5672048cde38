"""Big PNGs: import reads headers only, captioning and thumbnails decode them reduced (issue #14,
"Memory"), and PNGs with large text chunks are not "corrupt".

The files are built by hand (tests/helpers/png_builder.py): a 48-megapixel solid PNG is ~150 KB on disk but
192 MB once decoded (Pillow keeps RGB as 4 bytes a pixel). Peak memory is measured in a fresh
subprocess from /proc/self/status VmHWM (the high-water mark of its resident memory), less the
mark after the imports, so one test's allocations never hide another's."""
from __future__ import annotations

import io
import json
import os
import random
import struct
import subprocess
import sys
import zlib

import pytest
from PIL import Image, PngImagePlugin

from repic_desktop.core import images
from repic_desktop.core.images import decode, limits, png_stripes
from repic_desktop.core.images import inspect_image, open_oriented, probe_file
from tests.helpers.png_builder import chunk, itxt_compressed, solid_png, ztxt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIG = (8000, 6000)  # 48 MP: a full decode holds 192 MB
BOUND_MB = 64

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="VmHWM is Linux-only")


def peak_mb(setup: str, action: str) -> tuple[float, str]:
    """Run `setup`, then `action` in a fresh interpreter: (MB the high-water mark rose by, printed result)."""
    code = f"""
import json
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
{setup}
base = hwm()
result = {action}
print(json.dumps([hwm() - base, repr(result)]))
"""
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    rise, result = json.loads(out.stdout.strip().splitlines()[-1])
    return rise, result


@pytest.fixture(scope="module")
def big_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "panorama.png"
    solid_png(path, *BIG, color=(200, 120, 40))
    assert path.stat().st_size < 1_000_000
    return path


def test_import_of_a_48_megapixel_png_reads_headers_only(big_png, tmp_path):
    # Pillow's PngImageFile.getexif() decodes every pixel to look for an eXIf chunk after the image data
    rise, result = peak_mb(
        "from repic_desktop.core.library import Library\nfrom repic_desktop.core.scanner import scan_folder\n"
        f"lib = Library({str(tmp_path / 'lib.sqlite')!r})",
        f"scan_folder(lib, {str(big_png.parent)!r}) and [(p.width, p.height) for p in lib.photos.list()]")
    assert result == "[(8000, 6000)]"
    assert rise < BOUND_MB, f"importing a 48 MP PNG raised peak memory by {rise:.0f} MB"


def test_captioning_a_48_megapixel_png_decodes_it_reduced(big_png):
    rise, result = peak_mb(
        "from repic_desktop.captioning.prompt import ImageRef, MAX_PIXELS, fetch_image",
        f"(lambda im: (im.size, im.getpixel((5, 5))))(fetch_image(ImageRef({str(big_png)!r}), MAX_PIXELS))")
    size, pixel = eval(result)
    assert pixel == (200, 120, 40)
    assert 802_816 * 0.9 <= size[0] * size[1] <= 4 * 802_816  # at least what the processor keeps
    assert rise < BOUND_MB, f"fetch_image of a 48 MP PNG raised peak memory by {rise:.0f} MB"


def test_caption_engine_prepares_a_48_megapixel_png_from_a_reduced_decode(big_png, demo_model_dir):
    # the engine's own image path (fetch_image, then the processor), with the tiny demo model
    rise, result = peak_mb(
        "from repic_desktop.captioning.engine import CaptionEngine\n"
        "from repic_desktop.captioning.prompt import ImageRef\n"
        "from repic_desktop.captioning.processor import load_processor\n"
        "from transformers import Qwen2_5_VLForConditionalGeneration\n"
        f"proc = load_processor({str(demo_model_dir)!r})\n"
        f"eng = CaptionEngine(Qwen2_5_VLForConditionalGeneration.from_pretrained({str(demo_model_dir)!r}), proc)",
        f"eng._process_image(ImageRef({str(big_png)!r}))[1]")
    t, h, w = eval(result)
    assert h * w * 14 * 14 <= 802_816
    assert rise < 2 * BOUND_MB, f"preparing a 48 MP PNG for captioning raised peak memory by {rise:.0f} MB"


def test_thumbnail_of_a_48_megapixel_png_decodes_it_reduced(big_png, tmp_path):
    rise, result = peak_mb(
        "from repic_desktop.core.thumbnails import ThumbnailCache\n"
        f"cache = ThumbnailCache({str(tmp_path / 'thumbs')!r})",
        f"str(cache.get_or_create({str(big_png)!r}, 'ab' * 32, 256))")
    assert Image.open(eval(result)).size == (256, 192)
    assert rise < BOUND_MB, f"a thumbnail of a 48 MP PNG raised peak memory by {rise:.0f} MB"


def test_boxed_reference_of_a_huge_png_is_cropped_in_reduced_pixels(tmp_path, monkeypatch):
    from repic_desktop.captioning.prompt import ImageRef, fetch_image

    im = Image.new("RGB", (1200, 800), (0, 0, 255))
    im.paste((255, 0, 0), (600, 400, 1200, 800))  # bottom-right quarter red
    path = tmp_path / "quarters.png"
    im.save(path)
    monkeypatch.setattr(limits, "STREAM_DECODE_PIXELS", 100_000)  # what open_oriented reads
    monkeypatch.setattr(images, "STREAM_DECODE_PIXELS", 100_000)  # what the captioner imports
    crop = fetch_image(ImageRef(str(path), (650, 450, 500, 300)), 28 * 28 * 16)
    assert crop.size[0] * crop.size[1] < 500 * 300  # decoded reduced...
    assert crop.getextrema() == ((255, 255), (0, 0), (0, 0))  # ...and still the box the user drew


_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _noise_png(w: int, h: int, depth: int, color: int, seed: int, trns: bool) -> bytes:
    """Random filtered rows with random filter types: every byte sequence is a valid PNG row, so this
    exercises all five filters against the row above, across stripe boundaries."""
    r = random.Random(seed)
    rowbytes = (w * depth * _CHANNELS[color] + 7) // 8
    raw = b"".join(bytes([r.randrange(5)]) + r.randbytes(rowbytes) for _ in range(h))
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
    if color == 3:
        out += chunk(b"PLTE", r.randbytes(3 * (1 << depth)))
        if trns:
            out += chunk(b"tRNS", bytes([0, 128]))
    data = zlib.compress(raw, 6)
    for i in range(0, len(data), 1000):
        out += chunk(b"IDAT", data[i:i + 1000])
    return out + chunk(b"IEND", b"")


@pytest.mark.parametrize("depth,color,trns", [
    (1, 0, False), (2, 0, False), (4, 0, False), (8, 0, False), (16, 0, False), (8, 2, False), (16, 2, False),
    (1, 3, False), (4, 3, True), (8, 3, False), (8, 3, True), (8, 4, False), (16, 4, False), (8, 6, False),
    (16, 6, False)])
def test_streamed_png_decode_equals_full_decode_then_reduce(depth, color, trns, monkeypatch):
    monkeypatch.setattr(png_stripes, "_STRIPE_BYTES", 3000)  # many stripes, most not aligned to anything
    data = _noise_png(101, 97, depth, color, seed=depth * 10 + color, trns=trns)
    full = Image.open(io.BytesIO(data))
    full.load()
    for factor in (2, 3, 7):
        want = png_stripes._png_stripe_to_common(full, full).reduce(factor)
        got = png_stripes._png_stream_reduced(PngImagePlugin.PngImageFile(io.BytesIO(data)), data, factor)
        assert (got.mode, got.size) == (want.mode, want.size)
        assert got.tobytes() == want.tobytes(), (depth, color, factor)


def test_streamed_decode_reports_a_truncated_png(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "STREAM_DECODE_PIXELS", 1000)
    data = _noise_png(300, 200, 8, 2, seed=1, trns=False)
    path = tmp_path / "cut.png"
    path.write_bytes(data[:len(data) // 2] + chunk(b"IEND", b""))  # IEND present, rows missing
    with pytest.raises(images.UnusableImage, match="truncated PNG"):
        open_oriented(path, max_side=50)


# ------------------------------------------------------------------------------ text chunks

def _small_png_with(chunks_before: bytes = b"", chunks_after: bytes = b"") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buf, "PNG")
    data = buf.getvalue()
    idat = data.index(b"IDAT") - 4
    iend = data.index(b"IEND") - 4
    return data[:idat] + chunks_before + data[idat:iend] + chunks_after + data[iend:]


def _text(n: int) -> bytes:
    return random.Random(n).randbytes(n // 2).hex().encode()  # hex: compresses to about half


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("kind", [ztxt, itxt_compressed], ids=["zTXt", "iTXt"])
def test_png_with_over_1mb_of_compressed_text_is_a_photo(tmp_path, where, kind):
    text = kind(b"Comment", _text(2_400_000))
    assert len(text) > 1_000_000
    path = tmp_path / "notes.png"
    path.write_bytes(_small_png_with(text, b"") if where == "before" else _small_png_with(b"", text))
    info = probe_file(path).info
    assert (info.format, info.width, info.height) == ("PNG", 64, 48)
    im = open_oriented(path)
    assert im.size == (64, 48) and im.getpixel((3, 3)) == (10, 200, 30)


def test_png_text_bomb_imports_without_inflating_it(tmp_path):
    bomb = ztxt(b"Comment", bytes(300_000_000))  # 300 MB of zeros in ~300 KB
    path = tmp_path / "bomb.png"
    path.write_bytes(_small_png_with(bomb * 3))
    rise, result = peak_mb("from repic_desktop.core.images import probe_file, open_oriented",
                           f"(probe_file({str(path)!r}).info.width, open_oriented({str(path)!r}).size)")
    assert result == "(64, (64, 48))"
    assert rise < 40, f"a PNG text bomb raised peak memory by {rise:.0f} MB"


def test_png_exif_after_the_image_data_still_gives_the_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "late_exif.png"
    path.write_bytes(_small_png_with(b"", chunk(b"eXIf", exif.tobytes())))
    info = inspect_image(path)
    assert (info.orientation, info.width, info.height) == (6, 48, 64)
    assert open_oriented(path).size == (48, 64)


def test_huge_jpeg_for_the_captioner_decodes_at_reduced_dct_scale(tmp_path, monkeypatch):
    path = tmp_path / "scan.jpg"
    Image.new("RGB", (1200, 800), (90, 90, 90)).save(path, quality=90)
    monkeypatch.setattr(limits, "STREAM_DECODE_PIXELS", 100_000)
    assert open_oriented(path, keep_pixels=10_000).size == (150, 100)  # 1/8 DCT scale, >= 10,000 px
    assert open_oriented(path).size == (1200, 800)


def test_streamed_decode_of_a_png_reopened_without_its_text(tmp_path, monkeypatch):
    path = tmp_path / "big_notes.png"
    solid_png(path, 900, 600, color=(1, 2, 250), extra_chunks=ztxt(b"Comment", _text(2_400_000)))
    monkeypatch.setattr(limits, "STREAM_DECODE_PIXELS", 100_000)
    monkeypatch.setattr(png_stripes, "_STRIPE_BYTES", 50_000)
    calls = []
    real = png_stripes._png_stream_reduced
    monkeypatch.setattr(decode, "_png_stream_reduced", lambda *a: calls.append(a[2]) or real(*a))
    im = open_oriented(path, max_side=100)
    assert calls == [9]
    assert im.size == (100, 67) and im.getpixel((50, 30)) == (1, 2, 250)

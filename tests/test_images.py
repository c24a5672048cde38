"""core/images/: format sniffing, cheap truncation checks, bomb limit, EXIF facts, decoding."""
from __future__ import annotations

import hashlib
import io
import os
import struct

import pytest
from PIL import Image, JpegImagePlugin

from repic_desktop.core.images import limits, plugins
from repic_desktop.core.images import (
    MAX_PIXELS, RAW_EXTENSIONS, SUPPORTED_EXTENSIONS, UnusableImage, inspect_image, open_oriented, probe_file,
)
from tests.helpers.corpus import (
    H, W, build_corpus, encode, gradient, gray16_png, heic_bytes, jpeg_bytes, palette_png, rgba_png, write,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("images"))


def reason_of(path=None, data=None) -> str:
    with pytest.raises(UnusableImage) as exc:
        if data is not None:
            inspect_image(path or "x", data)
        else:
            probe_file(path)
    return str(exc.value)


# ------------------------------------------------------------------------------ extensions, formats

def test_extension_lists():
    for ext in (".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp", ".heic", ".heif", ".hif", ".bmp", ".gif"):
        assert ext in SUPPORTED_EXTENSIONS
    for ext in (".cr2", ".cr3", ".nef", ".arw", ".dng", ".orf", ".rw2", ".raf", ".pef", ".srw"):
        assert ext in RAW_EXTENSIONS
    assert not SUPPORTED_EXTENSIONS & RAW_EXTENSIONS


def test_every_odd_but_valid_corpus_file_is_probed_with_displayed_size(corpus):
    for path, (w, h, fmt) in corpus.good.items():
        pf = probe_file(path)
        assert (pf.info.width, pf.info.height, pf.info.format) == (w, h, fmt), path
        with open(path, "rb") as f:
            data = f.read()
        assert pf.content_hash == hashlib.sha256(data).hexdigest()
        assert pf.size == len(data) == os.stat(path).st_size
        assert inspect_image(path) == pf.info == inspect_image(path, data)


def test_every_bad_corpus_file_has_its_reason(corpus):
    for path, fragment in corpus.bad.items():
        assert fragment in reason_of(path), path


def test_content_decides_the_format_not_the_extension(corpus):
    assert probe_file(corpus.p("really_a_png.jpg")).info.format == "PNG"
    text = reason_of(data=b"Dear diary,\nno photo here.\n")
    assert text == "not an image: the content is not JPEG/PNG/TIFF/WebP/HEIC/BMP/GIF (looks like text)"
    assert "PDF" in reason_of(data=b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj")
    assert "video" in reason_of(data=b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + b"\x00" * 16)
    assert reason_of(data=b"8BPS\x00\x01" + b"\x00" * 40).startswith("unsupported format")
    assert reason_of(data=b"") == "empty file (0 bytes)"


def test_exif_orientation_and_date_taken():
    info = inspect_image("x.jpg", jpeg_bytes(orientation=6, date="2021:07:04 10:11:12"))
    assert (info.width, info.height, info.orientation) == (H, W, 6)
    assert info.date_taken == "2021-07-04T10:11:12"  # DateTimeOriginal beats DateTime
    # unset camera clock -> no date; an offset is kept
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "0000:00:00 00:00:00"
    assert inspect_image("x", encode(gradient(), "JPEG", exif=exif.tobytes())).date_taken is None
    exif = Image.Exif()
    exif.get_ifd(0x8769).update({0x9003: "2020:02:29 23:59:59", 0x9011: "+02:00"})
    data = encode(gradient(), "JPEG", exif=exif.tobytes())
    assert inspect_image("x", data).date_taken == "2020-02-29T23:59:59+02:00"
    exif = Image.Exif()
    exif[0x0132] = "2019:05:06 07:08:09"
    assert inspect_image("x", encode(gradient(), "JPEG", exif=exif.tobytes())).date_taken == "2019-05-06T07:08:09"


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_broken_exif_does_not_make_a_photo_unusable():
    good = jpeg_bytes()
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 14) + b"Exif\x00\x00II*\x00\xff\xff\xff\x7f"
    info = inspect_image("x", good[:2] + app1 + good[2:])
    assert (info.width, info.height, info.orientation, info.date_taken) == (W, H, 1, None)


# ------------------------------------------------------------------------------ truncation

def test_truncated_jpeg_detected_at_any_cut_but_trailers_allowed():
    full = jpeg_bytes(size=(128, 96))
    for cut in (3, 20, 200, len(full) // 2, len(full) - 10, len(full) - 1):
        assert reason_of(data=full[:cut]).startswith("truncated JPEG"), cut
    assert inspect_image("x", full + b"\x00" * 100 + b"MAKERNOTE TRAILER").width == 128
    prog = jpeg_bytes(size=(128, 96), progressive=True)
    assert reason_of(data=prog[: len(prog) * 3 // 4]).startswith("truncated JPEG")


@pytest.mark.filterwarnings("ignore:Truncated File Read")
def test_truncated_png_webp_tiff_heif_gif_bmp():
    png = encode(gradient(), "PNG")
    assert "truncated PNG" in reason_of(data=png[:-12])
    assert inspect_image("x", png + b"trailing junk").format == "PNG"
    webp = encode(gradient(), "WEBP")
    assert "truncated WebP" in reason_of(data=webp[:-20])
    tif = encode(gradient(), "TIFF")   # Pillow: IFD first, then the strips
    assert "truncated TIFF" in reason_of(data=tif[:-40])
    lzw = encode(gradient(), "TIFF", compression="tiff_lzw")   # libtiff: strips first, IFD last
    assert inspect_image("x", lzw).format == "TIFF"
    assert "truncated TIFF" in reason_of(data=lzw[:-40])
    heic = heic_bytes()
    if heic:
        assert "truncated HEIC/HEIF" in reason_of(data=heic[:-30])
    gif = encode(gradient().convert("P"), "GIF")
    assert reason_of(data=gif[: len(gif) // 2])
    bmp = encode(gradient(), "BMP")
    assert "truncated BMP" in reason_of(data=bmp[: len(bmp) // 2])


# ------------------------------------------------------------------------------ decompression bombs

def _jpeg_with_header_size(w: int, h: int) -> bytes:
    data = bytearray(jpeg_bytes())
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, h, w)
    return bytes(data)


def test_bomb_refused_from_the_header_without_decoding(corpus, monkeypatch):
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self, *a: decoded.append(self) or None)
    reason = reason_of(corpus.p("bomb.png"))
    assert reason == ("image is 100000\u00d7100000 = 10000 megapixels, over the 250 megapixel safety limit "
                      "(decompression bomb?)")
    assert not decoded
    with pytest.raises(UnusableImage, match="decompression bomb"):
        open_oriented(corpus.p("bomb.png"), max_side=256)
    assert os.path.getsize(corpus.p("bomb.png")) < 200


def test_our_limit_decides_not_pillows_global_one():
    before = Image.MAX_IMAGE_PIXELS
    big = _jpeg_with_header_size(15_000, 12_000)          # 180 MP: over Pillow's error limit, under ours
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(big))
    info = inspect_image("x", big)
    assert (info.width, info.height) == (15_000, 12_000)
    assert "safety limit" in reason_of(data=_jpeg_with_header_size(20_000, 15_000))  # 300 MP
    assert 15_000 * 12_000 < MAX_PIXELS < 20_000 * 15_000
    assert Image.MAX_IMAGE_PIXELS == before  # we never touch Pillow's global state


def test_webp_bomb_refused_before_libwebp_allocates():
    hdr = b"RIFF" + struct.pack("<I", 30) + b"WEBPVP8X" + struct.pack("<I", 10) + b"\x00" * 4
    hdr += (16383 - 1).to_bytes(3, "little") + (16383 - 1).to_bytes(3, "little")
    assert "decompression bomb" in reason_of(data=hdr + b"\x00" * 16)


# ------------------------------------------------------------------------------ file access

def test_permission_denied(tmp_path, monkeypatch):
    p = write(tmp_path / "locked.jpg", jpeg_bytes())
    os.chmod(p, 0)
    try:
        with open(p, "rb"):
            enforced = False
    except PermissionError:
        enforced = True
    if not enforced:  # running as root: simulate the OS refusing, same code path
        real_open = os.open

        def deny(path, *a, **k):
            if os.fsencode(path) == p:
                raise PermissionError(13, "Permission denied", path)
            return real_open(path, *a, **k)
        monkeypatch.setattr(os, "open", deny)
    assert reason_of(p) == "permission denied"
    with pytest.raises(UnusableImage, match="permission denied"):
        open_oriented(p)


def test_not_regular_files_do_not_block(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert "not a regular file" in reason_of(fifo)
    (tmp_path / "dir.jpg").mkdir()
    assert "not a regular file" in reason_of(tmp_path / "dir.jpg")
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "dangling.jpg")
    assert reason_of(tmp_path / "dangling.jpg") == "broken symbolic link"


def test_big_files_stream_the_hash_and_probe_through_the_file(tmp_path, monkeypatch):
    small = jpeg_bytes(orientation=6)
    # EOI 1 MiB - 1 bytes before the end: the backwards search must cross a read-chunk boundary
    data = small + b"\x00" * ((1 << 20) - 1)
    p = write(tmp_path / "big.jpg", data)
    in_memory = probe_file(p)
    monkeypatch.setattr(limits, "MAX_READ_BYTES", 1000)
    streamed = probe_file(p)
    assert streamed == in_memory
    assert streamed.content_hash == hashlib.sha256(data).hexdigest()
    assert (streamed.info.width, streamed.info.height) == (H, W)
    assert inspect_image(p).width == H
    cut = write(tmp_path / "cut.jpg", small[:-30] + b"\x00" * 3000)
    assert reason_of(cut).startswith("truncated JPEG")
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 100)
    assert "larger than any photo" in reason_of(p)


def test_heic_without_pillow_heif_is_a_clear_skip(monkeypatch):
    heic = heic_bytes()
    if heic is None:
        pytest.skip("this pillow_heif build cannot encode HEIC")
    monkeypatch.setattr(plugins, "_heif_state", {"error": "ImportError: No module named 'pillow_heif'"})
    reason = reason_of(data=heic)
    assert reason.startswith("HEIC/HEIF support is not available")


# ------------------------------------------------------------------------------ open_oriented

def close(a, b, tol=40):
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def test_open_oriented_applies_orientation(tmp_path):
    p = write(tmp_path / "o6.jpg", jpeg_bytes(orientation=6))
    im = open_oriented(p)
    assert im.size == (H, W) and im.mode == "RGB"
    # stored: red grows to the right, green downwards. Orientation 6 = rotate 90 degrees clockwise, so
    # the stored top-left corner shows at the top-right, the stored bottom-left at the top-left.
    assert close(im.getpixel((H - 1, 0)), (0, 0, 64))
    assert close(im.getpixel((0, 0)), (0, 255, 64))
    p8 = write(tmp_path / "o8.png", rgba_png(orientation=8))
    assert open_oriented(p8).size == (H, W)


def test_open_oriented_modes(tmp_path):
    cmyk = open_oriented(write(tmp_path / "cmyk.jpg", jpeg_bytes(mode="CMYK", color=(0, 255, 255, 0))))
    assert cmyk.mode == "RGB" and close(cmyk.getpixel((5, 5)), (255, 0, 0))
    g16 = open_oriented(write(tmp_path / "g16.png", gray16_png()))
    assert g16.mode == "RGB"
    left, mid, right = (g16.getpixel((x, 10))[0] for x in (0, W // 2, W - 1))
    assert left < 10 and 100 < mid < 160 and right > 245  # scaled, not clipped to white
    pal = open_oriented(write(tmp_path / "pal.png", palette_png()))
    assert pal.mode == "RGBA" and pal.getextrema()[3][0] == 0
    rgba = open_oriented(write(tmp_path / "rgba.png", rgba_png()))
    assert rgba.mode == "RGBA"
    opaque = open_oriented(write(tmp_path / "opaque.png", encode(gradient("RGBA"), "PNG")))
    assert opaque.mode == "RGB"  # alpha that changes nothing is dropped
    for fmt in ("TIFF", "WEBP", "BMP", "GIF"):
        im = open_oriented(write(tmp_path / f"x.{fmt.lower()}", encode(gradient().convert(
            "P" if fmt == "GIF" else "RGB"), fmt)))
        assert im.size == (W, H) and im.mode == "RGB", fmt
    gray_tiff16 = encode(Image.open(io.BytesIO(gray16_png())), "TIFF")
    t16 = open_oriented(write(tmp_path / "g16.tif", gray_tiff16))
    assert 100 < t16.getpixel((W // 2, 3))[0] < 160
    heic = heic_bytes(orientation=6)
    if heic:
        im = open_oriented(write(tmp_path / "p.heic", heic))
        assert im.size == (H, W) and im.mode == "RGB"


def test_open_oriented_max_side_uses_jpeg_draft(tmp_path, monkeypatch):
    p = write(tmp_path / "big.jpg", jpeg_bytes(size=(1024, 768), orientation=6))
    drafts = []
    real = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        r = real(self, mode, size)
        drafts.append(self.size)
        return r
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    im = open_oriented(p, max_side=100)
    assert im.size == (75, 100)
    assert drafts and drafts[0] == (128, 96)  # decoded at 1/8 scale, not full size
    assert open_oriented(p, max_side=5000).size == (768, 1024)  # never upscaled


def test_open_oriented_bad_files(corpus):
    for path, fragment in corpus.bad.items():
        with pytest.raises(UnusableImage) as exc:
            open_oriented(path, max_side=64)
        assert fragment in str(exc.value), path

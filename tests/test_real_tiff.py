"""Real TIFFs from libtiff's test images (tests/realfiles, see SOURCES.md): valid files that imported
but could not be decoded, and valid files in pixel formats we cannot decode, which must say so
("unsupported ...") instead of calling them corrupt."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from PIL import Image, ImageChops, TiffImagePlugin

from repic_desktop.core.images import UnusableImage, inspect_image, open_oriented

REAL = Path(__file__).parent / "realfiles"


def _libtiff_reference(path: Path, monkeypatch) -> Image.Image:
    """What libtiff itself decodes (Pillow's global switch, for this test only)."""
    monkeypatch.setattr(TiffImagePlugin, "READ_LIBTIFF", True)
    with Image.open(path) as im:
        im.load()
        return im.convert("RGB")


def test_fuji_camera_ycbcr_tiff_decodes(monkeypatch):
    # A FUJIFILM MX-2900ZOOM TIFF: uncompressed YCbCr with 4:2:2 subsampling. Pillow's own decoder
    # ignores the subsampling and reported the complete file as truncated at caption time.
    path = REAL / "dscf0013-60rows.tif"
    info = inspect_image(path)
    assert (info.width, info.height, info.date_taken) == (640, 60, "2004-11-10T00:00:31")
    im = open_oriented(path)
    assert (im.mode, im.size) == ("RGB", (640, 60))
    assert ImageChops.difference(im, _libtiff_reference(path, monkeypatch)).getbbox() is None
    assert open_oriented(path, max_side=320).size == (320, 30)


def test_tiled_tiff_decodes(tmp_path, monkeypatch):
    # 256x256 tiles whose offsets sit in the StripOffsets tag (as old libtiff wrote them): Pillow read
    # them as strips and reported "truncated".
    path = tmp_path / "cramps-tile.tif"
    path.write_bytes(gzip.decompress((REAL / "cramps-tile.tif.gz").read_bytes()))
    assert inspect_image(path).format == "TIFF"
    im = open_oriented(path)
    assert im.size == (800, 607)
    assert ImageChops.difference(im, _libtiff_reference(path, monkeypatch)).getbbox() is None


def test_float64_and_premultiplied_alpha_tiffs_decode():
    f64 = open_oriented(REAL / "test_float64_predictor2_le_lzw.tif")
    assert f64.size == (20, 20) and f64.mode == "RGB"
    lo, hi = f64.getextrema()[0]
    assert lo < hi  # real content, not a flat image
    la = open_oriented(REAL / "minisblack-2c-8b-alpha.tiff")  # grey + associated alpha ("La")
    assert la.size == (64, 64) and la.mode in ("RGB", "RGBA")


@pytest.mark.parametrize("name, what", [
    ("logluv-3c-16b.tiff", "LogLuv"),
    ("flower-rgb-contig-4.tif", "4-bit RGB"),
    ("shapes_lzw_12bps.tif", "12-bit RGB"),
    ("shapes_lzw_predictor3.tif", "32-bit floating-point RGB"),
])
def test_unsupported_pixel_formats_are_not_called_corrupt(name, what):
    for call in (inspect_image, open_oriented):
        with pytest.raises(UnusableImage) as exc:
            call(REAL / name)
        assert exc.value.reason.startswith("unsupported TIFF pixel format: "), exc.value.reason
        assert what in exc.value.reason and "corrupt" not in exc.value.reason


def test_tiff_with_an_optional_codec_is_unsupported_not_corrupt():
    # WebP inside TIFF: decodes where libtiff was built with WebP, else it must say why.
    path = REAL / "webp_lossless_rgba_alpha_fully_opaque.tif"
    try:
        im = open_oriented(path)
    except UnusableImage as exc:
        assert exc.reason.startswith("unsupported TIFF compression: WebP"), exc.reason
        with pytest.raises(UnusableImage, match="^unsupported TIFF compression: WebP"):
            inspect_image(path)  # found at import already, not only at caption time
    else:
        assert im.size == (20, 20) and inspect_image(path).width == 20

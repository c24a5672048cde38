"""Camera RAW photos: preview extraction, orientation, refusal of bad RAWs, and the whole path
import -> thumbnail -> caption (demo model) -> export to a .xmp sidecar that exiftool reads back,
with the RAW itself never modified."""
from __future__ import annotations

import hashlib
import json
import os

import pytest
from PIL import Image

from repic_desktop.cli import main
from repic_desktop.core import raw
from repic_desktop.core.images import MAX_PIXELS, UnusableImage, inspect_image, open_oriented, probe_file
from repic_desktop.core.library import Box, Library
from repic_desktop.core.thumbnails import ThumbnailCache

from tests.helpers.corpus import encode_jpeg, gradient, jpeg_bytes, raf_like_bytes, tiff_raw_bytes
from tests.helpers.metadata_files import HAVE_EXIFTOOL, needs_pyexiv2


def test_the_biggest_complete_preview_wins_and_orientation_comes_from_the_raw(tmp_path):
    big, thumb = jpeg_bytes((300, 200)), jpeg_bytes((160, 106))
    data = tiff_raw_bytes(big, orientation=8, date="2019:12:31 23:59:58", thumbnail=thumb, sensor=os.urandom(500))
    facts = raw.raw_facts(data, MAX_PIXELS)
    assert (facts.width, facts.height, facts.orientation) == (300, 200, 8)
    assert data[facts.preview[0]:facts.preview[0] + facts.preview[1]] == big
    p = tmp_path / "x.ARW"   # extension case does not matter
    p.write_bytes(data)
    info = inspect_image(p)
    assert (info.format, info.width, info.height, info.date_taken) == ("RAW", 200, 300, "2019-12-31T23:59:58")
    assert probe_file(p).content_hash == hashlib.sha256(data).hexdigest()


def test_displayed_pixels_follow_the_raw_orientation(tmp_path):
    src = gradient(size=(240, 160))                 # red grows to the right, green downwards
    p = tmp_path / "o6.nef"
    p.write_bytes(tiff_raw_bytes(encode_jpeg(src), orientation=6))
    im = open_oriented(p)
    assert im.size == (160, 240)
    expected = src.transpose(Image.Transpose.ROTATE_270)
    for xy in ((5, 5), (150, 5), (5, 230), (150, 230)):
        assert all(abs(a - b) < 12 for a, b in zip(im.getpixel(xy), expected.getpixel(xy))), xy
    small = open_oriented(p, max_side=60)
    assert max(small.size) == 60 and small.size[0] < small.size[1]


def test_non_tiff_raws_are_found_by_scanning(tmp_path):
    p = tmp_path / "DSCF1.raf"
    p.write_bytes(raf_like_bytes(jpeg_bytes((180, 120))))
    assert open_oriented(p).size == (180, 120)


@pytest.mark.parametrize("data, fragment", [
    (b"", "empty file"),
    (b"II*\x00" + bytes(200), "without a usable embedded JPEG preview"),
    (tiff_raw_bytes(jpeg_bytes((300, 200))[:-400]), "without a usable embedded JPEG preview"),  # cut short
    (tiff_raw_bytes(jpeg_bytes((20, 10))), "without a usable embedded JPEG preview"),           # icon only
])
def test_bad_raws_are_refused_with_a_reason(tmp_path, data, fragment):
    p = tmp_path / "bad.cr2"
    p.write_bytes(data)
    with pytest.raises(UnusableImage, match=fragment):
        probe_file(p)
    with pytest.raises(UnusableImage, match=fragment):
        open_oriented(p)


def test_a_preview_claiming_gigapixels_is_refused_before_decoding(tmp_path):
    jpg = bytearray(jpeg_bytes((200, 100)))
    sof = jpg.index(b"\xff\xc0")
    jpg[sof + 5:sof + 9] = (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big")   # 3.6 GP header
    p = tmp_path / "bomb.dng"
    p.write_bytes(tiff_raw_bytes(bytes(jpg)))
    with pytest.raises(UnusableImage, match="preview"):
        inspect_image(p)


def test_a_malformed_ifd_chain_does_not_loop_or_crash():
    # IFD0 points to itself as "next IFD", and a SubIFD pointer far past the end of the file
    data = bytearray(b"II*\x00" + (8).to_bytes(4, "little"))
    data += (2).to_bytes(2, "little")
    data += (0x14A).to_bytes(2, "little") + (4).to_bytes(2, "little") + (1).to_bytes(4, "little") + (10 ** 9).to_bytes(4, "little")
    data += (0x112).to_bytes(2, "little") + (3).to_bytes(2, "little") + (1).to_bytes(4, "little") + (3).to_bytes(4, "little")
    data += (8).to_bytes(4, "little")
    data += jpeg_bytes((200, 100))
    facts = raw.raw_facts(bytes(data), MAX_PIXELS)
    assert (facts.width, facts.height, facts.orientation) == (200, 100, 3)


@needs_pyexiv2
def test_raw_photo_end_to_end_import_caption_export(tmp_path, demo_model_dir, capsys):
    album = tmp_path / "album"
    album.mkdir()
    nef = album / "DSC_0042.NEF"
    nef.write_bytes(tiff_raw_bytes(encode_jpeg(gradient(size=(240, 160))), orientation=6, date="2023:08:01 12:00:00",
                                   sensor=os.urandom(4000)))
    before = nef.read_bytes()
    libp = tmp_path / "lib.sqlite"
    lib = ["--library", str(libp)]
    assert main([*lib, "import", str(album), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["added"] == 1 and report["skipped"] == []
    with Library(libp) as library:
        photo = library.photos.list()[0]
        assert (photo.format, photo.width, photo.height) == ("RAW", 160, 240)
        thumb = ThumbnailCache(tmp_path / "thumbs").get_or_create(photo.fs_path, photo.content_hash, 64)
        assert max(Image.open(thumb).size) == 64
        library.concepts.add("Anya", "person")
        library.concepts.tag(photo.id, "Anya", box=Box(10, 20, 60, 80))
        library.concepts.add_ref("Anya", photo_id=photo.id, box=Box(10, 20, 60, 80))  # a RAW crop as reference
    assert main([*lib, "caption", "--all", "--model", str(demo_model_dir), "--max-new-tokens", "4",
                 "--max-pixels", str(112 * 112), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["caption"] and "error" not in row
    with Library(libp) as library:
        library.captions.add(photo.id, "<Anya> in the garden", status="accepted")
    assert main([*lib, "export", "--all-accepted", "--json"]) == 0
    capsys.readouterr()
    sidecar = album / "DSC_0042.NEF.xmp"
    assert sidecar.exists() and nef.read_bytes() == before
    if HAVE_EXIFTOOL:
        import subprocess
        out = subprocess.run(["exiftool", "-j", "-struct", "-XMP:all", str(sidecar)], capture_output=True,
                             text=True, check=True).stdout
        tags = json.loads(out)[0]
        assert tags["Description"] == "Anya in the garden" and tags["PersonInImage"] in ("Anya", ["Anya"])
        region = tags["RegionInfo"]["RegionList"][0]
        dims = tags["RegionInfo"]["AppliedToDimensions"]
        assert region["Name"] == "Anya" and (dims["W"], dims["H"]) == (240, 160)   # the stored (unrotated) frame

"""The metadata tests' helpers (tests/helpers/metadata_files.py) do what the other tests rely on."""
from __future__ import annotations

from tests.helpers.metadata_files import (
    DATE, FORMATS, digikam_packet, exif_facts, inject_xmp, make_image, needs_pyexiv2, pixel_hash, read_with,
)


def test_make_image_has_exif_and_is_decodable(tmp_path):
    for ext in FORMATS:
        p = make_image(tmp_path / f"x.{ext}")
        assert exif_facts(p) == (DATE, "TestMake", True), ext
        assert len(pixel_hash(p)) == 64


@needs_pyexiv2
def test_injected_digikam_packet_is_read_back_raw(tmp_path):
    p = inject_xmp(make_image(tmp_path / "d.jpg"), digikam_packet(96, 64))
    vals = read_with("pyexiv2", p)
    assert vals["XMP-digiKam:TagsList"][0] == "People/Anya Smith"
    assert [r.get("Name") for r in vals["XMP-mwg-rs:RegionInfo"]["RegionList"]] == ["Anya Smith", "Ben", None, "Fido"]

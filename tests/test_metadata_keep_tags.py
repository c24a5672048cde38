"""Tags other programs wrote that a pyexiv2 rewrite would silently drop (exiv2 leaves IFD0
PhotometricInterpretation out of a JPEG's EXIF and rebuilds XMP without its rdf:about): the export
keeps them - checked with exiftool as the second reader - on the real files they were seen in."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from repic_desktop.metadata.writer import MetadataValues, Person, WriteOptions, write_metadata

REAL = Path(__file__).parent / "realfiles"
EXIFTOOL = shutil.which("exiftool")
pytestmark = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool is the second reader (and the backend that keeps these)")


def _tags(path: Path) -> dict:
    out = subprocess.run([EXIFTOOL, "-j", "-G1", "-n", "-IFD0:PhotometricInterpretation", "-XMP-rdf:About",
                          "-XMP-dc:Description", "-XMP-dc:Subject", "--", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]


@pytest.mark.parametrize("name, kept", [
    ("Reagan.jpg", "IFD0:PhotometricInterpretation"),                       # Photoshop Elements 12
    ("metadata-extractor-dotnet issue 51.jpg", "XMP-rdf:About"),             # Microsoft Photo Gallery
])
def test_export_keeps_photometric_and_rdf_about(tmp_path, name, kept):
    photo = tmp_path / name
    shutil.copy(REAL / name, photo)
    before = _tags(photo)
    assert kept in before
    res = write_metadata(photo, MetadataValues(caption="Grandma at the lake", people=[Person("Anna")],
                                               keywords=["lake"]), WriteOptions())
    assert res.status == "written", res.reason
    after = _tags(photo)
    assert after[kept] == before[kept]
    assert after["XMP-dc:Description"] == "Grandma at the lake" and "lake" in after["XMP-dc:Subject"]
    again = write_metadata(photo, MetadataValues(caption="Grandma at the lake", people=[Person("Anna")],
                                                 keywords=["lake"]), WriteOptions())
    assert again.status == "unchanged", again.reason


def test_without_exiftool_a_jpeg_keeps_its_rdf_about(tmp_path):
    from repic_desktop.metadata.backends import Backends
    name = "metadata-extractor-dotnet issue 51.jpg"
    photo = tmp_path / name
    shutil.copy(REAL / name, photo)
    before = _tags(photo)
    backends = Backends("auto")
    backends.available = ["pyexiv2"]  # as on a machine without exiftool
    res = write_metadata(photo, MetadataValues(caption="Grandma at the lake"), WriteOptions(), backends=backends)
    assert res.status == "written" and res.backend == "pyexiv2", res.reason
    after = _tags(photo)
    assert after["XMP-rdf:About"] == before["XMP-rdf:About"] == "uuid:faf5bdd5-ba3d-11da-ad31-d33d75182f1b"
    assert after["XMP-dc:Description"] == "Grandma at the lake"
    again = write_metadata(photo, MetadataValues(caption="Grandma at the lake"), WriteOptions(), backends=backends)
    assert again.status == "unchanged", again.reason


def test_an_unprefixed_or_utf16_rdf_about_is_seen():
    """exiftool's ExifTool.jpg and XMP.jpg carry Photoshop's uuid as `about='…'` in a UTF-16 packet: a
    search for the UTF-8 text 'rdf:about="' missed it, and exiv2 then turned the uuid into an InstanceID."""
    from repic_desktop.metadata.writer import _xmp_has_about

    for name in ("ExifTool.jpg", "XMP.jpg", "metadata-extractor-dotnet issue 51.jpg"):
        assert _xmp_has_about((REAL / name).read_bytes()), name
    for name in ("Reagan.jpg", "portrait.jpg", "MWG.jpg"):  # rdf:about="" (empty): nothing to keep
        assert not _xmp_has_about((REAL / name).read_bytes()), name


def _groups(path: Path) -> dict:
    out = subprocess.run([EXIFTOOL, "-j", "-G1", "-n", "-XMP:all", "--", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return {k: v for k, v in json.loads(out)[0].items() if not k.startswith(("XMP-dc:", "XMP-x:"))}


def test_a_namespace_uri_without_trailing_slash_keeps_its_properties(tmp_path):
    """immich's portrait-orientation-6.jpg: exiftool wrote MicrosoftPhoto as http://ns.microsoft.com/photo/1.0;
    exiv2 serialises it as ".../1.0/", another namespace, so readers lost XMP-microsoft:LastKeywordXMP. With exiftool
    installed it writes the file; without, the values go to a sidecar and the photo stays as it was."""
    from repic_desktop.metadata.backends import Backends

    name = "portrait-orientation-6.jpg"
    photo = tmp_path / name
    shutil.copy(REAL / name, photo)
    before = _groups(photo)
    assert before["XMP-microsoft:LastKeywordXMP"] == ["People/Marie Curie", "People/Pierre Curie"]
    res = write_metadata(photo, MetadataValues(caption="Marie at work"), WriteOptions())
    assert res.status == "written" and res.target == "file" and res.backend == "exiftool", res.reason
    assert any("namespace URI http://ns.microsoft.com/photo/1.0" in n for n in res.notes)
    assert _groups(photo) == before

    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(REAL / name, bare / name)
    original = (bare / name).read_bytes()
    backends = Backends("auto")
    backends.available = ["pyexiv2"]  # as on a machine without exiftool
    res = write_metadata(bare / name, MetadataValues(caption="Marie at work"), WriteOptions(), backends=backends)
    assert res.status == "written" and res.target == "sidecar", res.reason
    assert "exiftool is not installed" in " ".join(res.notes)
    assert (bare / name).read_bytes() == original


def test_a_new_exiftool_warning_is_damage_a_vanished_one_is_not():
    """Nikon DSCN0010.jpg: exiv2's re-encoded maker note left its NikonScanIFD pointing outside the block;
    no tag showed it, only exiftool's new "Bad NikonScanIFD directory" warning."""
    from repic_desktop.metadata.verify import new_structure_warnings

    assert new_structure_warnings([], ["[minor] Bad NikonScanIFD directory"])
    assert new_structure_warnings(["[minor] Bad NikonScanIFD SubDirectory start"], []) == []
    broken = ["[minor] Possibly incorrect maker notes offsets (fix by -278?)"]  # Canon PowerShot S330
    assert new_structure_warnings(broken, ["[minor] Invalid CanonCameraSettings data"]) == []

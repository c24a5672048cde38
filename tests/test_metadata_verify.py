"""Writes of real camera- and tool-written files (tests/realfiles, sources in SOURCES.md) keep what other
programs wrote, with exiftool as the second reader: a Canon compact's maker note, a FLIR camera's maker
note, GIMP's XMP next to a person region, and digiKam's old namespace URI in the middle of a batch."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from repic_desktop.metadata.backends import Backends
from repic_desktop.metadata.writer import MetadataValues, Person, RegionBox, WriteOptions, write_metadata

from tests.helpers.metadata_files import inject_xmp, make_image, needs_exiftool, needs_pyexiv2, sha, shared

REAL = Path(__file__).parent / "realfiles"
CANON = "Canon PowerShot S330.jpg"
NIKON = "Nikon E5000.jpg"
FLIR = "exiftool-FLIR.jpg"
GIMP = "Issue 600 (2).jpg"
DK_OLD = "nikon-e2100-small.jpg"      # digiKam 4.4 XMP with xmlns:digiKam="http://www.digikam.org/"
DK_NEW = "digikam-timestampupdate-1.jpg"  # digiKam 1.2 XMP with the current URI
OLD_NS, NEW_NS = "http://www.digikam.org/", "http://www.digikam.org/ns/1.0/"

ANYA = MetadataValues(caption="Anya at the lab", people=[Person("Anya")], keywords=["lab"],
                      regions=[RegionBox("Anya", "person", (0.10, 0.20, 0.20, 0.25))])

# what we write (exiftool -G1 names, flattened regions) and what moves whenever a block is rewritten
OURS = re.compile(r"^(XMP-dc:(Description|Subject)|XMP-iptcExt:PersonInImage|XMP-lr:HierarchicalSubject|"
                  r"XMP-digiKam:TagsList|XMP-mwg-rs:Region.*|XMP-MP:Region.*|IFD0:ImageDescription|"
                  r"IPTC:(Caption-Abstract|Keywords|CodedCharacterSet|ApplicationRecordVersion|EnvelopeRecordVersion)|"
                  r"(System|File|ExifTool|Composite):.*|[\w-]+:\w*(Offset|Start)|XMP-x:XMPToolkit|"
                  r"Photoshop:IPTCDigest)$")


def copy(tmp_path, name) -> Path:
    dst = tmp_path / name
    shutil.copyfile(REAL / name, dst)
    return dst


def et_json(*paths) -> list[dict]:
    out = subprocess.run(["exiftool", "-j", "-a", "-G1", "-n", *map(str, paths)], capture_output=True, text=True)
    return json.loads(out.stdout)


def raw_xmp(path) -> str:
    return subprocess.run(["exiftool", "-b", "-XMP", str(path)], capture_output=True).stdout.decode("utf-8", "replace")


def others(row: dict) -> dict:
    """Every tag we do not own; an unknown namespace's made-up group name (XMP-tmp0 / XMP-digiKam_1,
    named after the prefix) is dropped, the URI and the tag are what count."""
    return {re.sub(r"^XMP-(tmp\d+|\w+_\d+):", "XMP-?:", k): v for k, v in row.items() if not OURS.match(k)}


def no_exiftool_backends(monkeypatch) -> Backends:
    monkeypatch.setenv("REPIC_EXIFTOOL", "off")
    b = Backends("auto")
    assert b.available == ["pyexiv2"]
    return b


# ------------------------------------------------------------------------------------------ maker notes

@needs_pyexiv2
@needs_exiftool
def test_canon_compact_keeps_its_maker_note_when_keywords_are_written(tmp_path):
    """pyexiv2 dropped the whole maker note of this PowerShot S330 (exiv2 cannot decode it) and said ok."""
    p = copy(tmp_path, CANON)
    [before] = et_json(p)
    canon = {k: v for k, v in before.items() if k.startswith("Canon:")}
    assert canon
    with shared("auto") as b:
        r = write_metadata(p, MetadataValues(keywords=["beach"]), WriteOptions(groups=("keywords",)), backends=b)
    assert r.status == "written" and r.target == "file", r.reason
    [after] = et_json(p)
    assert {k: v for k, v in after.items() if k.startswith("Canon:")} == canon
    assert others(after) == others(before)
    assert after["IPTC:Keywords"] == "beach"
    assert r.backend == "exiftool" and any("maker note was dropped" in n for n in r.notes), r.notes


@needs_pyexiv2
def test_without_exiftool_a_damaging_write_goes_to_a_sidecar(tmp_path, monkeypatch):
    """The check needs no exiftool: pyexiv2 reads its own output back; the photo stays byte-identical."""
    p = copy(tmp_path, CANON)
    orig = sha(p)
    r = write_metadata(p, MetadataValues(keywords=["beach"]), WriteOptions(groups=("keywords",)),
                       backends=no_exiftool_backends(monkeypatch))
    assert r.status == "written" and r.target == "sidecar", r.reason
    assert r.written_path == str(p) + ".xmp" and sha(p) == orig
    assert any("maker note was dropped" in n for n in r.notes), r.notes


@needs_pyexiv2
@needs_exiftool
def test_flir_maker_note_keeps_its_temperatures(tmp_path):
    """exiv2 cannot decode FLIR's maker note and moved it when IFD0 grew: the temperatures read back gone."""
    p = copy(tmp_path, FLIR)
    [before] = et_json(p)
    assert before["FLIR:ImageTemperatureMax"] and before["FLIR:ImageTemperatureMin"]
    with shared("auto") as b:
        r = write_metadata(p, ANYA, WriteOptions(), backends=b)
    assert r.status == "written" and r.target == "file", r.reason
    [after] = et_json(p)
    assert others(after) == others(before)
    assert after["IFD0:ImageDescription"] == "Anya at the lab"
    assert any("maker note was moved" in n for n in r.notes), r.notes


@needs_pyexiv2
@needs_exiftool
def test_nikon_preview_ifd_is_kept_exiftool_reads_pyexiv2s_output(tmp_path):
    """exiv2 decodes this Nikon E5000 maker note but drops the preview IFD it points to; only exiftool
    sees that, so it reads pyexiv2's output of a camera photo too when it is installed."""
    p = copy(tmp_path, NIKON)
    [before] = et_json(p)
    preview = {k: v for k, v in before.items() if k.startswith("PreviewIFD:") and not OURS.match(k)}
    assert preview
    with shared("auto") as b:
        r = write_metadata(p, ANYA, WriteOptions(), backends=b)
    assert r.status == "written" and r.target == "file", r.reason
    [after] = et_json(p)
    assert {k: v for k, v in after.items() if k in preview} == preview
    assert others(after) == others(before)
    assert r.backend == "exiftool" and any("PreviewIFD:" in n for n in r.notes), r.notes


@needs_pyexiv2
def test_maker_note_place_follows_the_tiff_structure():
    from repic_desktop.metadata.verify import maker_note_place
    data = (REAL / FLIR).read_bytes()
    off, count = maker_note_place(data, "JPEG")
    assert count > 100 and 0 < off < len(data)
    assert maker_note_place((REAL / GIMP).read_bytes(), "JPEG") is None


# ------------------------------------------------------------------------------------------ XMP namespaces

@needs_pyexiv2
@needs_exiftool
def test_gimp_xmp_and_a_person_region_make_valid_xmp(tmp_path):
    """exiv2 left out xmlns:MP after xmlns:GIMP ("MP:" is found inside "GIMP:"): "Not valid XMP"."""
    p = copy(tmp_path, GIMP)
    [before] = et_json(p)
    with shared("pyexiv2") as b:
        r = write_metadata(p, ANYA, WriteOptions(backend="pyexiv2"), backends=b)
    assert r.status == "written" and r.target == "file" and r.backend == "pyexiv2", (r.reason, r.notes)
    xmp = raw_xmp(p)
    assert 'xmlns:MP="http://ns.microsoft.com/photo/1.2/"' in xmp and 'xmlns:GIMP="http://www.gimp.org/xmp/"' in xmp
    [after] = et_json(p)
    assert after["XMP-MP:RegionPersonDisplayName"] == "Anya" and after["XMP-mwg-rs:RegionName"] == "Anya"
    assert others(after) == others(before)
    assert after["XMP-GIMP:Version"] == "2.10.32"


@needs_pyexiv2
@needs_exiftool
@pytest.mark.parametrize("ext", ["png", "webp"])
def test_gimp_packet_in_png_and_webp_with_a_person_region(tmp_path, ext):
    """No GIMP-written PNG/WebP small enough was found: the real GIMP packet of the JPEG goes into one."""
    p = inject_xmp(make_image(tmp_path / f"photo.{ext}"), raw_xmp(REAL / GIMP))
    [before] = et_json(p)
    assert before["XMP-GIMP:Version"] == "2.10.32"
    with shared("pyexiv2") as b:
        r = write_metadata(p, ANYA, WriteOptions(backend="pyexiv2"), backends=b)
    assert r.status == "written" and r.target == "file" and r.backend == "pyexiv2", (r.reason, r.notes)
    assert 'xmlns:MP="http://ns.microsoft.com/photo/1.2/"' in raw_xmp(p)
    [after] = et_json(p)
    assert after["XMP-MP:RegionPersonDisplayName"] == "Anya"
    assert others(after) == others(before)


@needs_pyexiv2
@needs_exiftool
def test_digikam_old_namespace_does_not_leak_into_the_next_file(tmp_path):
    """One file with digiKam's old URI used to re-bind the digiKam prefix for the whole process: the next
    file's TagsList (and every other digiKam property) was written under the old URI, invisible to digiKam."""
    old, new = copy(tmp_path, DK_OLD), copy(tmp_path, DK_NEW)
    before_old, before_new = et_json(old, new)
    assert OLD_NS + '"' in raw_xmp(old) and before_old["XMP-tmp0:TagsList"] == "Adrien"
    with shared("pyexiv2") as b:
        for p in (old, new):
            r = write_metadata(p, MetadataValues(people=[Person("Anya")]), WriteOptions(backend="pyexiv2"), backends=b)
            assert r.status == "written" and r.target == "file", r.reason
    after_old, after_new = et_json(old, new)
    xmp_new = raw_xmp(new)
    assert f'xmlns:digiKam="{NEW_NS}"' in xmp_new and OLD_NS + '"' not in xmp_new
    assert after_new["XMP-digiKam:TagsList"] == ["Orte/Peru/Colca Canyon", "People/Anya"]
    assert after_new["XMP-digiKam:ImageUniqueID"] == before_new["XMP-digiKam:ImageUniqueID"]
    assert others(after_new) == others(before_new)
    # the old file keeps its old-URI properties as they were; our tag goes under the current URI
    xmp_old = raw_xmp(old)
    assert OLD_NS + '"' in xmp_old and f'="{NEW_NS}"' in xmp_old
    assert after_old["XMP-digiKam:TagsList"] == "People/Anya"
    assert others(after_old) == others(before_old)


# ------------------------------------------------------------------------------------------ the corpus

@needs_pyexiv2
@needs_exiftool
def test_a_batch_of_real_files_keeps_every_other_tag_and_is_idempotent(tmp_path):
    names = [DK_OLD, CANON, FLIR, GIMP, NIKON, DK_NEW]
    files = [copy(tmp_path, n) for n in names]
    before = et_json(*files)
    with shared("auto") as b:
        first = [write_metadata(p, ANYA, WriteOptions(), backends=b) for p in files]
        assert [(r.status, r.target) for r in first] == [("written", "file")] * len(files), [r.reason for r in first]
        hashes = [sha(p) for p in files]
        second = [write_metadata(p, ANYA, WriteOptions(), backends=b, previous_owned=r.owned)
                  for p, r in zip(files, first)]
    assert [r.status for r in second] == ["unchanged"] * len(files), [r.changes for r in second]
    assert [sha(p) for p in files] == hashes
    for name, b_row, a_row in zip(names, before, et_json(*files)):
        assert others(a_row) == others(b_row), name

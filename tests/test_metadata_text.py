"""Text and encodings in other tools' metadata, on real files (tests/realfiles, see SOURCES.md), with exiftool
as the second reader: legacy IIM charsets, Photoshop's IPTCDigest, IIM times, emoji in EXIF UserComment,
control characters in captions (issue #13, item 2)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from repic_desktop.metadata import iim
from repic_desktop.metadata.fields import clean_text
from repic_desktop.metadata.writer import MetadataValues, Person, WriteOptions, write_metadata

from tests.helpers.metadata_files import backend_params, needs_exiftool, shared

REAL = Path(__file__).parent / "realfiles"
pytestmark = needs_exiftool  # exiftool is the second reader of every test here


def exiftool(path, *tags: str) -> dict:
    """exiftool's -G1 reading (the raw bytes are decoded leniently: invalid UTF-8 must show as such)."""
    out = subprocess.run(["exiftool", "-j", "-G1", "-a", *tags, str(path)], capture_output=True, check=True).stdout
    row = json.loads(out.decode("utf-8", "backslashreplace"))[0]
    row.pop("SourceFile", None)
    return row


def export(path, values: MetadataValues, backend: str):
    with shared(backend) as b:
        return write_metadata(path, values, WriteOptions(backend=backend), backends=b)


def copy(name: str, tmp_path: Path, backend: str) -> Path:
    dst = tmp_path / f"{backend}-{name}"
    shutil.copyfile(REAL / name, dst)
    return dst


def theirs(row: dict, before: dict) -> dict:
    """Other tools' IIM datasets (ours and the record versions exiftool adds, as IIM requires, left out)."""
    return {k: v for k, v in row.items() if k not in ("IPTC:CodedCharacterSet", "IPTC:Keywords")
            and not (k.endswith("RecordVersion") and k not in before)}


ADD_KEYWORDS = MetadataValues(people=[Person("Zoë")], keywords=["beach"])


@pytest.mark.parametrize("backend", backend_params())
def test_latin1_iptc_of_another_tool_is_transcoded_when_the_block_becomes_utf8(tmp_path, backend):
    # ImageReady wrote CopyrightNotice "\xa9 2004 Nobody" with no CodedCharacterSet (= Latin-1/cp1252)
    p = copy("smiley1.jpg", tmp_path, backend)
    before = exiftool(p, "-IPTC:All")
    assert before["IPTC:CopyrightNotice"] == "© 2004 Nobody" and "IPTC:CodedCharacterSet" not in before
    r = export(p, ADD_KEYWORDS, backend)
    assert r.status == "written", r.reason
    after = exiftool(p, "-IPTC:All")
    assert after["IPTC:CodedCharacterSet"] == "UTF8"
    assert after["IPTC:CopyrightNotice"] == "© 2004 Nobody"
    assert after["IPTC:Keywords"] == ["Green", "Smiley", "Dude", "Zoë", "beach"]
    assert theirs(after, before) == theirs(before, before)
    assert export(p, ADD_KEYWORDS, backend).status == "unchanged"


@pytest.mark.parametrize("backend", backend_params())
def test_a_valid_iptc_digest_stays_valid(tmp_path, backend):
    # Lightroom 4.4 wrote IPTC with a matching Photoshop IPTCDigest
    p = copy("exiv2-bug784.jpg", tmp_path, backend)
    tags = ("-Photoshop:IPTCDigest", "-CurrentIPTCDigest")
    before = exiftool(p, *tags)
    assert before["Photoshop:IPTCDigest"] == before["File:CurrentIPTCDigest"]
    assert export(p, ADD_KEYWORDS, backend).status == "written"
    after = exiftool(p, *tags, "-IPTC:Keywords")
    assert "Zoë" in after["IPTC:Keywords"]
    assert after["File:CurrentIPTCDigest"] != before["File:CurrentIPTCDigest"]
    assert after["Photoshop:IPTCDigest"] == after["File:CurrentIPTCDigest"]
    assert export(p, ADD_KEYWORDS, backend).status == "unchanged"


@pytest.mark.parametrize("backend", backend_params())
def test_other_tools_iptc_time_stays_byte_identical(tmp_path, backend):
    # AP wrote TimeCreated "165100" (no zone); exiv2 re-encoded it as "165100+0000"
    p = copy("exiv2-bug440.jpg", tmp_path, backend)
    before = exiftool(p, "-IPTC:All")
    assert before["IPTC:TimeCreated"] == "16:51:00"
    assert export(p, ADD_KEYWORDS, backend).status == "written"
    after = exiftool(p, "-IPTC:All")
    assert after["IPTC:TimeCreated"] == "16:51:00"
    assert theirs(after, before) == theirs(before, before)
    old_sets = iim.datasets(iim._find((REAL / "exiv2-bug440.jpg").read_bytes()).data(
        (REAL / "exiv2-bug440.jpg").read_bytes()))
    new_data = p.read_bytes()
    new_sets = iim.datasets(iim._find(new_data).data(new_data))
    assert [s for s in new_sets if s[:2] not in {(1, 0), (1, 90), (2, 25)}] == old_sets
    assert export(p, ADD_KEYWORDS, backend).status == "unchanged"


CAPTION = "Anya 😀 at the\tbeach\x07\r\nline two\x1b end\x85 with 小明\u2028"
CLEAN = "Anya 😀 at the\tbeach\nline two end\n with 小明"
COPIES = ("XMP-dc:Description", "IPTC:Caption-Abstract", "IFD0:ImageDescription", "ExifIFD:UserComment")


def test_one_normalisation_for_caption_text():
    assert clean_text(CAPTION) == CLEAN
    assert clean_text(" a\r b\x0cc\x00\ud800 ") == "a\n b\nc"


@pytest.mark.parametrize("backend", backend_params())
def test_emoji_and_control_characters_give_the_same_text_everywhere_and_a_second_export_is_a_no_op(
        tmp_path, backend):
    # a GIMP-saved Canon EOS 40D JPEG with an EXIF UserComment (a secondary caption copy we keep in sync)
    p = copy("exiv2-bug528.jpg", tmp_path, backend)
    assert exiftool(p, "-ExifIFD:UserComment")["ExifIFD:UserComment"] == "Chateaux de la Loire, Chambord"
    # and a Windows "Comments" copy (XPComment, UTF-16LE)
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-XPComment=old comment", str(p)], check=True)
    r = export(p, MetadataValues(caption=CAPTION), backend)
    assert r.status == "written", r.reason
    got = exiftool(p, *(f"-{k}" for k in COPIES))
    assert got == {k: CLEAN for k in COPIES}
    # exiftool reads XP tags as UCS-2 (an emoji shows as "??"); Windows and Pillow read UTF-16LE
    with Image.open(p) as im:
        assert im.getexif()[0x9C9C].decode("utf-16-le").rstrip("\0") == CLEAN
    for b in ("pyexiv2", "exiftool"):  # either backend reads it back as written: nothing to change
        r2 = export(p, MetadataValues(caption=CAPTION), b)
        assert (r2.status, r2.changes) == ("unchanged", []), (b, r2.reason)


@pytest.mark.parametrize("backend", backend_params())
def test_an_emoji_user_comment_written_by_exiftool_is_readable(tmp_path, backend):
    p = copy("exiv2-bug528.jpg", tmp_path, backend)
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-ExifIFD:UserComment=Rex 🐕 runs", str(p)], check=True)
    r = export(p, MetadataValues(caption="Rex 🐕 runs"), backend)
    assert r.status == "written", r.reason
    assert "ExifIFD:UserComment" not in [c["key"] for c in r.changes]
    assert exiftool(p, "-ExifIFD:UserComment")["ExifIFD:UserComment"] == "Rex 🐕 runs"


@pytest.mark.parametrize("backend", backend_params())
def test_latin1_keywords_of_another_tool_survive_the_merge(tmp_path, backend):
    p = copy("smiley1.jpg", tmp_path, backend)
    # a legacy tool adds a cp1252 keyword and caption to the undeclared (Latin-1) block
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-charset", "iptc=cp1252", "-IPTC:Keywords+=Café",
                    "-IPTC:Caption-Abstract=Été à Paris", str(p)], check=True)
    assert b"Caf\xe9" in p.read_bytes()
    r = export(p, ADD_KEYWORDS, backend)
    assert r.status == "written", r.reason
    got = exiftool(p, "-IPTC:Keywords", "-IPTC:Caption-Abstract", "-IPTC:CopyrightNotice")
    assert got == {"IPTC:Keywords": ["Green", "Smiley", "Dude", "Café", "Zoë", "beach"],
                   "IPTC:Caption-Abstract": "Été à Paris", "IPTC:CopyrightNotice": "© 2004 Nobody"}


def _jpeg_with_iim(sets, digest: bytes | None = None) -> bytes:
    block = iim._encode(sets)
    res = b"8BIM\x04\x04\0\0" + len(block).to_bytes(4, "big") + block + (b"\0" if len(block) % 2 else b"")
    if digest is not None:
        res += b"8BIM\x04\x25\0\0" + (16).to_bytes(4, "big") + digest
    payload = iim.PS_HEADER + res
    return b"\xff\xd8\xff\xed" + (len(payload) + 2).to_bytes(2, "big") + payload + b"\xff\xd9"


def test_reconcile_rules():
    u8 = (1, 90, iim.UTF8_DECL)
    old = [(2, 0, b"\0\x02"), (2, 116, b"\xa9 2004 \x80"), (2, 60, b"165100"), (2, 25, b"old"), (2, 99, b"x")]
    new = [u8, (2, 0, b"\0\x04"), (2, 116, b"\xa9 2004 \x80"), (2, 60, b"165100+0000"), (2, 25, b"old"),
           (2, 25, b"Zo\xc3\xab")]  # a backend's rewrite: record version changed, time re-encoded, 2:99 dropped
    out = iim.reconcile(_jpeg_with_iim(old), _jpeg_with_iim(new), {(1, 90), (2, 25)})
    got = iim.datasets(iim._find(out).data(out))
    assert got == [u8, (2, 0, b"\0\x02"), (2, 116, "© 2004 €".encode()), (2, 60, b"165100"), (2, 25, b"old"),
                   (2, 25, b"Zo\xc3\xab"), (2, 99, b"x")]
    # a declared coding system nobody decodes is left as it is; valid UTF-8 is never transcoded again
    odd = [(1, 90, b"\x1b%/I"), (2, 116, b"\xa9")]
    out = iim.reconcile(_jpeg_with_iim(odd), _jpeg_with_iim([u8, (2, 116, b"\xa9")]), {(1, 90)})
    assert iim.datasets(iim._find(out).data(out)) == [u8, (2, 116, b"\xa9")]
    assert iim.cp1252_to_utf8("Zoë".encode()) == "Zoë".encode()
    # digest: a valid one follows the new block, a stale one stays stale
    import hashlib
    good = _jpeg_with_iim(old, hashlib.md5(iim._encode(old)).digest())
    out = iim.reconcile(good, _jpeg_with_iim(new, hashlib.md5(iim._encode(old)).digest()), {(1, 90), (2, 25)})
    blk = iim._find(out)
    assert out[blk.digest[0]:blk.digest[0] + 16] == hashlib.md5(blk.data(out)).digest()
    stale = _jpeg_with_iim(old, b"\x11" * 16)
    out = iim.reconcile(stale, _jpeg_with_iim(new, b"\x11" * 16), {(1, 90), (2, 25)})
    blk = iim._find(out)
    assert out[blk.digest[0]:blk.digest[0] + 16] == b"\x11" * 16

"""MWG reading rules (metadata/mwg.py) on exiftool's own test images, with exiftool's MWG composite
tags (`exiftool -MWG:all`) as the oracle: EXIF ImageDescription first; XMP over IPTC unless the
Photoshop IPTCDigest shows the IPTC was changed after the XMP was written."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path


from repic_desktop.metadata.mwg import iptc_digests
from repic_desktop.metadata.reader import read_file_metadata

REAL = Path(__file__).parent / "realfiles"
EXIFTOOL = shutil.which("exiftool")


def _oracle(path: Path) -> dict:
    out = subprocess.run([EXIFTOOL, "-j", "-MWG:Description", "-MWG:Keywords", "--", str(path)],
                         capture_output=True, text=True, check=True).stdout
    row = json.loads(out)[0]
    kw = row.get("Keywords", [])
    return {"caption": row.get("Description"), "keywords": kw if isinstance(kw, list) else [kw]}


def test_mwg_test_image_reads_the_right_copies(tmp_path):
    # exiftool's MWG.jpg: each copy says whether the MWG rules should pick it ("RIGHT") or not ("WRONG").
    fm = read_file_metadata(REAL / "MWG.jpg")
    assert fm.caption == "RIGHT-EXIF-Description" and fm.caption_key == "IFD0:ImageDescription"
    assert fm.keywords == ["RIGHT1of2-XMP-Keywords", "RIGHT2of2-XMP-Keywords"]  # no IPTC keyword leaks in
    if EXIFTOOL:
        assert {"caption": fm.caption, "keywords": fm.keywords} == _oracle(REAL / "MWG.jpg")


def test_stale_iptc_digest_makes_iptc_win_and_a_current_one_xmp(tmp_path):
    # ExifTool.jpg: IPTC Keywords "jambalaya" were changed after XMP dc:subject was written, so the
    # stored IPTCDigest no longer matches the IPTC block: IPTC wins.
    src = REAL / "ExifTool.jpg"
    dg = iptc_digests(src.read_bytes(), "JPEG")
    assert dg.current == "6895be53ef9a287520f400aa17242c09" and dg.stored == "05ad1770b1a95f1f9788ac995fa647da"
    fm = read_file_metadata(src)
    assert fm.keywords == ["jambalaya"] and fm.caption == "A witty caption"
    if not EXIFTOOL:
        return
    assert {"caption": fm.caption, "keywords": fm.keywords} == _oracle(src)
    synced = tmp_path / "synced.jpg"
    shutil.copy(src, synced)  # the same file with the digest brought up to date: XMP wins
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-IPTCDigest=new", "--", str(synced)], check=True)
    assert iptc_digests(synced.read_bytes(), "JPEG").xmp_in_charge
    fm2 = read_file_metadata(synced)
    assert fm2.keywords == ["ExifTool", "Test", "XMP"]
    assert {"caption": fm2.caption, "keywords": fm2.keywords} == _oracle(synced)

"""Issue 13 "Done when": a batch export of the real-file corpus (tests/realfiles/, sources in its
SOURCES.md, results in docs/real-files.md) through the same function `repic export` uses
(metadata.export.export_photos) writes every file, keeps every tag another program wrote, changes no
pixel, writes fields exiftool reads back as we meant them, and a second export finds nothing to do.

The whole run happens once per module (one import, two exports, one exiftool call per reading; see
tests/realfiles_harness.py for what is compared and what is excluded, with why); each file and each
check is its own test id so a failure names the file. Files that fail today because of an item of
issue 13 that another change fixes are strict xfails: when the fix lands they XPASS and the mark goes.
"""
from __future__ import annotations

import pytest

from repic_desktop.metadata.exiftool_edit import exiftool_available
from repic_desktop.metadata.pyexiv2_edit import pyexiv2_available

from tests.helpers.realfiles_harness import CAPTION_WRITTEN, EXPECTED_SKIPS, corpus_files, run_corpus

pytestmark = [
    pytest.mark.skipif(not exiftool_available(), reason="exiftool is not installed: it is the second reader here"),
    pytest.mark.skipif(not pyexiv2_available(), reason="pyexiv2 is not installed"),
]

RAW_SUFFIXES = (".nef",)

# Expected failures (strict xfail), per file and check: issue 13 items not fixed yet; none today.
# Damage not named in the issue, found by this corpus and fixed (docs/real-files.md, "New findings"):
# DSCN0010.jpg's NikonScanIFD and portrait-orientation-6.jpg's MicrosoftPhoto namespace URI.
KNOWN: dict[str, dict[str, str]] = {}


def _params(check: str):
    out = []
    for name in corpus_files():
        if name in EXPECTED_SKIPS:
            continue
        reason = KNOWN.get(name, {}).get(check)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(name, id=name, marks=marks))
    return out


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    return run_corpus(tmp_path_factory.mktemp("realfiles"))


def _result(corpus_run, name):
    r = corpus_run.results[name]
    assert r.skipped is None, f"{name} was not imported: {r.skipped}"
    return r


@pytest.mark.parametrize("name", _params("written"))
def test_export_writes_the_file(corpus_run, name):
    r = _result(corpus_run, name)
    assert (r.status, r.reason) == ("written", None)
    # a camera RAW is never rewritten: its metadata goes to a sidecar (photo.NEF.xmp)
    assert r.target == ("sidecar" if name.lower().endswith(RAW_SUFFIXES) else "file")


@pytest.mark.parametrize("name", _params("tags"))
def test_export_keeps_every_tag_another_program_wrote(corpus_run, name):
    r = _result(corpus_run, name)
    assert r.damage == [], "\n".join(r.damage)


@pytest.mark.parametrize("name", _params("pixels"))
def test_export_changes_no_pixel(corpus_run, name):
    assert _result(corpus_run, name).pixels_same is True


@pytest.mark.parametrize("name", _params("readback"))
def test_exiftool_reads_back_what_we_wrote(corpus_run, name):
    r = _result(corpus_run, name)
    assert r.status == "written" and r.changes, (r.status, r.reason)
    assert "XMP-dc:Description" in {c["key"] for c in r.changes}
    assert [c["new"] for c in r.changes if c["key"] == "XMP-dc:Description"] == [CAPTION_WRITTEN]
    assert r.readback == [], "\n".join(r.readback)


@pytest.mark.parametrize("name", _params("second"))
def test_second_export_reports_unchanged_and_writes_nothing(corpus_run, name):
    r = _result(corpus_run, name)
    assert r.second_status == "unchanged"
    assert r.second_bytes_same is True


def test_corpus_is_small_and_every_file_has_a_source():
    from tests.helpers.realfiles_harness import CORPUS
    files = corpus_files()
    assert len(files) >= 25
    sizes = {n: (CORPUS / n).stat().st_size for n in files}
    assert max(sizes.values()) <= 400_000 and sum(sizes.values()) <= 4_000_000  # one RAW with a preview is 382 KB
    sources = (CORPUS / "SOURCES.md").read_text(encoding="utf-8")
    listed = {line.split("|")[1].strip() for line in sources.splitlines() if line.startswith("| ")}
    assert set(files) <= listed, sorted(set(files) - listed)


def test_the_comparison_ignores_only_our_fields_and_derived_keys():
    from repic_desktop.metadata.fields import WRITABLE

    from tests.helpers.realfiles_harness import tag_damage
    mn = {"bytes": 10, "sha256": "a"}
    before = {"System:FileSize": 1, "XMP-dc:Description": "old", "XMP-dc:Description-de": "alt",
              "Canon:LensModel": "EF", "ExifIFD:MakerNoteCanon": mn, "ExifIFD:MakerNoteUnknown": mn,
              "File:CurrentIPTCDigest": "d1", "Photoshop:IPTCDigest": "d1", "XMP-cm2e:Family": []}
    after = {**before, "System:FileSize": 2, "XMP-dc:Description": "new", "File:CurrentIPTCDigest": "d2",
             "ExifIFD:MakerNoteCanon": {"bytes": 12, "sha256": "b"}, **{f.key: "x" for f in WRITABLE}}
    del after["XMP-cm2e:Family"]
    assert tag_damage(before, after) == [
        "stale Photoshop:IPTCDigest: the IPTC block changed but its stored digest did not"]
    after.update({"Photoshop:IPTCDigest": "d2", "XMP-dc:Description-de": "neu"})
    del after["Canon:LensModel"], after["ExifIFD:MakerNoteUnknown"]
    assert tag_damage(before, after) == ['lost Canon:LensModel = "EF"', 'lost ExifIFD:MakerNoteUnknown = '
                                         '{"bytes": 10, "sha256": "a"}',
                                         'changed XMP-dc:Description-de: "alt" -> "neu"']

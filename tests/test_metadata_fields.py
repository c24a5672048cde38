"""The field map, canonical values, region geometry with EXIF orientation, and the pure planning logic
(merge with what other tools wrote) - no files, no backends."""
from __future__ import annotations

import pytest

from repic_desktop.metadata import geometry
from repic_desktop.metadata.exiftool_edit import exiftool_args
from repic_desktop.metadata.pyexiv2_edit import seq_to_bag
from repic_desktop.metadata.fields import (
    BY_KEY, FIELDS, GROUPS, canonical, caption_tags, field_table, fields_for, strip_tags, truncate_utf8,
)
from repic_desktop.metadata.plan import MetadataValues, Person, RegionBox, WriteOptions, plan_changes


def test_every_group_fills_the_keys_the_issue_lists():
    keys = {g: {f.key for f in fields_for([g])} for g in GROUPS}
    assert {"XMP-dc:Description", "IFD0:ImageDescription", "IPTC:Caption-Abstract"} <= keys["caption"]
    assert {"XMP-iptcExt:PersonInImage", "XMP-dc:Subject", "IPTC:Keywords", "XMP-lr:HierarchicalSubject",
            "XMP-digiKam:TagsList"} <= keys["people"]
    assert keys["regions"] == {"XMP-mwg-rs:RegionInfo", "XMP-MP:RegionInfoMP"}
    assert keys["keywords"] == {"XMP-dc:Subject", "IPTC:Keywords"}
    assert BY_KEY["IPTC:Caption-Abstract"].max_bytes == 2000 and BY_KEY["IPTC:Keywords"].max_bytes == 64
    assert len({f.exiv2 for f in FIELDS}) == len(FIELDS)
    rows = field_table()
    assert {r["field"] for r in rows} >= set(GROUPS) and all(r["exiftool"] and r["exiv2"] for r in rows)


def test_caption_tags_and_bracket_stripping():
    assert caption_tags("<Anya> and <Zoë> with <小明> near <|im_start|>") == ["Anya", "Zoë", "小明"]
    assert caption_tags("<Anya> and <Zoë> with <Anya>") == ["Anya", "Zoë"]
    assert "<|im_start|>" not in caption_tags("<|im_start|>")
    assert strip_tags("<Anya> and <Rex> at the beach") == "Anya and Rex at the beach"
    assert strip_tags("keep <|im_start|> as is") == "keep <|im_start|> as is"


def test_truncate_utf8_never_splits_a_character():
    s = "ü" * 1500  # 3000 bytes
    t = truncate_utf8(s, 2000)
    assert len(t.encode()) == 2000 and t == "ü" * 1000
    assert truncate_utf8("小明小明", 7) == "小明"
    assert truncate_utf8("short", 64) == "short"


def test_canonical_values_from_either_backend_shape():
    # pyexiv2 lang-alt dict, exiftool scalar for a one-item list, pyexiv2's UserComment prefix, XPComment NUL
    assert canonical("XMP-dc:Description", {'lang="x-default"': "Hi", 'lang="de"': "Hallo"}) == "Hi"
    assert canonical("XMP-dc:Subject", "solo") == ["solo"]
    assert canonical("ExifIFD:UserComment", "charset=Unicode Zoë") == "Zoë"
    assert canonical("IFD0:XPComment", "Zoë\x00") == "Zoë"
    assert canonical("IPTC:CodedCharacterSet", "\x1b%G") == "UTF8"
    assert canonical("XMP-dc:Description", "   ") is None
    r = canonical("XMP-mwg-rs:RegionInfo", {"AppliedToDimensions": {"W": "640", "H": "480", "Unit": "pixel"},
                                            "RegionList": {"Name": "A", "Type": "Face", "Rotation": "0",
                                                           "Area": {"X": "0.1234567", "Y": ".5", "W": "0.1",
                                                                    "H": "0.1", "Unit": "normalized"}}})
    assert r == {"AppliedToDimensions": {"W": 640, "H": 480, "Unit": "pixel"},
                 "RegionList": [{"Name": "A", "Type": "Face", "Rotation": "0",
                                 "Area": {"X": 0.123457, "Y": 0.5, "W": 0.1, "H": 0.1, "Unit": "normalized"}}]}
    assert canonical("XMP-MP:RegionInfoMP", {"Regions": [{"PersonDisplayName": "A", "Rectangle": "0.1, 0.2, 0.3, 0.4"}]}) \
        == {"Regions": [{"PersonDisplayName": "A", "Rectangle": [0.1, 0.2, 0.3, 0.4]}]}


# ------------------------------------------------------------------------------------------ geometry

@pytest.mark.parametrize("orientation", range(1, 9))
def test_display_stored_round_trip(orientation):
    box = (0.1, 0.2, 0.3, 0.15)
    st = geometry.display_to_stored(box, orientation)
    back = geometry.stored_to_display(st, orientation)
    assert all(abs(a - b) < 1e-12 for a, b in zip(back, box))
    if orientation >= 5:
        assert abs(st[2] - box[3]) < 1e-12 and abs(st[3] - box[2]) < 1e-12  # w and h swap


def test_orientation_6_matches_exiftools_rotate_regions_config():
    # exiftool's RotateMWGRegionCW90 (stored -> displayed for orientation 6): X' = 1-Y, Y' = X (centres)
    cx, cy, w, h = 0.3, 0.2, 0.1, 0.2
    disp = geometry.stored_to_display(geometry.from_center((cx, cy, w, h)), 6)
    dcx, dcy, dw, dh = geometry.to_center(disp)
    assert (round(dcx, 9), round(dcy, 9), round(dw, 9), round(dh, 9)) == (0.8, 0.3, 0.2, 0.1)
    assert geometry.stored_size(480, 640, 6) == (640, 480)
    assert geometry.stored_size(640, 480, 3) == (640, 480)


def test_pixel_conversions_clamp_and_drop_empty_boxes():
    assert geometry.norm_to_pixels((0.5, 0.5, 0.25, 0.25), 100, 80) == (50, 40, 25, 20)
    assert geometry.norm_to_pixels((0.9, 0.9, 0.5, 0.5), 100, 100) == (90, 90, 10, 10)
    assert geometry.norm_to_pixels((1.2, 0.1, 0.1, 0.1), 100, 100) is None


# ------------------------------------------------------------------------------------------ planning

VALUES = MetadataValues(caption="Anya and Rex", people=[Person("Anya"), Person("Rex", "pet"), Person("Teddy", "other")],
                        regions=[RegionBox("Anya", "person", (0.1, 0.1, 0.2, 0.2)), RegionBox("Rex", "pet", (0.5, 0.5, 0.2, 0.2))],
                        keywords=["Teddy"])


def _plan(old, values=VALUES, prev=None, containers=("exif", "iptc", "xmp"), has_iptc=True, **opts):
    return plan_changes(old, values, WriteOptions(**opts), containers=containers, stored_dims=(100, 50),
                        previous_owned=prev, has_iptc=has_iptc)


def test_plan_writes_all_copies_and_merges_lists():
    old = {"XMP-dc:Subject": ["holiday", "anya"], "IPTC:Keywords": ["holiday"], "IFD0:XPComment": "old caption",
           "XMP-digiKam:TagsList": ["Places/Lake"]}
    p = _plan(old)
    c = p.changes
    assert c["XMP-dc:Description"] == c["IFD0:ImageDescription"] == c["IPTC:Caption-Abstract"] == "Anya and Rex"
    assert c["IFD0:XPComment"] == "Anya and Rex"                       # secondary copy present -> kept in sync
    assert "ExifIFD:UserComment" not in c                              # absent secondary copy is not added
    assert c["XMP-dc:Subject"] == ["holiday", "anya", "Rex", "Teddy"]   # case-insensitive: "anya" is Anya
    assert c["XMP-iptcExt:PersonInImage"] == ["Anya", "Rex"]           # "other" concepts are keywords only
    assert c["XMP-lr:HierarchicalSubject"] == ["People|Anya", "Pets|Rex"]
    assert c["XMP-digiKam:TagsList"] == ["Places/Lake", "People/Anya", "Pets/Rex"]
    assert c["IPTC:CodedCharacterSet"] == "UTF8"
    mwg = c["XMP-mwg-rs:RegionInfo"]
    assert mwg["AppliedToDimensions"] == {"W": 100, "H": 50, "Unit": "pixel"}
    assert [(r["Name"], r["Type"]) for r in mwg["RegionList"]] == [("Anya", "Face"), ("Rex", "Pet")]
    assert mwg["RegionList"][0]["Area"] == {"X": 0.2, "Y": 0.2, "W": 0.2, "H": 0.2, "Unit": "normalized"}
    assert [r["PersonDisplayName"] for r in c["XMP-MP:RegionInfoMP"]["Regions"]] == ["Anya"]  # no pets in MP
    assert p.owned["XMP-dc:Subject"] == ["Rex", "Teddy"]
    # applying the plan gives a state where the same plan changes nothing
    assert _plan({**old, **c}, prev=p.owned).changes == {}


def test_plan_options_groups_pets_and_containers():
    c = _plan({}, groups=("caption",)).changes
    assert set(c) == {"XMP-dc:Description", "IFD0:ImageDescription", "IPTC:Caption-Abstract", "IPTC:CodedCharacterSet"}
    c = _plan({}, pet_regions=False, mp_regions=False).changes
    assert [r["Name"] for r in c["XMP-mwg-rs:RegionInfo"]["RegionList"]] == ["Anya"] and "XMP-MP:RegionInfoMP" not in c
    c = _plan({}, containers=("xmp",)).changes   # a sidecar / WebP: no IPTC, no EXIF
    assert not any(k.startswith(("IPTC", "IFD0", "ExifIFD")) for k in c)
    c = _plan({}, iptc="if-present", has_iptc=False).changes
    assert not any(k.startswith("IPTC") for k in c)
    assert any(k.startswith("IPTC") for k in _plan({}, iptc="if-present", has_iptc=True).changes)
    long = MetadataValues(caption="ü" * 1500, keywords=["k" * 70])
    c = _plan({}, values=long).changes
    assert len(c["IPTC:Caption-Abstract"].encode()) == 2000 and c["XMP-dc:Description"] == "ü" * 1500
    assert c["IPTC:Keywords"] == ["k" * 64] and c["XMP-dc:Subject"] == ["k" * 70]


def test_plan_removes_only_what_we_wrote_before():
    first = _plan({"XMP-dc:Subject": ["holiday"]})
    state = {"XMP-dc:Subject": ["holiday"], **first.changes}
    # Rex is untagged in the library: our old items go, the user's "holiday" stays
    without_rex = MetadataValues(caption="Anya", people=[Person("Anya")],
                                 regions=[RegionBox("Anya", "person", (0.1, 0.1, 0.2, 0.2))])
    c = _plan(state, values=without_rex, prev=first.owned).changes
    assert c["XMP-dc:Subject"] == ["holiday", "Anya"]
    assert c["XMP-iptcExt:PersonInImage"] == ["Anya"]
    assert [r["Name"] for r in c["XMP-mwg-rs:RegionInfo"]["RegionList"]] == ["Anya"]


def test_plan_keeps_foreign_regions_and_replaces_ours():
    old = {"XMP-mwg-rs:RegionInfo": {"AppliedToDimensions": {"W": 100, "H": 50, "Unit": "pixel"}, "RegionList": [
        {"Name": "Ben", "Type": "Face", "Area": {"X": 0.7, "Y": 0.5, "W": 0.2, "H": 0.3, "Unit": "normalized"}},
        {"Type": "Face", "Area": {"X": 0.5, "Y": 0.8, "W": 0.1, "H": 0.1, "Unit": "normalized"}},
        {"Name": "anya", "Type": "Face", "Area": {"X": 0.9, "Y": 0.9, "W": 0.1, "H": 0.1, "Unit": "normalized"}},
        {"Type": "Focus", "Area": {"X": 0.5, "Y": 0.5, "W": 0.05, "H": 0.05, "Unit": "normalized"}}]}}
    c = _plan(old).changes["XMP-mwg-rs:RegionInfo"]["RegionList"]
    assert [(r.get("Name"), r["Type"]) for r in c] == [("Ben", "Face"), (None, "Face"), (None, "Focus"),
                                                       ("Anya", "Face"), ("Rex", "Pet")]


# ------------------------------------------------------------------------------------------ backend text

def test_seq_to_bag_only_touches_bag_properties():
    packet = ("<dc:subject>\n <rdf:Seq><rdf:li>a</rdf:li></rdf:Seq></dc:subject>"
              "<digiKam:TagsList><rdf:Seq><rdf:li>People/a</rdf:li></rdf:Seq></digiKam:TagsList>"
              "<mwg-rs:RegionList> <rdf:Seq><rdf:li>x</rdf:li></rdf:Seq></mwg-rs:RegionList>")
    out = seq_to_bag(packet)
    assert out.count("<rdf:Bag>") == 2 and "<digiKam:TagsList><rdf:Seq>" in out


def test_exiftool_args_escape_newlines_html_and_struct_specials():
    args = exiftool_args({"XMP-dc:Description": "a\nb & <c>", "XMP-dc:Subject": ["x"], "IPTC:ObjectName": None,
                          "XMP-mwg-rs:RegionInfo": {"AppliedToDimensions": {"W": 2, "H": 1, "Unit": "pixel"},
                                                    "RegionList": [{"Name": "Tom, {Jr}", "Type": "Face"}]}})
    assert "-XMP-dc:Description=a&#xa;b &amp; &lt;c&gt;" in args
    assert args[args.index("-XMP-dc:Subject="):][:2] == ["-XMP-dc:Subject=", "-XMP-dc:Subject=x"]
    assert "-IPTC:ObjectName=" in args
    assert any("Name=Tom|, |{Jr|}" in a for a in args)
    assert not any("\n" in a for a in args)

"""Reading what digiKam, Lightroom, Picasa and Immich wrote, storing it in the library, and seeding
concepts (with face regions as reference boxes) from it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from repic_desktop.cli import main
from repic_desktop.core.library import Box, Library
from repic_desktop.core.scanner import scan_folder
from repic_desktop.metadata import (
    MetadataValues, Person, RegionBox, apply_concept_proposals, export_photos, photo_ids_under, propose_concepts,
    read_file_metadata, read_metadata_into_library, write_metadata,
)
from repic_desktop.metadata.export import accepted_photo_ids

from tests.helpers.metadata_files import digikam_packet, inject_xmp, lightroom_packet, make_image, needs_pyexiv2

pytestmark = needs_pyexiv2


@pytest.fixture
def digikam_album(tmp_path):
    root = tmp_path / "dk"
    root.mkdir()
    # stored 96x64, orientation 6 -> displayed 64x96; digiKam's regions are in the stored frame
    inject_xmp(make_image(root / "picnic.jpg", size=(96, 64), orientation=6), digikam_packet(96, 64))
    make_image(root / "grandpa.jpg", size=(96, 64))
    (root / "grandpa.xmp").write_text(lightroom_packet(96, 64), encoding="utf-8")   # Lightroom's sidecar name
    # Picasa-style: MWG regions only; Immich-style: a photo.ext.xmp with TagsList and a description
    write_metadata(make_image(root / "picasa.png"), MetadataValues(
        regions=[RegionBox("Ben", "person", (0.5, 0.1, 0.2, 0.3))], display_size=(96, 64)),
        __import__("repic_desktop.metadata", fromlist=["WriteOptions"]).WriteOptions(groups=("regions",)))
    make_image(root / "immich.webp")
    (root / "immich.webp.xmp").write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:digiKam="http://www.digikam.org/ns/1.0/"><dc:description><rdf:Alt>'
        '<rdf:li xml:lang="x-default">Ben on the bike</rdf:li></rdf:Alt></dc:description><digiKam:TagsList>'
        '<rdf:Seq><rdf:li>People/Ben</rdf:li><rdf:li>Trips/2024</rdf:li></rdf:Seq></digiKam:TagsList>'
        '</rdf:Description></rdf:RDF></x:xmpmeta>', encoding="utf-8")
    return root


def test_read_a_digikam_file_with_rotation(digikam_album):
    fm = read_file_metadata(digikam_album / "picnic.jpg")
    assert fm.caption == "Picnic by the lake" and fm.caption_key == "XMP-dc:Description"
    assert fm.writer == "digiKam-8.2.0" and (fm.width, fm.height, fm.orientation) == (64, 96, 6)
    assert [(n.name, n.kind) for n in fm.names] == [("Anya Smith", "person"), ("Ben", "person"), ("Fido", "pet")]
    assert fm.keywords == ["Lake"]   # names are not keywords; digiKam's People/Unknown is not a name
    anya = next(r for r in fm.regions if r.name == "Anya Smith")
    # stored centre (0.25, 0.25), 0.2 x 0.3 -> displayed for orientation 6: x = 1 - (y + h/2), y = x - w/2
    assert [round(v, 6) for v in anya.box] == [0.6, 0.15, 0.3, 0.2]
    assert {r.source for r in fm.regions} == {"mwg"}   # MP duplicates of the same names are not repeated


def test_lightroom_sidecar_picasa_and_immich_styles(digikam_album):
    lr = read_file_metadata(digikam_album / "grandpa.jpg")
    assert lr.read_from == ["embedded", str(digikam_album / "grandpa.xmp")]
    assert lr.caption == "Grandpa Joe at his 80th" and [n.name for n in lr.names] == ["Grandpa Joe"]
    assert lr.keywords == ["birthday"] and lr.writer.startswith("Adobe Photoshop Lightroom")
    pic = read_file_metadata(digikam_album / "picasa.png")
    assert [n.name for n in pic.names] == ["Ben"] and pic.caption is None
    im = read_file_metadata(digikam_album / "immich.webp")
    assert im.caption == "Ben on the bike" and [n.name for n in im.names] == ["Ben"]


def test_camera_boilerplate_is_not_a_caption(tmp_path):
    import pyexiv2
    p = make_image(tmp_path / "cam.jpg")
    img = pyexiv2.Image(str(p))
    img.modify_exif({"Exif.Image.ImageDescription": "OLYMPUS DIGITAL CAMERA         "})
    img.close()
    assert read_file_metadata(p).caption is None


def test_a_phones_bare_maker_name_is_not_a_caption():
    """The Samsung Galaxy S writes ImageDescription "SAMSUNG" (the real file of the corpus)."""
    real = Path(__file__).parent / "realfiles" / "Samsung GT-I9000 (Galaxy S).jpg"
    assert read_file_metadata(real).caption is None


def test_read_into_library_tags_known_people_and_proposes_the_rest(tmp_path, digikam_album):
    lib = Library(tmp_path / "lib.sqlite")
    scan_folder(lib, str(digikam_album))
    lib.concepts.add("Ben", "person")
    ids = {Path(p.path).name: p.id for p in lib.photos.list()}
    lib.captions.add(ids["grandpa.jpg"], "<Grandpa Joe> blowing out candles", status="accepted")  # our own caption
    rep = read_metadata_into_library(lib, photo_ids_under(lib, digikam_album))
    assert rep.photos == 4 and rep.problems == []
    assert rep.captions_added == 2   # picnic and immich; grandpa keeps the library's caption
    assert [k["path"].endswith("grandpa.jpg") for k in rep.captions_kept] == [True]
    cap = lib.captions.current(ids["picnic.jpg"])
    assert (cap.text, cap.source, cap.status) == ("Picnic by the lake", "import", "accepted")
    assert cap.provenance["import"]["writer"] == "digiKam-8.2.0" and cap.provenance["import"]["keywords"] == ["Lake"]
    # Ben exists: tagged where he appears, with his face box in displayed pixels of the rotated photo
    ben = lib.concepts.get("Ben")
    regions = [r for r in lib.concepts.regions(ids["picnic.jpg"]) if r.concept_id == ben.id]
    assert [(r.box.as_list(), r.source) for r in regions] == [([22, 58, 20, 19], "import")]
    assert ben.id in {c.id for c in lib.concepts.of_photo(ids["immich.webp"])}
    props = {p.name: p for p in rep.proposals}
    assert set(props) == {"Anya Smith", "Fido", "Grandpa Joe"}
    assert props["Fido"].kind == "pet" and props["Anya Smith"].photos == [{"photo_id": ids["picnic.jpg"],
                                                                           "box": [38, 14, 20, 20]}]
    # a re-read adds nothing twice
    again = read_metadata_into_library(lib, list(ids.values()))
    assert (again.captions_added, again.tags_added, again.regions_added) == (0, 0, 0)
    # creating the proposed concepts: face regions become reference boxes
    made = apply_concept_proposals(lib, propose_concepts(lib, list(ids.values())), names=["Anya Smith", "Fido"])
    assert sorted(made.created) == ["Anya Smith", "Fido"] and made.references_added == 2
    refs = lib.concepts.refs("Anya Smith")
    assert [(r.photo_id, r.box.as_list()) for r in refs] == [(ids["picnic.jpg"], [38, 14, 20, 20])]
    assert lib.concepts.get("Fido").kind == "pet"
    lib.close()


def test_export_then_import_into_a_new_library_gives_the_same_boxes(tmp_path):
    """The frames agree end to end: what one library exports (rotated photo), a fresh library reads back."""
    album = tmp_path / "a"
    album.mkdir()
    make_image(album / "r.jpg", size=(120, 80), orientation=8)
    with Library(tmp_path / "one.sqlite") as one:
        scan_folder(one, str(album))
        pid = one.photos.list()[0].id
        one.concepts.add("Zoë", "person")
        one.concepts.add("小明", "person")
        one.concepts.tag(pid, "Zoë", box=Box(3, 7, 30, 40))
        one.concepts.tag(pid, "小明", box=Box(41, 60, 25, 33))
        one.captions.add(pid, "<Zoë> and <小明>", status="accepted")
        assert export_photos(one, accepted_photo_ids(one)).counts == {"written": 1}
    with Library(tmp_path / "two.sqlite") as two:
        scan_folder(two, str(album))
        rep = read_metadata_into_library(two, [two.photos.list()[0].id], create_concepts=True)
        assert sorted(rep.created) == ["Zoë", "小明"]
        p = two.photos.list()[0]
        got = {two.concepts.get(r.concept_id).name: r.box.as_list() for r in two.concepts.regions(p.id)}
        assert got == {"Zoë": [3, 7, 30, 40], "小明": [41, 60, 25, 33]}
        assert two.captions.current(p.id).text == "Zoë and 小明"


def test_cli_metadata_read_with_create_concepts(tmp_path, digikam_album, capsys):
    L = ["--library", str(tmp_path / "cli.sqlite")]
    assert main(["import", str(digikam_album), "--quiet", *L]) == 0
    capsys.readouterr()
    assert main(["metadata", "read", "--all", *L]) == 0
    out = capsys.readouterr().out
    assert "name(s) are not concepts yet" in out and "Anya Smith (person): 1 photo(s), 1 region(s)" in out
    assert main(["metadata", "read", "--all", "--create-concepts", "--json", *L]) == 0
    data = json.loads(capsys.readouterr().out)
    assert sorted(data["created"]) == ["Anya Smith", "Ben", "Fido", "Grandpa Joe"]
    assert main(["metadata", "read", *L]) == 1
    assert "nothing to read" in capsys.readouterr().err


def test_invalid_names_are_proposals_with_a_problem(tmp_path):
    p = make_image(tmp_path / "x.jpg")
    write_metadata(p, MetadataValues(people=[Person("A <B>"), Person("Okay")]))
    with Library(tmp_path / "l.sqlite") as lib:
        scan_folder(lib, str(tmp_path))
        rep = read_metadata_into_library(lib, [lib.photos.list()[0].id], create_concepts=True)
        assert rep.created == ["Okay"]
        assert rep.problems and "cannot contain" in rep.problems[0]["reason"]


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool extracts the real file's XMP packet")
def test_a_nan_region_coordinate_drops_that_box_not_the_names(tmp_path, capsys):
    """A sidecar whose MWG region says stArea:x="nan" (immich's portrait.jpg): `metadata show` raised
    'cannot convert float NaN to integer' and import --read-metadata dropped all of the photo's names."""
    import subprocess

    photo = tmp_path / "p.jpg"
    shutil.copy(Path(__file__).parent / "realfiles" / "portrait.jpg", photo)
    xmp = subprocess.run(["exiftool", "-b", "-XMP", str(photo)], capture_output=True, check=True).stdout
    assert b'stArea:x="0.368452"' in xmp
    (tmp_path / "p.jpg.xmp").write_bytes(xmp.replace(b'stArea:x="0.368452"', b'stArea:x="nan"'))
    meta = read_file_metadata(photo)
    assert {n.name for n in meta.names} == {"Marie Curie", "Pierre Curie"}
    assert main(["metadata", "show", str(photo)]) == 0
    assert "Pierre Curie Face 537,83,81,169" in capsys.readouterr().out
    lib = Library(tmp_path / "lib.sqlite")
    scan_folder(lib, str(tmp_path))
    rep = read_metadata_into_library(lib, [p.id for p in lib.photos.list()], create_concepts=True)
    assert sorted(c.name for c in lib.concepts.all()) == ["Marie Curie", "Pierre Curie"] and rep.problems == []

"""Concept validation, reference photos from files and the RePIC/RAP database.json round trip."""
from __future__ import annotations

import json
import os
import re

import pytest
from PIL import Image

from repic_desktop.core.concepts import (
    ConceptError, export_repic_database, import_reference_file, import_repic_database, kind_from_category,
    reference_path, validate_info, validate_name,
)
from repic_desktop.core.library import Box, Library, LibraryError


def jpeg(path, size=(80, 60), color=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def test_validation_trims_and_flattens():
    assert validate_name("  Anya Forger ") == "Anya Forger"
    assert validate_name("Zoë 🐶") == "Zoë 🐶"
    assert validate_info("  A young girl\nwith pink hair. ") == "A young girl with pink hair."
    for token in ["<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|endoftext|>", "<|anything|>"]:
        with pytest.raises(ConceptError, match="control token"):
            validate_name(f"x{token}")
        with pytest.raises(ConceptError, match="control token"):
            validate_info(f"likes {token} a lot")


def test_kind_from_repic_category():
    assert kind_from_category("person") == "person"
    assert kind_from_category("Dog") == "pet"
    assert kind_from_category("cat") == "pet"
    assert kind_from_category("backpack") == "other"
    assert kind_from_category(None) == "other"


def test_reference_file_is_copied_into_the_library_once(library, tmp_path):
    src = jpeg(tmp_path / "downloads" / "anya.jpg")
    library.concepts.add("Anya", "person")
    r1 = import_reference_file(library, "Anya", src, box=Box(10, 10, 40, 40))
    r2 = import_reference_file(library, "Anya", src)
    assert r1.file_path == r2.file_path and r1.file_path.startswith(str(library.data_dir))
    src.unlink()  # the user tidies their downloads: the reference survives
    assert os.path.exists(reference_path(library, r1))
    assert library.concepts.refs("Anya")[0].box == Box(10, 10, 40, 40)


def test_unusable_reference_files_are_refused_clearly(library, tmp_path):
    library.concepts.add("Anya", "person")
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    with pytest.raises(LibraryError, match="cannot be used as a reference photo"):
        import_reference_file(library, "Anya", bad)
    with pytest.raises(LibraryError, match="cannot read"):
        import_reference_file(library, "Anya", tmp_path / "nope.jpg")
    with pytest.raises(LibraryError, match="outside"):
        import_reference_file(library, "Anya", jpeg(tmp_path / "ok.jpg"), box=Box(70, 0, 20, 20))
    assert library.concepts.refs("Anya") == []


def make_repic_checkout(root):
    """A folder laid out like the RePIC repo: paths in the json are relative to the repo root."""
    db_dir = root / "data" / "database_tot" / "database_2_concepts"
    jpeg(db_dir / "Anya.jpg", color=(250, 180, 200))
    jpeg(db_dir / "Bond.jpg", color=(240, 240, 240))
    jpeg(db_dir / "ironman.jpg", color=(200, 20, 20))
    data = {
        "concept_dict": {
            "<Bond>": {"name": "Bond", "image": "./data/database_tot/database_2_concepts/Bond.jpg",
                       "info": "A white dog wearing a black bow tie.", "category": "dog"},
            "<Anya>": {"name": "Anya", "image": "./data/database_tot/database_2_concepts/Anya.jpg",
                       "info": "A young girl with pink hair and big green eyes.", "category": "person"},
            "<ironman>": {"name": "Iron Man", "image": ["./data/database_tot/database_2_concepts/ironman.jpg"],
                          "info": "A hero in a red and gold suit.", "category": "person"},
            "<ghost>": {"name": "Ghost", "image": "./data/database_tot/database_2_concepts/ghost.jpg",
                        "info": "Nobody has a photo of it.", "category": "other"},
            "<evil>": {"name": "Evil<|im_start|>", "image": "", "info": "", "category": "person"},
        },
        "path_to_concept": {"./data/database_tot/database_2_concepts/Anya.jpg": "<Anya>"},
    }
    path = db_dir / "database.json"
    path.write_text(json.dumps(data))
    return path


def test_import_repic_database_keeps_file_order_and_reports_problems(library, tmp_path):
    db_json = make_repic_checkout(tmp_path / "RePIC")
    report = import_repic_database(library, db_json)
    assert report.added == ["Bond", "Anya", "Iron Man"]
    assert report.references == 3
    problems = {p["concept"]: p["problem"] for p in report.problems}
    assert "reference image not found" in problems["<ghost>"]  # all or nothing: no concept without its photo
    assert "control token" in problems["<evil>"]
    concepts = library.concepts.all()
    assert [c.name for c in concepts] == ["Bond", "Anya", "Iron Man"]  # DB order = prompt order
    bond = library.concepts.get("Bond")
    assert (bond.kind, bond.category, bond.repic_key) == ("pet", "dog", "<Bond>")
    assert library.concepts.get("Iron Man").repic_key == "<ironman>"
    again = import_repic_database(library, db_json)
    assert again.added == [] and again.existing == ["Bond", "Anya", "Iron Man"]
    jpeg(db_json.parent / "ghost.jpg")  # the missing photo turns up: importing again completes the set
    assert import_repic_database(library, db_json).added == ["Ghost"]


def test_import_rejects_files_that_are_not_repic_databases(library, tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(LibraryError, match="not valid JSON"):
        import_repic_database(library, p)
    p.write_text('{"something": 1}')
    with pytest.raises(LibraryError, match="concept_dict"):
        import_repic_database(library, p)


def test_export_then_import_round_trips(library, tmp_path):
    import_repic_database(library, make_repic_checkout(tmp_path / "RePIC"))
    library.concepts.add("Ghost", "other", "Nobody has a photo of it.", category="other", repic_key="<ghost>")
    photo = jpeg(tmp_path / "album" / "beach.jpg", size=(120, 90))
    pid = library.photos.add(photo, size=photo.stat().st_size, mtime_ns=photo.stat().st_mtime_ns,
                             content_hash="x", format="JPEG", width=120, height=90)
    library.concepts.add_ref("Anya", photo_id=pid, box=Box(10, 20, 30, 40))

    plain = export_repic_database(library, tmp_path / "out" / "plain.json")
    data = json.loads((tmp_path / "out" / "plain.json").read_text())
    assert plain["concepts"] == 4
    assert list(data["concept_dict"]) == ["<Bond>", "<Anya>", "<ironman>", "<ghost>"]
    assert os.path.isabs(data["concept_dict"]["<Bond>"]["image"])
    assert data["concept_dict"]["<Anya>"]["image"][1] == str(photo)
    assert data["concept_dict"]["<ghost>"]["image"] == []

    out = tmp_path / "moved" / "database.json"
    export_repic_database(library, out, images_dir=tmp_path / "moved" / "images")
    data = json.loads(out.read_text())
    anya_imgs = data["concept_dict"]["<Anya>"]["image"]
    assert all(p.startswith("./images/") for p in anya_imgs)
    with Image.open(out.parent / anya_imgs[1]) as crop:
        assert crop.size == (30, 40)  # the boxed reference is exported cropped
    assert data["path_to_concept"][anya_imgs[0]] == "<Anya>"

    with Library(tmp_path / "second.sqlite") as other:
        rep = import_repic_database(other, out)
        assert rep.added == ["Bond", "Anya", "Iron Man", "Ghost"]
        assert rep.references == 4
        assert [(c.name, c.kind, c.info) for c in other.concepts.all()] == \
            [(c.name, c.kind, c.info) for c in library.concepts.all()]


@pytest.mark.parametrize("bad, reason", [
    ("|im_end|", "'|'"),                      # with the app's brackets it would be <|im_end|>
    ("Tab\tName", "control characters"),      # would be a second person beside "Tab Name"
    ("a\u2028b", "single line"),
    ("\u202eevil", "text-direction"),         # right-to-left override
    ("An\u200bya", "invisible"),              # zero-width space: looks like "Anya"
    ("A\u200dB", "invisible"),                # a joiner outside an emoji sequence
    ("\ufeffAnya", "invisible"),
    ("b/c", "digiKam"),                       # People/b/c reads back as two concepts
    ("Mary, Ann", "--concepts"),
    ("back\\slash", "path"),
    ("x\x1b[2J", "control characters"),      # would clear a terminal
    ("tool_call", "reserved"),                # <tool_call> is one token of Qwen's vocabulary
])
def test_names_that_break_hierarchies_lists_or_terminals_are_refused(bad, reason):
    with pytest.raises(ConceptError, match=re.escape(reason)):
        validate_name(bad)


def test_names_are_normalised_so_lookalikes_are_one_person():
    assert validate_name("Zoe\u0308") == validate_name("Zo\u00eb") == "Zo\u00eb"   # NFD (macOS) = NFC
    assert validate_name("Mary\u00a0\u3000 Ann") == "Mary Ann"                    # spaces of every kind
    family = "\U0001F468\u200d\U0001F469\u200d\U0001F467 Smith"                    # an emoji ZWJ sequence
    assert validate_name(family) == family


def test_library_and_repic_import_refuse_an_injecting_name(library, tmp_path):
    with pytest.raises(ConceptError, match="'|'"):
        library.concepts.add("|im_end|", "person")
    db = tmp_path / "db" / "database.json"
    db.parent.mkdir()
    jpeg(db.parent / "a.jpg")
    db.write_text(json.dumps({"concept_dict": {"<|im_end|>": {"name": "|im_end|", "image": ["a.jpg"],
                                                              "info": "x", "category": "person"}}}))
    report = import_repic_database(library, db)
    assert "'|'" in report.problems[0]["problem"]
    assert library.concepts.all() == []

"""Hostile RePIC/RAP database.json files and exports that must not overwrite or write through links.

A database.json is something people download. Its image paths must not reach files outside its own folder
(or the RePIC checkout that holds it), its JSON types are not to be trusted, and exporting must never
clobber what is already on disk.
"""
from __future__ import annotations

import json
import os

import pytest
from PIL import Image

from repic_desktop.cli import main
from repic_desktop.core.concepts import export_repic_database, import_repic_database
from repic_desktop.core.library import LibraryError

symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks")


def jpeg(path, size=(40, 30), color=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def write_db(folder, concept_dict, **extra):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "database.json"
    path.write_text(json.dumps({"concept_dict": concept_dict, **extra}))
    return path


def entry(name, image, **kw):
    return {"name": name, "image": image, "info": kw.get("info", ""), "category": kw.get("category", "person")}


def problems_of(report):
    return {p["concept"]: p["problem"] for p in report.problems}


# ------------------------------------------------------------------------------------------ import: paths

def test_absolute_path_to_an_image_outside_the_folder_is_refused(library, tmp_path):
    secret = jpeg(tmp_path / "home" / "private" / "passport.jpg")  # readable, a real image, elsewhere
    db = write_db(tmp_path / "Downloads" / "shared-db", {
        "<Spy>": entry("Spy", str(secret)),
        "<Ok>": entry("Ok", "ok.jpg"),
    })
    jpeg(db.parent / "ok.jpg")
    report = import_repic_database(library, db)
    assert report.added == ["Ok"] and report.references == 1
    assert "outside the database's folder" in problems_of(report)["<Spy>"]
    assert [c.name for c in library.concepts.all()] == ["Ok"]  # no concept without its reference


@pytest.mark.parametrize("raw", ["../../home/private/passport.jpg", "./../../home/private/passport.jpg",
                                 "sub/../../../home/private/passport.jpg",
                                 "home/private/passport.jpg"])  # relative to an ancestor of the json
def test_paths_climbing_out_of_the_folder_are_refused(library, tmp_path, raw):
    jpeg(tmp_path / "home" / "private" / "passport.jpg")
    db = write_db(tmp_path / "Downloads" / "shared-db", {"<Spy>": entry("Spy", raw)})
    (db.parent / "sub").mkdir()
    report = import_repic_database(library, db)
    assert report.added == [] and report.references == 0
    assert library.concepts.all() == []
    assert "<Spy>" in problems_of(report)
    refs = library.data_dir / "references"
    assert not refs.exists() or not any(refs.iterdir())


@symlinks
def test_a_symlink_out_of_the_folder_is_refused_and_one_inside_is_fine(library, tmp_path):
    secret = jpeg(tmp_path / "home" / "private" / "passport.jpg")
    folder = tmp_path / "Downloads" / "shared-db"
    folder.mkdir(parents=True)
    os.symlink(secret, folder / "anya.jpg")
    (folder / "pics").symlink_to(secret.parent, target_is_directory=True)
    real = jpeg(folder / "real" / "bond.jpg")
    os.symlink(real, folder / "bond.jpg")
    db = write_db(folder, {"<Anya>": entry("Anya", "anya.jpg"), "<Pic>": entry("Pic", "pics/passport.jpg"),
                           "<Bond>": entry("Bond", "./bond.jpg")})
    report = import_repic_database(library, db)
    assert report.added == ["Bond"] and report.references == 1
    probs = problems_of(report)
    assert "outside the database's folder" in probs["<Anya>"]
    assert "outside the database's folder" in probs["<Pic>"]


def test_repic_checkout_paths_still_resolve_from_the_repository_root(library, tmp_path):
    """RePIC's own files say "./data/database_tot/..." relative to the repository, not to the json."""
    repo = tmp_path / "RePIC"
    jpeg(repo / "__assets__" / "multi" / "lecun.jpg")
    jpeg(tmp_path / "outside.jpg")
    db = write_db(repo / "data" / "database_tot" / "database_4_concepts" / "avengers" / "db", {
        "<B>": entry("B", "./__assets__/multi/lecun.jpg"),
        "<X>": entry("X", "./../outside.jpg"),  # relative to the repo root, but leaves it
    })
    report = import_repic_database(library, db)
    assert report.added == ["B"] and report.references == 1
    assert "outside" in problems_of(report)["<X>"]


def test_a_fifo_or_folder_named_as_image_is_refused_without_hanging(library, tmp_path):
    folder = tmp_path / "db"
    folder.mkdir()
    (folder / "dir.jpg").mkdir()
    entries = {"<D>": entry("D", "dir.jpg")}
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "pipe.jpg")
        entries["<P>"] = entry("P", "pipe.jpg")
    report = import_repic_database(library, write_db(folder, entries))
    assert report.added == [] and set(problems_of(report)) == set(entries)


# ------------------------------------------------------------------------------------------ import: types

@pytest.mark.parametrize("bad", [
    {"name": 42, "image": "a.jpg"},
    {"name": ["Anya"], "image": "a.jpg"},
    {"name": "Anya", "image": {"path": "a.jpg"}},
    {"name": "Anya", "image": 7},
    {"name": "Anya", "image": ["a.jpg", 3]},
    {"name": "Anya", "image": [["a.jpg"]]},
    {"name": "Anya", "image": "a.jpg", "info": ["x"]},
    {"name": "Anya", "image": "a.jpg", "info": {"x": 1}},
    {"name": "Anya", "image": "a.jpg", "category": {"c": 1}},
    {"name": "Anya", "image": "a.jpg", "category": 5},
    {"name": "Anya", "image": "a\x00.jpg"},
    {"name": "Anya", "image": "a.jpg", "info": 1e309},
    "just a string",
    None,
    [1, 2],
])
def test_entries_of_the_wrong_json_types_are_reported_not_raised(library, tmp_path, bad):
    folder = tmp_path / "db"
    jpeg(folder / "a.jpg")
    jpeg(folder / "b.jpg")
    db = write_db(folder, {"<bad>": bad, "<Bond>": entry("Bond", "b.jpg")})
    report = import_repic_database(library, db)
    assert report.added == ["Bond"] and report.references == 1  # the good entry still comes in
    assert "<bad>" in problems_of(report)
    assert [c.name for c in library.concepts.all()] == ["Bond"]


def test_deep_nesting_is_one_error_and_nothing_is_imported(library, tmp_path):
    p = tmp_path / "deep.json"
    p.write_text('{"concept_dict": {"<A>": {"name": "A", "image": "a.jpg", "x": ' + "[" * 100_000
                 + "]" * 100_000 + "}}}")
    with pytest.raises(LibraryError, match="nested too deeply"):
        import_repic_database(library, p)
    assert library.concepts.all() == []


def test_cli_prints_one_line_for_hostile_files(tmp_path, capsys):
    lib = ["--library", str(tmp_path / "lib.sqlite")]
    deep = tmp_path / "deep.json"
    deep.write_text('{"concept_dict": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert main([*lib, "concept", "import-repic", str(deep)]) == 1
    _, err = capsys.readouterr()
    assert err.startswith("repic: error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err

    folder = tmp_path / "db"
    jpeg(folder / "a.jpg")
    db = write_db(folder, {"<x>": {"name": 3, "image": {"a": 1}, "info": [1]}, "<A>": entry("A", "/etc/passwd")})
    assert main([*lib, "concept", "import-repic", str(db)]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("0 added") and "<x>" in out and "outside the database's folder" in out


# ------------------------------------------------------------------------------------------ export

@pytest.fixture
def two_marys(library, tmp_path):
    src = tmp_path / "src"
    library.concepts.add("Mary Ann", "person")
    library.concepts.add("Mary_Ann", "person")
    from repic_desktop.core.concepts import import_reference_file
    import_reference_file(library, "Mary Ann", jpeg(src / "1.jpg", color=(255, 0, 0)))
    import_reference_file(library, "Mary_Ann", jpeg(src / "2.jpg", color=(0, 0, 255)))
    return library


def test_names_that_look_alike_on_disk_get_distinct_stable_image_files(two_marys, tmp_path):
    out = tmp_path / "out" / "database.json"
    export_repic_database(two_marys, out, images_dir=tmp_path / "out" / "images")
    data = json.loads(out.read_text())
    a, b = data["concept_dict"]["<Mary Ann>"]["image"], data["concept_dict"]["<Mary_Ann>"]["image"]
    assert a != b
    with Image.open(out.parent / a) as im_a, Image.open(out.parent / b) as im_b:
        assert im_a.getpixel((0, 0))[0] > 200 and im_b.getpixel((0, 0))[2] > 200  # each its own photo
    assert data["path_to_concept"] == {a: "<Mary Ann>", b: "<Mary_Ann>"}
    again = tmp_path / "again" / "database.json"
    export_repic_database(two_marys, again, images_dir=tmp_path / "again" / "images")
    assert json.loads(again.read_text())["concept_dict"] == data["concept_dict"]  # same names every time


def test_export_never_overwrites_without_force(two_marys, tmp_path):
    out = tmp_path / "out" / "database.json"
    images = tmp_path / "out" / "images"
    out.parent.mkdir()
    out.write_text("my own notes")
    with pytest.raises(LibraryError, match="already exists?.*--force"):
        export_repic_database(two_marys, out, images_dir=images)
    assert out.read_text() == "my own notes"
    assert not images.exists() or not any(images.iterdir())
    export_repic_database(two_marys, out, images_dir=images, force=True)
    data = json.loads(out.read_text())
    first = out.parent / data["concept_dict"]["<Mary Ann>"]["image"]
    # the json is gone but an image of the same name is there: still refused, and the json is not written
    out.unlink()
    first.write_bytes(b"someone else's picture")
    with pytest.raises(LibraryError, match="already exists?.*--force"):
        export_repic_database(two_marys, out, images_dir=images)
    assert not out.exists() and first.read_bytes() == b"someone else's picture"
    assert not [p for p in out.parent.rglob("*") if ".~repic-" in p.name or p.name.endswith(".part")]


@symlinks
def test_export_never_writes_through_a_symlink(two_marys, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out" / "database.json"
    images = tmp_path / "out" / "images"
    export_repic_database(two_marys, out, images_dir=images)
    names = [out.parent / p for p in json.loads(out.read_text())["path_to_concept"]]
    for p in names:
        p.unlink()
        p.symlink_to(victim)
    for force in (False, True):
        with pytest.raises(LibraryError, match="symbolic link"):
            export_repic_database(two_marys, out, images_dir=images, force=force)
    assert victim.read_text() == "precious"
    link_json = tmp_path / "linked.json"
    link_json.symlink_to(victim)
    with pytest.raises(LibraryError, match="symbolic link"):
        export_repic_database(two_marys, link_json, force=True)
    assert victim.read_text() == "precious"


def test_cli_export_refuses_to_overwrite_in_one_line_and_force_replaces(two_marys, tmp_path, capsys):
    lib = ["--library", str(two_marys.path)]
    out = tmp_path / "out.json"
    out.write_text("{}")
    assert main([*lib, "concept", "export-repic", str(out)]) == 1
    _, err = capsys.readouterr()
    assert err.startswith("repic: error: ") and "--force" in err and len(err.strip().splitlines()) == 1
    assert out.read_text() == "{}"
    assert main([*lib, "concept", "export-repic", str(out), "--force"]) == 0
    assert "<Mary Ann>" in json.loads(out.read_text())["concept_dict"]

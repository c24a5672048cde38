"""Library storage: schema, migrations, photos, concepts, tags, captions, search, two processes."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from repic_desktop.core.concepts import ConceptError
from repic_desktop.core.library import (
    MIGRATIONS, SCHEMA_VERSION, Box, Library, LibraryError, NotFound, fts_query, parse_box,
)


def add_photo(lib, path, h="h", w=640, hgt=480):
    return lib.photos.add(path, size=10, mtime_ns=1, content_hash=h, format="JPEG", width=w, height=hgt)


# ------------------------------------------------------------------------------ schema + migrations

def test_new_library_has_current_schema_wal_and_foreign_keys(library):
    assert library.schema_version == SCHEMA_VERSION
    assert library.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert library.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    tables = {r[0] for r in library.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for t in ["photos", "concepts", "concept_refs", "photo_concepts", "regions", "captions", "jobs",
              "job_items", "adapters", "skipped_files", "captions_fts"]:
        assert t in tables


def test_migration_from_version_1_keeps_data_and_indexes_old_captions(tmp_path):
    path = tmp_path / "old.sqlite"
    # Build a version-1 library exactly as the first release did.
    db = sqlite3.connect(path, isolation_level=None)
    MIGRATIONS[0](db)
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO photos (id, path, path_bytes, folder, filename, size, mtime_ns, content_hash,"
               " status, added_at, updated_at) VALUES (1, '/a/x.jpg', X'2f612f782e6a7067', '/a', 'x.jpg', 1, 1,"
               " 'abc', 'ok', 0, 0)")
    db.execute("INSERT INTO captions (id, photo_id, text, created_at) VALUES (7, 1, 'Anya plays on the beach', 0)")
    db.execute("UPDATE photos SET current_caption_id = 7 WHERE id = 1")
    db.close()

    with Library(path) as lib:
        assert lib.schema_version == SCHEMA_VERSION
        assert lib.photos.get(1).path == "/a/x.jpg"
        assert lib.captions.current(1).text == "Anya plays on the beach"
        assert lib.captions.search("beach") == [1]  # rows from before the FTS table existed are indexed
        lib.photos.record_skip("/a/bad.jpg", "empty file")  # a table added by migration 2 works
        assert lib.photos.skipped() == [{"path": "/a/bad.jpg", "reason": "empty file"}]


def test_types_and_repic_database_io_import_without_the_library():
    # core/concepts.py and the stores import their row types and validation from core/types.py; importing
    # core/library.py here again would bring back the library <-> concepts import circle.
    code = ("import sys, repic_desktop.core.concepts, repic_desktop.core.types, repic_desktop.core.schema; "
            "print('repic_desktop.core.library' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_stores_share_the_library_connection_and_transaction(library):
    pid = add_photo(library, "/p/a.jpg")
    with pytest.raises(RuntimeError):
        with library.transaction():  # one operation spanning two stores rolls back as one
            library.concepts.add("Anya", "person")
            library.concepts.tag(pid, "Anya")
            library.captions.add(pid, "<Anya> at the beach")
            raise RuntimeError("crash")
    assert library.concepts.all() == [] and library.captions.current(pid) is None
    assert {s.conn for s in (library.photos, library.concepts, library.captions, library.retrieval,
                             library.adapters)} == {library.conn}


def test_library_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    Library(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(LibraryError, match="newer RePIC Desktop"):
        Library(path)


def test_garbage_file_is_not_a_library(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_text("this is not sqlite " * 100)
    with pytest.raises(LibraryError, match="not a usable RePIC library"):
        Library(path)


# ------------------------------------------------------------------------------ photos

def test_photo_paths_round_trip_including_non_utf8_names(library):
    raw = b"/photos/caf\xe9 \xf0\x9f\x90\xb6.jpg"  # latin-1 byte + emoji, as a file system can hold
    pid = add_photo(library, raw)
    p = library.photos.get(pid)
    assert p.path_bytes == raw
    assert p.fs_path.encode("utf-8", "surrogateescape") == raw
    assert "\ufffd" in p.path and p.filename.endswith(".jpg")  # display form is safe text
    assert library.photos.by_path(raw).id == pid
    assert library.photos.by_path(p.fs_path).id == pid


def test_file_states_is_limited_to_the_folder_and_not_its_namesakes(library):
    add_photo(library, "/p/a/1.jpg")
    add_photo(library, "/p/a/sub/2.jpg")
    add_photo(library, "/p/ab/3.jpg")  # shares the prefix "/p/a" but is another folder
    add_photo(library, "/p/a0/4.jpg")
    assert set(library.photos.file_states("/p/a")) == {b"/p/a/1.jpg", b"/p/a/sub/2.jpg"}
    assert len(library.photos.file_states()) == 4


def test_missing_photos_are_kept_and_hidden_from_default_lists(library):
    a, b = add_photo(library, "/p/a.jpg"), add_photo(library, "/p/b.jpg")
    library.photos.mark_missing([b])
    assert [p.id for p in library.photos.list()] == [a]
    assert {p.id for p in library.photos.list(include_missing=True)} == {a, b}
    assert library.counts()["missing"] == 1


# ------------------------------------------------------------------------------ concepts

def test_concept_crud_order_and_case_insensitive_unique_names(library):
    library.concepts.add("Anya", "person", "A young girl with pink hair.")
    library.concepts.add("Bond", "pet", "  A white dog\nwith a bow tie. ")
    assert [c.name for c in library.concepts.all()] == ["Anya", "Bond"]
    assert library.concepts.get("<bond>").info == "A white dog with a bow tie."  # tags and case both resolve
    with pytest.raises(LibraryError, match="already used"):
        library.concepts.add("anya", "person")
    library.concepts.rename("Bond", "Bondo")
    assert library.concepts.get("Bondo").kind == "pet"
    with pytest.raises(LibraryError, match="already used"):
        library.concepts.rename("Bondo", "ANYA")
    library.concepts.update("Anya", info="Loves peanuts.", kind="person")
    assert library.concepts.get("Anya").info == "Loves peanuts."
    library.concepts.move("Bondo", 0)
    assert [c.name for c in library.concepts.all()] == ["Bondo", "Anya"]
    library.concepts.remove("Bondo")
    with pytest.raises(NotFound):
        library.concepts.get("Bondo")


@pytest.mark.parametrize("bad,match", [
    ("", "empty"), ("   ", "empty"), ("An\nya", "single line"), ("<Anya>", "'<' or '>'"),
    ("Anya<|im_start|>", "control token"), ("x" * 65, "at most"), ("A\x00b", "control characters"),
])
def test_bad_names_are_refused_with_a_reason(library, bad, match):
    with pytest.raises(ConceptError, match=match):
        library.concepts.add(bad, "person")
    assert library.concepts.all() == []


def test_special_tokens_in_info_are_refused(library):
    with pytest.raises(ConceptError, match=r"<\|vision_start\|>"):
        library.concepts.add("Anya", "person", "likes <|vision_start|> tricks")
    with pytest.raises(ConceptError, match="kind must be one of"):
        library.concepts.add("Anya", "robot")


def test_merge_moves_references_tags_and_regions(library):
    p1, p2 = add_photo(library, "/p/1.jpg", "h1"), add_photo(library, "/p/2.jpg", "h2")
    library.concepts.add("Bruno", "pet")
    library.concepts.add("Bruno the dog", "pet")
    library.concepts.add_ref("Bruno", photo_id=p1)
    library.concepts.add_ref("Bruno the dog", photo_id=p2, box=Box(1, 2, 30, 40))
    library.concepts.tag(p1, "Bruno the dog", box=Box(0, 0, 10, 10))
    library.concepts.tag(p1, "Bruno")
    library.concepts.tag(p2, "Bruno the dog")
    merged = library.concepts.merge("Bruno the dog", "Bruno")
    assert merged.name == "Bruno"
    refs = library.concepts.refs("Bruno")
    assert [r.photo_id for r in refs] == [p1, p2] and refs[1].box == Box(1, 2, 30, 40)
    assert [c.name for c in library.concepts.of_photo(p1)] == ["Bruno"]
    assert [c.name for c in library.concepts.of_photo(p2)] == ["Bruno"]
    assert [r.concept_id for r in library.concepts.regions(p1)] == [merged.id]
    assert [c.name for c in library.concepts.all()] == ["Bruno"]
    with pytest.raises(LibraryError):
        library.concepts.merge("Bruno", "Bruno")


def test_primary_reference_goes_first(library):
    p1, p2 = add_photo(library, "/p/1.jpg", "h1"), add_photo(library, "/p/2.jpg", "h2")
    library.concepts.add("Anya", "person")
    library.concepts.add_ref("Anya", photo_id=p1)
    library.concepts.add_ref("Anya", photo_id=p2, primary=True)
    assert [r.photo_id for r in library.concepts.refs("Anya")] == [p2, p1]
    library.concepts.remove_ref(library.concepts.refs("Anya")[0].id)
    assert [r.photo_id for r in library.concepts.refs("Anya")] == [p1]


def test_delete_concept_cascades_to_tags_refs_regions_but_keeps_captions(library):
    pid = add_photo(library, "/p/1.jpg")
    library.concepts.add("Anya", "person")
    library.concepts.add_ref("Anya", photo_id=pid)
    library.concepts.tag(pid, "Anya", box=Box(0, 0, 5, 5))
    library.captions.add(pid, "<Anya> smiles.", tags=["Anya"])
    library.concepts.remove("Anya")
    assert library.concepts.of_photo(pid) == [] and library.concepts.regions(pid) == []
    assert library.conn.execute("SELECT count(*) FROM concept_refs").fetchone()[0] == 0
    assert library.captions.current(pid).text == "<Anya> smiles."


# ------------------------------------------------------------------------------ tags, boxes

def test_tags_with_boxes_are_validated_against_the_photo(library):
    pid = add_photo(library, "/p/1.jpg", w=100, hgt=50)
    library.concepts.add("Anya", "person")
    library.concepts.add("Bond", "pet")
    with pytest.raises(LibraryError, match="outside the 100x50 photo"):
        library.concepts.tag(pid, "Anya", box=Box(50, 0, 60, 10))
    with pytest.raises(LibraryError, match="positive width"):
        library.concepts.tag(pid, "Anya", box=Box(0, 0, 0, 10))
    assert library.concepts.of_photo(pid) == []  # a refused box leaves no half tag behind
    library.concepts.tag(pid, "Bond")
    library.concepts.tag(pid, "Anya", box=Box(10, 5, 20, 20))
    library.concepts.tag(pid, "Anya")  # tagging twice is harmless
    assert [c.name for c in library.concepts.of_photo(pid)] == ["Anya", "Bond"]  # library order
    assert [r.box for r in library.concepts.regions(pid)] == [Box(10, 5, 20, 20)]
    assert library.concepts.untag(pid, "Anya") is True
    assert library.concepts.untag(pid, "Anya") is False
    assert library.concepts.regions(pid) == []
    assert [p.id for p in library.photos.list(concept="Bond")] == [pid]


def test_parse_box():
    assert parse_box("1,2,3,4") == Box(1, 2, 3, 4)
    assert parse_box("1.4, 2 ,3,4.6") == Box(1, 2, 3, 5)
    for bad in ["1,2,3", "a,b,c,d", ""]:
        with pytest.raises(LibraryError, match="X,Y,W,H"):
            parse_box(bad)


# ------------------------------------------------------------------------------ captions + search

def test_captions_keep_full_history_and_search_uses_the_current_one(library):
    a, b = add_photo(library, "/p/a.jpg", "ha"), add_photo(library, "/p/b.jpg", "hb")
    c1 = library.captions.add(a, "<Anya> builds a sandcastle on the beach.", tags=["Anya"], model_id="m",
                              concept_set=["Anya"])
    c2 = library.captions.add(a, "<Anya> eats ice cream in the park.", source="user", parent_id=c1)
    library.captions.add(b, "A dog on the beach.")
    assert [c.id for c in library.captions.history(a)] == [c1, c2]
    cur = library.captions.current(a)
    assert cur.id == c2 and cur.parent_id == c1 and cur.source == "user"
    assert library.captions.history(a)[0].tags == ["Anya"]
    assert library.captions.search("beach") == [b]  # a's old caption no longer counts
    c = add_photo(library, "/p/c.jpg", "hc")
    library.captions.add(c, "Bond digs on the beach.")
    assert library.captions.search("beach") == [c, b]  # most recently captioned first
    assert library.captions.search("beach", limit=1) == [c]
    assert library.captions.search("ice cream") == [a]
    assert library.captions.search("ice*") == [a]
    assert library.photos.list(search="park") == [library.photos.get(a)]
    assert library.captions.search('AND "OR -beach') == []  # operators in user text are just words
    library.captions.set_status(c2, "accepted")
    assert library.counts()["accepted"] == 1
    assert [p.id for p in library.photos.list(uncaptioned=True)] == []
    with pytest.raises(ValueError):
        library.captions.set_status(c2, "bogus")


def test_fts_query_quotes_every_word():
    assert fts_query('dog AND "cat" ice*') == '"dog" "AND" """cat""" "ice"*'
    with pytest.raises(LibraryError):
        fts_query("   ")


# ------------------------------------------------------------------------------ two processes

WRITER = textwrap.dedent("""
    import sys
    from repic_desktop.core.library import Library
    lib = Library(sys.argv[1])
    tag = sys.argv[2]
    for i in range(150):
        pid = lib.photos.add(f"/{tag}/{i}.jpg", size=i, mtime_ns=i, content_hash=f"{tag}{i}", format="JPEG",
                             width=1, height=1)
        lib.captions.add(pid, f"caption {tag} {i}")
        lib.photos.list(limit=5)
    lib.close()
""")


def test_two_processes_share_one_library_without_locking_each_other_out(tmp_path):
    path = tmp_path / "shared.sqlite"  # not created yet: both processes race to create + migrate it
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag], stderr=subprocess.PIPE, text=True)
             for tag in ("gui", "cli")]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    with Library(path) as lib:
        assert lib.counts()["photos"] == 300
        assert lib.counts()["captioned"] == 300
        assert lib.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_two_threads_opening_a_new_library_at_once(tmp_path):
    """A fresh file is in rollback-journal mode until the first opener switches it to WAL; SQLite then
    refuses the second opener at once (no busy wait). Both must succeed anyway."""
    import threading

    for i in range(150):
        path = tmp_path / f"new{i}.sqlite"
        barrier = threading.Barrier(2)
        errors = []

        def open_it():
            barrier.wait()
            try:
                with Library(path) as lib:
                    lib.counts()
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []


def test_set_primary_reference_moves_it_first_and_keeps_the_others_in_order(library):
    library.concepts.add("Anya", "person", "A young girl.")
    library.concepts.add("Bond", "pet", "A white dog.")
    refs = [library.concepts.add_ref("Anya", file_path=f"/r/{i}.jpg") for i in range(4)]
    other = library.concepts.add_ref("Bond", file_path="/r/bond.jpg")
    library.concepts.set_primary_ref(refs[2].id)
    got = library.concepts.refs("Anya")
    assert [r.id for r in got] == [refs[2].id, refs[0].id, refs[1].id, refs[3].id]
    assert [r.position for r in got] == [0, 1, 2, 3]
    assert [r.id for r in library.concepts.refs("Bond")] == [other.id]  # other concepts untouched
    library.concepts.set_primary_ref(refs[2].id)  # already primary: no change
    assert [r.id for r in library.concepts.refs("Anya")] == [refs[2].id, refs[0].id, refs[1].id, refs[3].id]
    with pytest.raises(NotFound):
        library.concepts.set_primary_ref(99999)


def test_set_current_caption_and_update_provenance(library):
    a, b = add_photo(library, "/p/a.jpg", "ha"), add_photo(library, "/p/b.jpg", "hb")
    first = library.captions.add(a, "first", provenance={"x": 1})
    library.captions.add(a, "second")
    other = library.captions.add(b, "b's caption")
    library.captions.set_current(a, first)
    assert library.captions.current(a).text == "first" and len(library.captions.history(a)) == 2
    with pytest.raises(NotFound):
        library.captions.set_current(a, other)  # another photo's caption
    library.captions.set_current(a, None)
    assert library.captions.current(a) is None
    library.captions.update_provenance(first, {"x": 1, "export": {"fields": ["caption"]}})
    assert library.captions.history(a)[0].provenance == {"x": 1, "export": {"fields": ["caption"]}}


def test_adapter_registry_round_trip(library, tmp_path):
    a = library.adapters.register("family-v1", tmp_path / "a1", base_model="Qwen/Qwen2.5-VL-7B-Instruct",
                                  base_revision="abc", manifest={"concepts": ["Anya"], "metrics": {"f1": 0.5}})
    assert a.name == "family-v1" and a.manifest["concepts"] == ["Anya"] and a.path == str(tmp_path / "a1")
    assert library.adapters.get(a.id) == a and library.adapters.get("family-v1") == a
    with pytest.raises(LibraryError):
        library.adapters.register("family-v1", tmp_path / "a2", base_model="x")
    b = library.adapters.register("family-v1", tmp_path / "a2", base_model="x", replace=True)
    assert [x.path for x in library.adapters.all()] == [str(tmp_path / "a2")] == [b.path]
    library.adapters.update_manifest("family-v1", {"flagged": True})
    assert library.adapters.get("family-v1").manifest == {"flagged": True}
    assert library.adapters.remove("family-v1").name == "family-v1"
    assert library.adapters.all() == []
    with pytest.raises(NotFound):
        library.adapters.get("family-v1")


def test_confirmed_tags_are_the_ones_a_person_stands_behind(library, tmp_path):
    ids = [library.photos.add(tmp_path / f"p{i}.jpg", size=1, mtime_ns=1, content_hash=f"h{i}") for i in range(4)]
    a, b = library.concepts.add("Anya", "person"), library.concepts.add("Bond", "pet")
    library.concepts.tag(ids[0], "Anya")                        # by hand
    library.concepts.tag(ids[1], "Anya", source="import")       # from the photo's own metadata
    library.concepts.tag(ids[2], "Anya", source="suggestion")   # a suggestion the user confirmed
    library.concepts.tag(ids[2], "Bond", source="model")        # nobody confirmed this one
    library.concepts.tag(ids[3], "Bond")
    assert library.concepts.confirmed_tags() == {ids[0]: {a.id}, ids[1]: {a.id}, ids[2]: {a.id}, ids[3]: {b.id}}
    assert library.concepts.confirmed_tag_counts() == {a.id: 3, b.id: 1}

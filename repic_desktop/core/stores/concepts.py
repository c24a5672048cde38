"""lib.concepts: concepts (people, pets, things) in library order, their reference photos, and which
photos show them (tags, with regions where a box says where).

Library order is prompt order (RePIC's skip-retrieval puts references in it), so it is stored and users
may change it. Box coordinates are pixels of the photo as displayed (after EXIF orientation).
"""
from __future__ import annotations

from typing import Sequence

from ..types import (CONFIRMED_SOURCES, REGION_SOURCES, Box, Concept, ConceptRef, LibraryError, NotFound, Region,
                     box_or_none, check_box, now, validate_info, validate_kind, validate_name)
from .common import Store, chunks


class ConceptStore(Store):
    _SQL = ("SELECT c.id, c.name, c.kind, c.info, c.position, m.category, m.repic_key FROM concepts c"
            " LEFT JOIN concept_meta m ON m.concept_id = c.id")

    def all(self) -> list[Concept]:
        """All concepts in library order (the order RePIC's skip-retrieval puts references in)."""
        return [Concept(*r) for r in self.conn.execute(self._SQL + " ORDER BY c.position, c.id")]

    def get(self, name_or_id: str | int) -> Concept:
        if isinstance(name_or_id, int):
            row = self.conn.execute(self._SQL + " WHERE c.id = ?", (name_or_id,)).fetchone()
        else:
            row = self.conn.execute(self._SQL + " WHERE c.name = ? COLLATE NOCASE",
                                    (name_or_id.strip().removeprefix("<").removesuffix(">").strip(),)).fetchone()
        if row is None:
            raise NotFound(f"no person, pet or thing called {name_or_id!r} in this library")
        return Concept(*row)

    def _check_unique(self, name: str, except_id: int | None = None) -> None:
        row = self.conn.execute("SELECT id, name FROM concepts WHERE name = ? COLLATE NOCASE", (name,)).fetchone()
        if row and row[0] != except_id:
            raise LibraryError(f"the name <{name}> is already used by <{row[1]}>; names must be unique")

    def add(self, name: str, kind: str, info: str = "", *, category: str | None = None,
            repic_key: str | None = None) -> Concept:
        name, kind, info = validate_name(name), validate_kind(kind), validate_info(info)
        t = now()
        with self.transaction():
            self._check_unique(name)
            pos = self.conn.execute("SELECT coalesce(max(position), -1) + 1 FROM concepts").fetchone()[0]
            cid = self.conn.execute(
                "INSERT INTO concepts (name, kind, info, position, created_at, updated_at) VALUES (?,?,?,?,?,?)",
                (name, kind, info, pos, t, t)).lastrowid
            if category is not None or repic_key is not None:
                self.conn.execute("INSERT INTO concept_meta (concept_id, category, repic_key) VALUES (?,?,?)",
                                  (cid, category, repic_key))
        return self.get(cid)

    def rename(self, old: str, new: str) -> Concept:
        """Renaming changes future prompts; captions already written keep the name they were made with."""
        c = self.get(old)
        new = validate_name(new)
        with self.transaction():
            self._check_unique(new, except_id=c.id)
            self.conn.execute("UPDATE concepts SET name = ?, updated_at = ? WHERE id = ?", (new, now(), c.id))
        return self.get(c.id)

    def update(self, name: str, *, info: str | None = None, kind: str | None = None) -> Concept:
        c = self.get(name)
        with self.transaction():
            if info is not None:
                self.conn.execute("UPDATE concepts SET info = ?, updated_at = ? WHERE id = ?",
                                  (validate_info(info), now(), c.id))
            if kind is not None:
                self.conn.execute("UPDATE concepts SET kind = ?, updated_at = ? WHERE id = ?",
                                  (validate_kind(kind), now(), c.id))
        return self.get(c.id)

    def remove(self, name: str) -> Concept:
        """Deletes the concept, its references, tags and regions. Captions keep their text."""
        c = self.get(name)
        with self.transaction():
            self.conn.execute("DELETE FROM concepts WHERE id = ?", (c.id,))
        return c

    def merge(self, source: str, target: str) -> Concept:
        """Fold `source` into `target` (the same person entered twice): references, photo tags,
        regions and the retrieval records (suggestions, cached reference vectors, crop matches, named
        face clusters) move over, `source` disappears. Target's name, kind and info win."""
        s, t = self.get(source), self.get(target)
        if s.id == t.id:
            raise LibraryError("cannot merge a concept with itself")
        with self.transaction():
            base = self.conn.execute("SELECT coalesce(max(position), -1) + 1 FROM concept_refs WHERE concept_id = ?",
                                     (t.id,)).fetchone()[0]
            self.conn.execute("UPDATE concept_refs SET concept_id = ?, position = position + ? WHERE concept_id = ?",
                              (t.id, base, s.id))
            self.conn.execute("INSERT OR IGNORE INTO photo_concepts (photo_id, concept_id, source, created_at)"
                              " SELECT photo_id, ?, source, created_at FROM photo_concepts WHERE concept_id = ?",
                              (t.id, s.id))
            self.conn.execute("UPDATE regions SET concept_id = ? WHERE concept_id = ?", (t.id, s.id))
            self.lib.retrieval.merge_concepts(s.id, t.id)
            self.conn.execute("DELETE FROM concepts WHERE id = ?", (s.id,))
            self.conn.execute("UPDATE concepts SET updated_at = ? WHERE id = ?", (now(), t.id))
        return self.get(t.id)

    def move(self, name: str, position: int) -> None:
        """Reorder: library order is prompt order, so users may want to control it."""
        c = self.get(name)
        ids = [x.id for x in self.all() if x.id != c.id]
        ids.insert(max(0, min(position, len(ids))), c.id)
        with self.transaction():
            self.conn.executemany("UPDATE concepts SET position = ? WHERE id = ?", list(enumerate(ids)))

    # ---------------------------------------------------------------- concept references
    def photo_counts(self) -> dict[int, int]:
        """concept id -> number of photos tagged with it (any source)."""
        return dict(self.conn.execute("SELECT concept_id, count(*) FROM photo_concepts GROUP BY concept_id"))

    def photo_count(self, concept_id: int) -> int:
        return self.conn.execute("SELECT count(*) FROM photo_concepts WHERE concept_id = ?",
                                 (concept_id,)).fetchone()[0]

    def ids_with_refs(self) -> set[int]:
        return {r[0] for r in self.conn.execute("SELECT DISTINCT concept_id FROM concept_refs")}

    def refs(self, name_or_id: str | int) -> list[ConceptRef]:
        c = self.get(name_or_id)
        return [ConceptRef(r[0], r[1], r[2], r[3], box_or_none(*r[4:8]), r[8]) for r in self.conn.execute(
            "SELECT id, concept_id, photo_id, file_path, box_x, box_y, box_w, box_h, position FROM concept_refs"
            " WHERE concept_id = ? ORDER BY position, id", (c.id,))]

    def add_ref(self, name: str, *, photo_id: int | None = None, file_path: str | None = None,
                box: Box | None = None, primary: bool = False) -> ConceptRef:
        if (photo_id is None) == (file_path is None):
            raise ValueError("a reference is either a library photo or a file")
        c = self.get(name)
        if photo_id is not None:
            p = self.lib.photos.get(photo_id)
            if box is not None:
                check_box(box, p.width, p.height)
        with self.transaction():
            if primary:
                self.conn.execute("UPDATE concept_refs SET position = position + 1 WHERE concept_id = ?", (c.id,))
                pos = 0
            else:
                pos = self.conn.execute("SELECT coalesce(max(position), -1) + 1 FROM concept_refs"
                                        " WHERE concept_id = ?", (c.id,)).fetchone()[0]
            b = box.as_list() if box else [None] * 4
            rid = self.conn.execute(
                "INSERT INTO concept_refs (concept_id, photo_id, file_path, box_x, box_y, box_w, box_h, position,"
                " created_at) VALUES (?,?,?,?,?,?,?,?,?)", (c.id, photo_id, file_path, *b, pos, now())).lastrowid
        return next(r for r in self.refs(c.id) if r.id == rid)

    def remove_ref(self, ref_id: int) -> None:
        with self.transaction():
            if self.conn.execute("DELETE FROM concept_refs WHERE id = ?", (ref_id,)).rowcount == 0:
                raise NotFound(f"no reference photo with id {ref_id}")

    def set_primary_ref(self, ref_id: int) -> None:
        """Make `ref_id` its concept's primary reference (position 0, the one prompts use); the others
        keep their relative order after it."""
        with self.transaction():
            row = self.conn.execute("SELECT concept_id FROM concept_refs WHERE id = ?", (ref_id,)).fetchone()
            if row is None:
                raise NotFound(f"no reference photo with id {ref_id}")
            others = [r[0] for r in self.conn.execute(
                "SELECT id FROM concept_refs WHERE concept_id = ? AND id != ? ORDER BY position, id",
                (row[0], ref_id))]
            self.conn.executemany("UPDATE concept_refs SET position = ? WHERE id = ?",
                                  list(enumerate([ref_id, *others])))

    # ---------------------------------------------------------------- photo tags and regions
    def tag(self, photo_id: int, concept: str, *, box: Box | None = None, source: str = "manual",
            replace: bool = True) -> list[Box]:
        """Say `concept` is in the photo; with `box`, that is where: the box replaces the concept's earlier
        boxes on this photo (tagging again moves the box; one region per person from tagging). Returns the
        boxes replaced. `replace=False` adds the box beside them: another tool's metadata may mark one
        person twice (a collage), and undo puts several back."""
        p, c = self.lib.photos.get(photo_id), self.get(concept)
        if source not in REGION_SOURCES:
            raise ValueError(f"source must be one of {REGION_SOURCES}")
        if box is not None:
            check_box(box, p.width, p.height)
        replaced: list[Box] = []
        with self.transaction():
            self.conn.execute("INSERT OR IGNORE INTO photo_concepts (photo_id, concept_id, source, created_at)"
                              " VALUES (?,?,?,?)", (p.id, c.id, source, now()))
            if box is not None:
                if replace:
                    replaced = [Box(*r) for r in self.conn.execute(
                        "SELECT x, y, w, h FROM regions WHERE photo_id = ? AND concept_id = ? ORDER BY id",
                        (p.id, c.id))]
                    self.conn.execute("DELETE FROM regions WHERE photo_id = ? AND concept_id = ?", (p.id, c.id))
                self.conn.execute("INSERT INTO regions (photo_id, concept_id, x, y, w, h, source, created_at)"
                                  " VALUES (?,?,?,?,?,?,?,?)", (p.id, c.id, *box.as_list(), source, now()))
        return replaced

    def untag(self, photo_id: int, concept: str) -> bool:
        p, c = self.lib.photos.get(photo_id), self.get(concept)
        with self.transaction():
            n = self.conn.execute("DELETE FROM photo_concepts WHERE photo_id = ? AND concept_id = ?",
                                  (p.id, c.id)).rowcount
            self.conn.execute("DELETE FROM regions WHERE photo_id = ? AND concept_id = ?", (p.id, c.id))
        return n > 0

    def confirmed_tags(self) -> dict[int, set[int]]:
        """photo id -> ids of the concepts a person confirmed in it (see CONFIRMED_SOURCES)."""
        out: dict[int, set[int]] = {}
        marks = ",".join("?" * len(CONFIRMED_SOURCES))
        for pid, cid in self.conn.execute(
                f"SELECT photo_id, concept_id FROM photo_concepts WHERE source IN ({marks})", CONFIRMED_SOURCES):
            out.setdefault(pid, set()).add(cid)
        return out

    def confirmed_tag_counts(self) -> dict[int, int]:
        """concept id -> number of photos with a confirmed tag of it."""
        marks = ",".join("?" * len(CONFIRMED_SOURCES))
        return dict(self.conn.execute(
            f"SELECT concept_id, count(*) FROM photo_concepts WHERE source IN ({marks}) GROUP BY concept_id",
            CONFIRMED_SOURCES))

    def of_photo(self, photo_id: int) -> list[Concept]:
        """The photo's concepts in library order (= RePIC prompt order)."""
        return [Concept(*r) for r in self.conn.execute(
            self._SQL + " JOIN photo_concepts pc ON pc.concept_id = c.id WHERE pc.photo_id = ?"
            " ORDER BY c.position, c.id", (photo_id,))]

    def regions(self, photo_id: int) -> list[Region]:
        return [Region(r[0], r[1], r[2], Box(*r[3:7]), r[7]) for r in self.conn.execute(
            "SELECT id, photo_id, concept_id, x, y, w, h, source FROM regions WHERE photo_id = ? ORDER BY id",
            (photo_id,))]

    def all_refs(self) -> list[tuple[ConceptRef, str | None]]:
        """Every reference with its library photo's content hash (None for copied files), in library order."""
        return [(ConceptRef(r[0], r[1], r[2], r[3], box_or_none(*r[4:8]), r[8]), r[9]) for r in self.conn.execute(
            "SELECT r.id, r.concept_id, r.photo_id, r.file_path, r.box_x, r.box_y, r.box_w, r.box_h, r.position,"
            " p.content_hash FROM concept_refs r JOIN concepts c ON c.id = r.concept_id"
            " LEFT JOIN photos p ON p.id = r.photo_id ORDER BY c.position, c.id, r.position, r.id")]

    def tagged_photo_count(self, photo_ids: Sequence[int]) -> int:
        """How many of these photos have at least one concept."""
        n = 0
        for chunk in chunks(photo_ids):
            q = ",".join("?" * len(chunk))
            n += self.conn.execute(f"SELECT count(DISTINCT photo_id) FROM photo_concepts WHERE photo_id IN ({q})",
                                   tuple(chunk)).fetchone()[0]
        return n

"""Concepts (people, pets, things) beyond the library rows: reference photos from files, kind <-> RePIC
category, RePIC database.json import/export. Name and info validation is in core/types.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .library import Library
    from .types import Box

# Validation lives in core/types.py (shared with the library's stores); re-exported for its importers.
from .types import (CONTROL_TOKEN_RE, KINDS, MAX_INFO_LENGTH, MAX_NAME_LENGTH, TAG_RE,  # noqa: F401
                    ConceptError, LibraryError, check_box, control_token_problem, validate_info, validate_kind,
                    validate_name)


# RePIC's database `category` is a detector class ("person", "dog", "cat", "toy", ...). Map it to our kind.
_PERSON_CATEGORIES = {"person", "human", "man", "woman", "boy", "girl", "child", "kid", "baby", "people"}
_PET_CATEGORIES = {"pet", "dog", "cat", "puppy", "kitten", "animal", "bird", "rabbit", "hamster", "horse",
                   "parrot", "fish", "turtle", "guinea pig"}


def kind_from_category(category: str | None) -> str:
    c = (category or "").strip().lower()
    if c in _PERSON_CATEGORIES:
        return "person"
    if c in _PET_CATEGORIES:
        return "pet"
    return "other"


def category_for_kind(kind: str) -> str:
    return {"person": "person", "pet": "animal"}.get(kind, "object")


# ------------------------------------------------------------------------------------------------
# reference photos from outside the library
# ------------------------------------------------------------------------------------------------

def _safe_stem(stem: str) -> str:
    """The original file name, as far as it is a harmless file name on every platform."""
    clean = re.sub(r"[^\w .()-]+", "_", stem).strip(" .") or "photo"
    return clean[:60]


def reference_label(path: str | os.PathLike) -> str:
    """What to call a reference file: its original name for a copy made by import_reference_file (the
    hash in front dropped), "reference photo" for older copies named by the hash alone."""
    name = os.path.basename(os.fspath(path))
    m = re.fullmatch(r"[0-9a-f]{24}-(.+)", name)
    if m:
        return m.group(1)
    if re.fullmatch(r"[0-9a-f]{24}(\.\w+)?", name):
        return "reference photo"
    return name


def import_reference_file(library: "Library", concept: str, source: str | os.PathLike, *,
                          box: "Box | None" = None, primary: bool = False):
    """Copy an external image into the library's own folder and add it as a reference.

    Copied, not linked, so a reference survives the user tidying their downloads folder; named by
    content hash so importing the same file twice stores it once.
    """
    from .images import UnusableImage, inspect_image

    src = Path(source)
    try:  # by stat, before any open: closing a descriptor of ours on the library drops its SQLite locks
        st = os.stat(src)
    except OSError:
        pass  # read_bytes below reports it
    else:
        if (st.st_dev, st.st_ino) in library.own_file_keys():
            raise LibraryError(f"{src} is the library's own database file, not an image")
    try:
        data = src.read_bytes()
    except IsADirectoryError:
        raise LibraryError(f"{src} is a folder, not an image") from None
    except OSError as exc:
        raise LibraryError(f"cannot read {src}: {exc.strerror or exc}") from None
    try:
        info = inspect_image(src, data=data)
    except UnusableImage as exc:
        raise LibraryError(f"{src} cannot be used as a reference photo: {exc}") from None
    if box is not None:
        check_box(box, info.width, info.height)
    digest = hashlib.sha256(data).hexdigest()
    dest_dir = library.data_dir / "references"
    dest_dir.mkdir(parents=True, exist_ok=True)
    suffix = src.suffix.lower() if src.suffix else ".img"
    # "<hash>-<original name>": the hash keeps one copy per content (the same file imported twice, or
    # under another name, is stored once), the name is what the People page shows (reference_label).
    same = sorted(dest_dir.glob(f"{digest[:24]}*{suffix}"))
    same = [q for q in same if not q.name.endswith(".part")]
    dest = same[0] if same else dest_dir / f"{digest[:24]}-{_safe_stem(src.stem)}{suffix}"
    if not dest.exists():
        tmp = dest.with_name(dest.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    return library.concepts.add_ref(concept, file_path=str(dest), box=box, primary=primary)


def reference_path(library: "Library", ref) -> str:
    """The file a reference's pixels come from."""
    if ref.file_path:
        return ref.file_path
    return library.photos.get(ref.photo_id).fs_path


# ------------------------------------------------------------------------------------------------
# RePIC / RAP database.json
# ------------------------------------------------------------------------------------------------
# A database.json is something people download, so it is not trusted: its image paths may only name
# regular files inside the json's own folder, or inside the RePIC checkout that holds it (RePIC writes
# "./data/database_tot/..." relative to the repository root). Symlinks are resolved before that check.
# Import is all-or-nothing per entry: a concept comes in with every reference it names, or not at all
# (the reason is reported, the other entries go on), so fixing the file and importing again completes it.

MAX_DATABASE_BYTES = 32 * 1024 * 1024  # RePIC's largest database.json is ~30 KB
_SHOWN_KEY_CHARS = 80


@dataclass
class RepicImportReport:
    added: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    references: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"added": self.added, "existing": self.existing, "references": self.references,
                "problems": self.problems}


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN_KEY_CHARS else text[:_SHOWN_KEY_CHARS] + "…"


def _repic_checkout(json_dir: Path) -> Path | None:
    """The RePIC repository that holds `json_dir`: the nearest ancestor with RePIC's `data/database_tot`."""
    for base in json_dir.parents:
        if (base / "data" / "database_tot").is_dir():
            return base
    return None


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # another drive on Windows
        return False


def _find_image(raw: str, json_dir: Path) -> tuple[Path | None, str]:
    """(the real path of a regular file inside the allowed folders, "") or (None, why not).

    Tried in order: relative to the json's folder, relative to the RePIC checkout holding it, and the bare
    file name beside the json (RAP's "./database/Anya.jpg" with the images next to the json)."""
    if "\x00" in raw:
        return None, "the image path contains a NUL character"
    root = os.path.realpath(json_dir)
    checkout = _repic_checkout(Path(root))
    roots = [root] + ([str(checkout)] if checkout else [])
    p = Path(raw)
    cands = [p] if p.is_absolute() else [Path(root) / p] + ([checkout / p] if checkout else [])
    if p.name not in ("", ".", ".."):
        cands.append(Path(root) / p.name)
    refused = False
    for cand in cands:
        real = os.path.realpath(cand)
        if not any(_inside(real, r) for r in roots):
            refused = True
            continue
        try:
            st = os.stat(real)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            return Path(real), ""
        return None, f"reference image is not a regular file: {_shown(raw)}"
    if refused:
        where = "the database's folder" + (" and the RePIC checkout that holds it" if checkout else "")
        return None, f"reference image refused: {_shown(raw)} is outside {where}"
    return None, f"reference image not found: {_shown(raw)}"


def _load_database(json_path: Path) -> dict[str, Any]:
    try:
        with open(json_path, "rb") as f:
            raw = f.read(MAX_DATABASE_BYTES + 1)
    except IsADirectoryError:
        raise LibraryError(f"{json_path} is a folder, not a database.json") from None
    except OSError as exc:
        raise LibraryError(f"cannot read {json_path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_DATABASE_BYTES:
        raise LibraryError(f"{json_path} is larger than {MAX_DATABASE_BYTES // 2**20} MB: not a RePIC database.json")
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise LibraryError(f"{json_path} is nested too deeply: not a RePIC database.json") from None
    except ValueError as exc:  # also UnicodeDecodeError
        raise LibraryError(f"{json_path} is not valid JSON: {exc}") from None
    concept_dict = data.get("concept_dict") if isinstance(data, dict) else None
    if not isinstance(concept_dict, dict):
        raise LibraryError(f"{json_path} has no \"concept_dict\" object: not a RePIC database.json")
    return concept_dict


def _entry_problem(entry: Any) -> str | None:
    """Why an entry's JSON types are wrong (checked before anything of it is used), or None."""
    if not isinstance(entry, dict):
        return "entry is not an object"
    for key in ("name", "info", "category"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            return f"\"{key}\" must be text, not {type(entry[key]).__name__}"
    images = entry.get("image")
    if images is not None and not isinstance(images, str) and not (
            isinstance(images, list) and all(isinstance(i, str) for i in images)):
        return "\"image\" must be a path or a list of paths"
    return None


def import_repic_database(library: "Library", json_path: str | os.PathLike) -> RepicImportReport:
    """Import concepts from a RePIC/RAP `database.json` ({"concept_dict": {"<key>": {name, image,
    info, category}}, "path_to_concept": {...}}). File order is kept: it is RePIC's prompt order.

    A file that cannot be read, is not JSON, is nested too deeply or has no "concept_dict" object raises
    LibraryError and imports nothing. Each entry is then all-or-nothing: a concept with every reference
    image it names, or nothing and a problem saying why (wrong types, bad name, an image missing, outside
    the allowed folders or unusable). Concepts already present (same name) are left alone."""

    json_path = Path(json_path)
    concept_dict = _load_database(json_path)
    report = RepicImportReport()
    for key, entry in concept_dict.items():
        shown_key = _shown(key)
        problem = _entry_problem(entry)
        if problem:
            report.problems.append({"concept": shown_key, "problem": problem})
            continue
        try:
            name = validate_name(entry.get("name") or key.strip().removeprefix("<").removesuffix(">"))
            info = validate_info(entry.get("info") or "")
        except ConceptError as exc:
            report.problems.append({"concept": shown_key, "problem": str(exc)})
            continue
        try:
            library.concepts.get(name)
            report.existing.append(name)
            continue
        except LibraryError:
            pass
        images = entry.get("image") or []
        found: list[Path] = []
        bad: list[str] = []
        for raw in [images] if isinstance(images, str) else images:
            path, why = _find_image(raw, json_path.parent)
            (found.append(path) if path else bad.append(why))
        if bad:
            report.problems.append({"concept": shown_key, "problem": "; ".join(bad)})
            continue
        category = entry.get("category")
        try:
            with library.transaction():  # the concept and its references, or neither
                library.concepts.add(name, kind_from_category(category), info, category=category,
                                       repic_key=key)
                for path in found:
                    import_reference_file(library, name, path)
        except (LibraryError, ConceptError) as exc:
            report.problems.append({"concept": shown_key, "problem": str(exc)})
            continue
        report.added.append(name)
        report.references += len(found)
    return report


def _image_stems(concepts) -> dict[int, str]:
    """A file-name stem per concept, unique and the same at every export: the name with anything but
    letters, digits, `.` `-` `_` made `_`; when that loses something ("Mary Ann" and "Mary_Ann") or two
    stems differ only by case (a case-insensitive disk), a short hash of the exact name is added."""
    def tagged(name: str, stem: str) -> str:
        return f"{stem}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"

    stems: dict[int, str] = {}
    for c in concepts:
        stem = re.sub(r"[^\w.-]+", "_", c.name).lstrip(".-")
        stems[c.id] = stem if stem == c.name else tagged(c.name, stem or "concept")
    folded: dict[str, list[int]] = {}
    for cid, stem in stems.items():
        folded.setdefault(stem.casefold(), []).append(cid)
    names = {c.id: c.name for c in concepts}
    for ids in folded.values():
        if len(ids) > 1:
            for cid in ids:
                if stems[cid] == names[cid]:
                    stems[cid] = tagged(names[cid], stems[cid])
    return stems


def _check_target(path: Path, force: bool) -> str | None:
    """Why `path` cannot be written now (a symlink never, an existing file only with --force), or None."""
    if os.path.islink(path):
        return f"{path} is a symbolic link; refusing to write through it"
    if os.path.lexists(path):
        if not path.is_file():
            return f"{path} already exists and is not a file"
        if not force:
            return "exists"
    return None


def _write_atomic(path: Path, write) -> None:
    """Write via a fresh temp file beside `path` (created exclusively, never following a link), then
    rename it over `path`: a reader sees the old file or the whole new one, and a link planted under the
    temp name cannot redirect the write."""
    from .temp_files import temp_path_for

    tmp = temp_path_for(str(path))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_BINARY", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if os.path.islink(path):  # planted since the check
            raise OSError(f"{path} became a symbolic link")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def export_repic_database(library: "Library", out_path: str | os.PathLike, *,
                          images_dir: str | os.PathLike | None = None, force: bool = False) -> dict[str, Any]:
    """Write the library's concepts as a RePIC/RAP database.json.

    Without `images_dir`, `image` holds the absolute path of each concept's primary reference.
    With it, every concept's references are copied there (cropped to their box, since RePIC feeds
    whole images) and the json refers to them relative to the json's folder, so the pair can be moved.

    Nothing is written when the json or any image file already exists, unless `force`; a symbolic link
    where a file would go is refused even then. Each file is written atomically, the json last.
    """
    out_path = Path(out_path)
    if images_dir is not None:
        images_dir = Path(images_dir)
    plan = _export_plan(library, images_dir)
    _refuse_existing([out_path] + [d for _, refs in plan for _, d in refs if isinstance(d, Path)], force)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        if images_dir is not None:
            images_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LibraryError(f"cannot create {exc.filename}: {exc.strerror or exc}") from None
    concept_dict: dict[str, Any] = {}
    path_to_concept: dict[str, str] = {}
    for c, refs in plan:
        key = c.repic_key or c.tag
        paths = [dest if not isinstance(dest, Path) else _export_reference(library, ref, dest, out_path.parent)
                 for ref, dest in refs]
        entry: dict[str, Any] = {"name": c.name, "image": paths[0] if len(paths) == 1 else paths,
                                 "info": c.info, "category": c.category or category_for_kind(c.kind)}
        concept_dict[key] = entry
        for p in paths:
            path_to_concept[p] = key
    data = {"concept_dict": concept_dict, "path_to_concept": path_to_concept}
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    try:
        _write_atomic(out_path, lambda f: f.write(text.encode("utf-8")))
    except OSError as exc:
        raise LibraryError(f"cannot write {out_path}: {exc.strerror or exc}") from None
    return {"path": str(out_path), "concepts": len(concept_dict), "images": len(path_to_concept)}


def _export_plan(library: "Library", images_dir: Path | None) -> list[tuple[Any, list[tuple[Any, Path | str]]]]:
    """(concept, [(reference, file to write, or the reference's absolute path)]) for every concept."""
    concepts = library.concepts.all()
    stems = _image_stems(concepts) if images_dir is not None else {}
    plan = []
    for c in concepts:
        refs: list[tuple[Any, Path | str]] = []
        for i, ref in enumerate(library.concepts.refs(c.id)):
            if images_dir is None:
                refs.append((ref, os.path.abspath(reference_path(library, ref))))
            else:
                refs.append((ref, images_dir / f"{stems[c.id]}_{i}.png"))
        plan.append((c, refs))
    return plan


def _refuse_existing(targets: list[Path], force: bool) -> None:
    """Nothing is written when any target exists (unless `force`) or is a symbolic link."""
    existing = []
    for t in targets:
        why = _check_target(t, force)
        if why == "exists":
            existing.append(t)
        elif why:
            raise LibraryError(why)
    if existing:
        what = f"{existing[0]} and {len(existing) - 1} more file(s) already exist" if len(existing) > 1 \
            else f"{existing[0]} already exists"
        raise LibraryError(f"{what}; use --force to replace")


def _export_reference(library: "Library", ref: Any, dest: Path, json_dir: Path) -> str:
    """Write one reference as a PNG (cropped to its box: RePIC feeds whole images); its path as the json
    refers to it, relative to the json's folder."""
    from .images import open_oriented

    img = open_oriented(reference_path(library, ref))
    if ref.box is not None:
        b = ref.box
        img = img.crop((b.x, b.y, b.x + b.w, b.y + b.h))
    try:
        _write_atomic(dest, lambda f: img.save(f, format="PNG"))
    except OSError as exc:
        raise LibraryError(f"cannot write {dest}: {exc.strerror or exc}") from None
    try:
        rel = os.path.relpath(dest, json_dir)
    except ValueError:  # another drive on Windows
        rel = str(dest)
    return rel if os.path.isabs(rel) else "./" + rel.replace(os.sep, "/")

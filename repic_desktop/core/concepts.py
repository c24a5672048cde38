"""Concepts (people, pets, things): validation, reference photos from files, RePIC database.json I/O.

A concept's name is what the model sees between angle brackets (`<Anya>`) and what the app finds in
captions, so it must be a single clean line without brackets. Names and info text also reach the chat
prompt, so chat special tokens (`<|im_start|>` and friends) are rejected here, at the door; the prompt
builder additionally encodes user text so it can never become a special token (defence in depth).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .library import Box, Library

MAX_NAME_LENGTH = 64
MAX_INFO_LENGTH = 500
KINDS = ("person", "pet", "other")

# Qwen2.5 / ChatML control tokens look like <|...|>; any such sequence is refused, known or not.
CONTROL_TOKEN_RE = re.compile(r"<\|[^|<>]*\|>")
# A concept's tag in a caption: <Name> on one line (what prompt parsing and metadata export look for).
TAG_RE = re.compile(r"<([^<>\n]{1,64})>")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Characters a name cannot hold, with why: each is a separator somewhere a name goes (digiKam's "People/Anya"
# and Lightroom's "People|Anya" hierarchies, `--concepts A,B` lists, the <Name> tag in captions).
_NAME_SEPARATORS = {"/": "digiKam's tag hierarchy separator", "|": "Lightroom's tag hierarchy separator",
                    "\\": "a path separator", ",": "the separator of name lists (--concepts A,B)"}
# Invisible or layout-changing characters (controls incl. TAB, format characters such as zero-width spaces
# and right-to-left overrides, line/paragraph separators, surrogates, private use): two names that look the
# same must be the same name, and a name printed to a terminal must not be able to move the cursor.
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_ZWJ = "\u200d"  # allowed only inside an emoji sequence (👨‍👩‍👧), where it is visible as one glyph


def _is_emoji_part(ch: str) -> bool:
    return unicodedata.category(ch) in ("So", "Sk") or ch == "\ufe0f" or 0x1F3FB <= ord(ch) <= 0x1F3FF


def _name_problem(name: str) -> str | None:
    if "<" in name or ">" in name:
        return f"a name cannot contain '<' or '>' (the app adds the brackets itself): {name!r}"
    for i, ch in enumerate(name):
        if ch in _NAME_SEPARATORS:
            return f"a name cannot contain {ch!r} ({_NAME_SEPARATORS[ch]}): {name!r}"
        if ch == _ZWJ and 0 < i < len(name) - 1 and _is_emoji_part(name[i - 1]) and _is_emoji_part(name[i + 1]):
            continue
        cat = unicodedata.category(ch)
        if ch in "\n\r" or cat in ("Zl", "Zp"):
            return "a name must be a single line"
        if cat in _INVISIBLE_CATEGORIES:
            what = "control characters" if cat == "Cc" else "invisible or text-direction characters"
            return f"a name cannot contain {what} (found U+{ord(ch):04X}): {ascii(name)}"
    return None


class ConceptError(ValueError):
    """Invalid concept input; the message is shown to the user as is."""


def control_token_problem(text: str, what: str) -> str | None:
    """The user-facing complaint when `text` holds a chat control token, else None (shared by concept
    validation here and the prompt builder, which raise their own error types)."""
    m = CONTROL_TOKEN_RE.search(text)
    return f"{what} contains the chat control token {m.group(0)!r}, which is not allowed" if m else None


def _check_special_tokens(text: str, what: str) -> None:
    problem = control_token_problem(text, what)
    if problem:
        raise ConceptError(problem)


def validate_name(name: str) -> str:
    """The name as stored: NFC-normalised, spaces of every kind folded to one ASCII space, trimmed; refused
    (ConceptError with the reason) when it holds a chat control token, a separator or an invisible character."""
    if not isinstance(name, str):
        raise ConceptError("a name must be text")
    _check_special_tokens(name, "the name")
    # NFC: "Zoë" typed on macOS (decomposed) and on Linux (composed) is one person.
    # Runs of spaces of any kind (no-break, ideographic …) become one space; control whitespace is refused below.
    name = re.sub(r"[^\S\t\n\r\x0b\x0c\x1c-\x1f\x85\u2028\u2029]+", " ",
                  unicodedata.normalize("NFC", name)).strip(" ")
    if not name.strip():
        raise ConceptError("a name cannot be empty")
    problem = _name_problem(name)
    if name == "tool_call":  # "<tool_call>" is one token of Qwen's vocabulary, not a name
        problem = f"{name!r} is reserved by the model's vocabulary"
    if problem:
        raise ConceptError(problem)
    if len(name) > MAX_NAME_LENGTH:
        raise ConceptError(f"a name can be at most {MAX_NAME_LENGTH} characters")
    return name


def validate_info(info: str | None) -> str:
    info = "" if info is None else info
    if not isinstance(info, str):
        raise ConceptError("info must be text")
    _check_special_tokens(info, "the info text")
    info = " ".join(info.split())  # one line: the prompt puts it on "k. Name: <x>, Info: ..."
    if _CONTROL_RE.search(info):
        raise ConceptError("the info text cannot contain control characters")
    if len(info) > MAX_INFO_LENGTH:
        raise ConceptError(f"the info text can be at most {MAX_INFO_LENGTH} characters")
    return info


def validate_kind(kind: str) -> str:
    k = (kind or "").strip().lower()
    if k not in KINDS:
        raise ConceptError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return k


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

def import_reference_file(library: "Library", concept: str, source: str | os.PathLike, *,
                          box: "Box | None" = None, primary: bool = False):
    """Copy an external image into the library's own folder and add it as a reference.

    Copied, not linked, so a reference survives the user tidying their downloads folder; named by
    content hash so importing the same file twice stores it once.
    """
    from .images import UnusableImage, inspect_image
    from .library import LibraryError, check_box

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
    dest = dest_dir / f"{digest[:24]}{suffix}"
    if not dest.exists():
        tmp = dest.with_name(dest.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    return library.add_concept_ref(concept, file_path=str(dest), box=box, primary=primary)


def reference_path(library: "Library", ref) -> str:
    """The file a reference's pixels come from."""
    if ref.file_path:
        return ref.file_path
    return library.photo(ref.photo_id).fs_path


# ------------------------------------------------------------------------------------------------
# RePIC / RAP database.json
# ------------------------------------------------------------------------------------------------

@dataclass
class RepicImportReport:
    added: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    references: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"added": self.added, "existing": self.existing, "references": self.references,
                "problems": self.problems}


def _find_image(raw: str, json_dir: Path) -> Path | None:
    """RePIC's files use paths relative to *its repo root* ("./data/database_tot/..."), not to the json.
    Try the json's folder and each of its parents, then the bare file name beside the json."""
    p = Path(raw)
    if p.is_absolute():
        return p if p.is_file() else None
    for base in [json_dir, *json_dir.parents]:
        cand = base / p
        if cand.is_file():
            return cand
    cand = json_dir / p.name
    return cand if cand.is_file() else None


def import_repic_database(library: "Library", json_path: str | os.PathLike) -> RepicImportReport:
    """Import concepts from a RePIC/RAP `database.json` ({"concept_dict": {"<key>": {name, image,
    info, category}}, "path_to_concept": {...}}). File order is kept: it is RePIC's prompt order.
    Concepts already present (same name) are left alone; a bad entry is reported and skipped."""
    from .library import LibraryError

    json_path = Path(json_path)
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LibraryError(f"cannot read {json_path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise LibraryError(f"{json_path} is not valid JSON: {exc}") from None
    concept_dict = data.get("concept_dict") if isinstance(data, dict) else None
    if not isinstance(concept_dict, dict):
        raise LibraryError(f"{json_path} has no \"concept_dict\" object: not a RePIC database.json")

    report = RepicImportReport()
    for key, entry in concept_dict.items():
        if not isinstance(entry, dict):
            report.problems.append({"concept": str(key), "problem": "entry is not an object"})
            continue
        raw_name = entry.get("name") or str(key).strip().removeprefix("<").removesuffix(">")
        try:
            name = validate_name(raw_name)
            info = validate_info(entry.get("info", ""))
        except ConceptError as exc:
            report.problems.append({"concept": str(key), "problem": str(exc)})
            continue
        try:
            library.concept(name)
            report.existing.append(name)
            continue
        except LibraryError:
            pass
        category = entry.get("category")
        library.add_concept(name, kind_from_category(category), info,
                            category=category if isinstance(category, str) else None, repic_key=str(key))
        report.added.append(name)
        images = entry.get("image", [])
        for raw in [images] if isinstance(images, str) else list(images or []):
            found = _find_image(str(raw), json_path.parent)
            if found is None:
                report.problems.append({"concept": name, "problem": f"reference image not found: {raw}"})
                continue
            try:
                import_reference_file(library, name, found)
                report.references += 1
            except LibraryError as exc:
                report.problems.append({"concept": name, "problem": str(exc)})
    return report


def export_repic_database(library: "Library", out_path: str | os.PathLike, *,
                          images_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Write the library's concepts as a RePIC/RAP database.json.

    Without `images_dir`, `image` holds the absolute path of each concept's primary reference.
    With it, every concept's references are copied there (cropped to their box, since RePIC feeds
    whole images) and the json refers to them relative to the json's folder, so the pair can be moved.
    """
    from .images import open_oriented

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if images_dir is not None:
        images_dir = Path(images_dir)
        images_dir.mkdir(parents=True, exist_ok=True)
    concept_dict: dict[str, Any] = {}
    path_to_concept: dict[str, str] = {}
    for c in library.concepts():
        key = c.repic_key or c.tag
        paths: list[str] = []
        for ref in library.concept_refs(c.id):
            src = reference_path(library, ref)
            if images_dir is None:
                paths.append(os.path.abspath(src))
                continue
            stem = re.sub(r"[^\w.-]+", "_", c.name) or f"concept{c.id}"
            dest = images_dir / f"{stem}_{ref.position}.png"
            img = open_oriented(src)
            if ref.box is not None:
                b = ref.box
                img = img.crop((b.x, b.y, b.x + b.w, b.y + b.h))
            img.save(dest)
            try:
                rel = os.path.relpath(dest, out_path.parent)
            except ValueError:  # another drive on Windows
                rel = str(dest)
            paths.append(rel if os.path.isabs(rel) else "./" + rel.replace(os.sep, "/"))
        entry: dict[str, Any] = {"name": c.name, "image": paths[0] if len(paths) == 1 else paths,
                                 "info": c.info, "category": c.category or category_for_kind(c.kind)}
        if not paths:
            entry["image"] = []
        concept_dict[key] = entry
        for p in paths:
            path_to_concept[p] = key
    data = {"concept_dict": concept_dict, "path_to_concept": path_to_concept}
    tmp = out_path.with_name(out_path.name + ".part")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out_path)
    return {"path": str(out_path), "concepts": len(concept_dict), "images": len(path_to_concept)}

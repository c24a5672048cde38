"""The library's plain data: row types handed to callers, its errors, and the validation of what users type
(concept names and info, boxes). Shared by core/library.py with its stores and by core/concepts.py (RePIC
database import/export), so neither imports the other for these.

Row types are frozen dataclasses: plain data, safe to pass between threads.

Concept names: a concept's name is what the model sees between angle brackets (`<Anya>`) and what the app
finds in captions, so it must be a single clean line without brackets. Names and info text also reach the
chat prompt, so chat special tokens (`<|im_start|>` and friends) are rejected here, at the door; the prompt
builder additionally encodes user text so it can never become a special token (defence in depth).
"""
from __future__ import annotations

import os
import re
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from .errors import RepicError

CONCEPT_KINDS = ("person", "pet", "other")
KINDS = CONCEPT_KINDS
CAPTION_STATUSES = ("draft", "accepted", "exported")
REGION_SOURCES = ("manual", "detected", "model", "import", "suggestion")
# Tags and regions a person stands behind: drawn or typed by hand, read from the photo's own metadata, or
# a suggestion the user confirmed. Training and the Personalize page learn from these only.
CONFIRMED_SOURCES = ("manual", "import", "suggestion")


class LibraryError(RepicError):
    """A user-facing problem with a library operation (message is shown as is)."""


class NotFound(LibraryError):
    pass


def fs_bytes(path: str | os.PathLike | bytes) -> bytes:
    return path if isinstance(path, bytes) else os.fsencode(os.fspath(path))


def display_path(path_bytes: bytes) -> str:
    return path_bytes.decode("utf-8", errors="replace")


def now() -> float:
    return time.time()


# --------------------------------------------------------------------------------------------------
# Row types handed to callers (plain data, safe to pass between threads).
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Photo:
    id: int
    path: str
    path_bytes: bytes
    folder: str
    filename: str
    size: int
    mtime_ns: int
    content_hash: str
    format: str | None
    width: int | None
    height: int | None
    orientation: int
    date_taken: str | None
    status: str
    current_caption_id: int | None

    @property
    def fs_path(self) -> str:
        """The exact path to open on this file system (non-UTF-8 names included)."""
        return os.fsdecode(self.path_bytes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "path": self.path, "folder": self.folder, "filename": self.filename,
            "size": self.size, "content_hash": self.content_hash, "format": self.format,
            "width": self.width, "height": self.height, "orientation": self.orientation,
            "date_taken": self.date_taken, "status": self.status,
        }


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


@dataclass(frozen=True)
class ConceptRef:
    id: int
    concept_id: int
    photo_id: int | None
    file_path: str | None
    box: Box | None
    position: int

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "photo_id": self.photo_id, "file_path": self.file_path,
                "box": self.box.as_list() if self.box else None, "position": self.position}


@dataclass(frozen=True)
class Concept:
    id: int
    name: str
    kind: str
    info: str
    position: int
    category: str | None = None
    repic_key: str | None = None

    @property
    def tag(self) -> str:
        return f"<{self.name}>"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "kind": self.kind, "info": self.info,
                "position": self.position, "category": self.category}


@dataclass(frozen=True)
class Caption:
    id: int
    photo_id: int
    text: str
    tags: list[str]
    concept_set: list[str]
    model_id: str | None
    model_revision: str | None
    adapter_id: str | None
    prompt_hash: str | None
    source: str
    status: str
    parent_id: int | None
    created_at: float
    provenance: dict[str, Any] = field(default_factory=dict)
    job_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Region:
    id: int
    photo_id: int
    concept_id: int
    box: Box
    source: str


@dataclass(frozen=True)
class Adapter:
    id: int
    name: str
    path: str
    base_model: str
    base_revision: str | None
    manifest: dict[str, Any]
    created_at: float

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def box_or_none(x, y, w, h) -> Box | None:
    return None if x is None else Box(x, y, w, h)


def box_iou(a: Box, b: Box) -> float:
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0


def check_box(box: Box, width: int | None, height: int | None) -> None:
    if box.w <= 0 or box.h <= 0 or box.x < 0 or box.y < 0:
        raise LibraryError(f"box {box.as_list()} must have x,y >= 0 and a positive width and height")
    if width and height and (box.x + box.w > width or box.y + box.h > height):
        raise LibraryError(f"box {box.as_list()} lies outside the {width}x{height} photo")


MAX_BOX_COORD = 1_000_000  # far beyond any photo's pixels (the import limit is ~180 MP)


def parse_box(text: str) -> Box:
    try:
        parts = [int(round(float(v))) for v in text.split(",")]
    except (ValueError, OverflowError):  # "x", nan; inf and 1e309 overflow int()
        parts = []
    if len(parts) != 4 or any(abs(v) > MAX_BOX_COORD for v in parts):
        raise LibraryError(f"a box is X,Y,W,H in pixels (e.g. 120,80,300,300), not {text!r}")
    return Box(*parts)



def fts_query(text: str) -> str:
    """User text -> FTS5 query: each word quoted (so `AND`, `-`, `*`, quotes in user input are literal),
    words ANDed; a trailing `*` on a word keeps prefix search available."""
    terms = []
    for word in text.split():
        prefix = word.endswith("*") and len(word) > 1
        word = word.rstrip("*").replace('"', '""')
        if word:
            terms.append(f'"{word}"' + ("*" if prefix else ""))
    if not terms:
        raise LibraryError("empty search")
    return " ".join(terms)


# --------------------------------------------------------------------------------------------------
# Concept names and info
# --------------------------------------------------------------------------------------------------

MAX_NAME_LENGTH = 64
MAX_INFO_LENGTH = 500

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


class ConceptError(RepicError, ValueError):
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


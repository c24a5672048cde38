"""RePIC's chat layout, byte for byte, and everything about reading the model's answer.

Source of every string: ../shared/reference/repic-method.md §1.3, §1.4 and §6 (RePIC at 122ffa6).
The layout (evaluation scripts, the quantitative setting):

    system: SYSTEM_PROMPTS["repic"]
    user:   [ref image 1] "1. Name: <Anya>, Info: ..." [ref image 2] "2. Name: <Bond>, Info: ..."
            [query image] "This is the query image. Give a personalized caption of this image."

Concepts come in library order (RePIC's skip-retrieval keeps database order, not the order the user
named them). Small string changes alter RePIC's captions (the authors' own history shows it), so the
strings are constants tested against a golden rendering and must not be "tidied".

User text (names, info, requests) can never become a chat control token: text containing `<|…|>` is
refused here, and `verify_rendered` re-counts the control tokens of the rendered prompt, so a bug that
let one through would fail loudly instead of silently shifting images or turns.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ..core.arg_types import whole_number
from ..core.concepts import CONTROL_TOKEN_RE, TAG_RE, control_token_problem
from .chat_template import QWEN25VL_CHAT_TEMPLATE, TOOL_TOKENS
from ..core.errors import RepicError

if TYPE_CHECKING:
    from PIL import Image

    from ..core.library import Library

# ---- strings, verbatim -----------------------------------------------------------------------------
SYSTEM_PROMPTS: dict[str, str] = {
    # caption_eval_*.py: the setting every reported number uses (default)
    "repic": ("You are a captioning assistant. Your task is to generate an accurate caption for the query "
              "image.\nBelow is additional information about the reference images."),
    # inference_example.ipynb cell 2: the qualitative figures
    "repic-no-duplication": ("You are a captioning assistant. Your task is to generate an accurate caption "
                             "for the query image while referencing the given reference images without "
                             "duplication.\nBelow is additional information about the reference images."),
}
DEFAULT_SYSTEM_PRESET = "repic"
QUERY_PREFIX = "This is the query image. "
DEFAULT_REQUEST = "Give a personalized caption of this image."
# The requests RePIC's scripts and notebook cycle through, by name; users add their own in settings.
REQUEST_PRESETS: dict[str, str] = {
    "personalized": DEFAULT_REQUEST,
    "caption": "Give a caption of the image.",
    "personalized-photo": "Can you provide a personalized caption of this photo?",
    "provide": "Provide a caption of the given image.",
    "personal": "Give a personal caption of the image.",
    "personalized-given": "Provide a personalized caption of the given image.",
    "detailed": "Give a detailed personalized caption of the image.",
    "rich": "Give a rich caption of the image.",
}
# Reference line styles: "eval" numbers the concepts (caption_eval_*.py), "notebook" does not.
REFERENCE_STYLES = {"eval": "{i}. Name: <{name}>, Info: {info}", "notebook": "Name: <{name}>, Info: {info}"}

# Pixel limits (RePIC: AutoProcessor(max_pixels=1024*28*28); min is the checkpoint's 4*28*28).
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 1024 * 28 * 28
# qwen_vl_utils.fetch_image's own defaults: RePIC's images pass through it first (round to 28 px).
FETCH_MIN_PIXELS = 4 * 28 * 28
FETCH_MAX_PIXELS = 16384 * 28 * 28
IMAGE_FACTOR = 28

class PromptError(RepicError, ValueError):
    """The prompt cannot be built; the message is for the user."""


def check_user_text(text: str, what: str) -> str:
    problem = control_token_problem(text, what)
    if problem:
        raise PromptError(problem)
    return text


# ---- prompt data -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageRef:
    """An image in the prompt: a file, optionally cropped to a box in displayed pixels."""
    path: str
    box: tuple[int, int, int, int] | None = None
    content_hash: str | None = None  # when known (library photos): identifies pixels for caching/hashes

    def key(self) -> str:
        return json.dumps([self.content_hash or self.path, list(self.box) if self.box else None])


@dataclass(frozen=True)
class PromptConcept:
    name: str
    info: str
    references: tuple[ImageRef, ...]

    @property
    def tag(self) -> str:
        return f"<{self.name}>"


@dataclass(frozen=True)
class CaptionPrompt:
    concepts: tuple[PromptConcept, ...]
    query: ImageRef
    request: str = DEFAULT_REQUEST
    system: str = SYSTEM_PROMPTS[DEFAULT_SYSTEM_PRESET]
    style: str = "eval"

    def __post_init__(self) -> None:
        check_user_text(self.request, "the caption request")
        check_user_text(self.system, "the system prompt")
        if self.style not in REFERENCE_STYLES:
            raise PromptError(f"unknown reference style {self.style!r}")
        for c in self.concepts:
            check_user_text(c.name, f"the name <{c.name}>")
            check_user_text(c.info, f"the info of <{c.name}>")
            if not c.references:
                raise PromptError(f"<{c.name}> has no reference photo: add one with "
                                  f"`repic concept add-ref \"{c.name}\" PHOTO`")

    def reference_lines(self) -> list[str]:
        fmt = REFERENCE_STYLES[self.style]
        return [fmt.format(i=i, name=c.name, info=c.info) for i, c in enumerate(self.concepts, start=1)]

    def messages(self) -> list[dict[str, Any]]:
        """Chat messages in RePIC's layout; image entries are placeholders ({"type": "image"}), the
        pixels travel separately in `images()` order."""
        content: list[dict[str, Any]] = []
        for concept, line in zip(self.concepts, self.reference_lines()):
            content.extend({"type": "image"} for _ in concept.references)
            content.append({"type": "text", "text": line})
        content.append({"type": "image"})
        content.append({"type": "text", "text": QUERY_PREFIX + self.request})
        return [{"role": "system", "content": self.system}, {"role": "user", "content": content}]

    def images(self) -> list[ImageRef]:
        return [r for c in self.concepts for r in c.references] + [self.query]

    def prefix_key(self) -> str:
        """Identifies everything before the query image: photos sharing it share the system prompt,
        the reference images and the reference lines (what the engine may compute once)."""
        data = [self.system, self.style, [[c.name, c.info, [r.key() for r in c.references]] for c in self.concepts]]
        return hashlib.sha256(json.dumps(data, ensure_ascii=False).encode()).hexdigest()

    def prompt_hash(self) -> str:
        """Provenance: the same hash means the same text and the same reference pixels."""
        data = [self.prefix_key(), self.request]
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:16]

    def expected_names(self) -> list[str]:
        return [c.name for c in self.concepts]


def render(prompt: CaptionPrompt) -> str:
    """The prompt string exactly as the processor's chat template renders it (one <|image_pad|> per
    image; the processor later expands each to the image's visual-token count)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # Same environment settings as transformers' chat-template renderer.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    text = env.from_string(QWEN25VL_CHAT_TEMPLATE).render(messages=prompt.messages(), add_generation_prompt=True)
    verify_rendered(text, len(prompt.images()))
    return text


def expected_special_tokens(n_images: int, image_tokens: int | None = None) -> Counter:
    """How many of each special token RePIC's layout holds: system, user and the open assistant turn, one
    vision block per image (each <|image_pad|> expanded to `image_tokens` in all once the images are known)."""
    return Counter({"<|im_start|>": 3, "<|im_end|>": 2, "<|vision_start|>": n_images, "<|vision_end|>": n_images,
                    "<|image_pad|>": n_images if image_tokens is None else image_tokens})


def special_token_problem(found: Counter, n_images: int, image_tokens: int | None = None) -> str | None:
    want = expected_special_tokens(n_images, image_tokens)
    extra = {t: found[t] - want[t] for t in found if found[t] != want[t]}
    missing = {t: want[t] - found[t] for t in want if found[t] < want[t]}
    if not extra and not missing:
        return None
    diff = ", ".join(f"{t} x{found[t]} (expected {want[t]})" for t in sorted(set(extra) | set(missing)))
    return (f"the rendered prompt's special tokens are not RePIC's layout for {n_images} images: {diff}; "
            "user text must not contain chat control tokens")


def verify_rendered(text: str, n_images: int) -> None:
    """Defence in depth: every special token of the rendered text is counted (not only the turns), so user
    text that forms one with the brackets the app adds (a name "|im_end|" → "<|im_end|>") fails loudly."""
    found = Counter(m.group(0) for m in CONTROL_TOKEN_RE.finditer(text))
    found.update({t: text.count(t) for t in TOOL_TOKENS if t in text})
    problem = special_token_problem(found, n_images)
    if problem:
        raise PromptError(problem)


# ---- building prompts from the library ------------------------------------------------------------

def concepts_for_photo(library: "Library", photo_id: int, names: Sequence[str] | None = None,
                       max_refs: int = 1) -> list[PromptConcept]:
    """The photo's concepts (or the named ones), in library order, each with up to `max_refs`
    reference photos (primary first)."""
    from ..core.concepts import reference_path

    if max_refs < 1:
        raise PromptError("at least one reference photo per concept is needed")
    if names:
        chosen = {c.id: c for c in map(library.concepts.get, names)}  # a name given twice counts once
        ordered = sorted(chosen.values(), key=lambda c: (c.position, c.id))
    else:
        ordered = library.concepts.of_photo(photo_id)
    out = []
    for c in ordered:
        refs = []
        for r in library.concepts.refs(c.id)[:max_refs]:
            h = library.photos.get(r.photo_id).content_hash if r.photo_id else None
            refs.append(ImageRef(reference_path(library, r), tuple(r.box.as_list()) if r.box else None, h))
        out.append(PromptConcept(c.name, c.info, tuple(refs)))
    return out


def build_prompt(library: "Library", photo_id: int, *, names: Sequence[str] | None = None, max_refs: int = 1,
                 request: str = DEFAULT_REQUEST, system_preset: str = DEFAULT_SYSTEM_PRESET,
                 style: str = "eval") -> CaptionPrompt:
    if system_preset not in SYSTEM_PROMPTS:
        raise PromptError(f"unknown system prompt preset {system_preset!r} "
                          f"(choose from {', '.join(SYSTEM_PROMPTS)})")
    photo = library.photos.get(photo_id)
    query = ImageRef(photo.fs_path, None, photo.content_hash)
    return CaptionPrompt(tuple(concepts_for_photo(library, photo_id, names, max_refs)), query, request,
                         SYSTEM_PROMPTS[system_preset], style)


def request_presets(user_presets: Any = None) -> dict[str, str]:
    """Built-in presets, then the user's own (Settings' "request_presets"; one may replace a built-in).
    The one merge: the CLI, the caption dialog and job planning all list and resolve presets with it."""
    user = user_presets if isinstance(user_presets, dict) else {}
    return {**REQUEST_PRESETS, **{k: v for k, v in user.items() if isinstance(k, str) and isinstance(v, str)}}


def resolve_request(request: str | None = None, preset: str | None = None,
                    user_presets: dict[str, str] | None = None) -> str:
    if request is not None and preset is not None:
        raise PromptError("give either a request text or a request preset, not both")
    if request is not None:
        text = " ".join(request.split())
        if not text:
            raise PromptError("the caption request cannot be empty")
        return check_user_text(text, "the caption request")
    if preset is None:
        return DEFAULT_REQUEST
    presets = request_presets(user_presets)
    if preset not in presets:
        raise PromptError(f"unknown request preset {preset!r} (choose from {', '.join(presets)})")
    return check_user_text(presets[preset], f"request preset {preset!r}")


# ---- images as RePIC feeds them -------------------------------------------------------------------

def smart_resize(height: int, width: int, factor: int = IMAGE_FACTOR, min_pixels: int = MIN_PIXELS,
                 max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Qwen2-VL's resize rule (same arithmetic as transformers' and qwen_vl_utils' smart_resize)."""
    if max(height, width) / min(height, width) > 200:
        raise PromptError(f"the image's aspect ratio {max(height, width) / min(height, width):.0f}:1 is too "
                          "extreme for the model (limit 200:1)")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def fetch_image(ref: ImageRef, max_pixels: int | None = None) -> "Image.Image":
    """Load an image the way RePIC's pipeline receives it: EXIF-oriented RGB, cropped to the box, then
    rounded to multiples of 28 px by qwen_vl_utils.fetch_image (PIL bicubic) *before* the processor's
    own resize to the pixel limits. Reproducing that first resize keeps the pixels identical to RePIC's.

    A very large photo (over images.STREAM_DECODE_PIXELS, e.g. a 248 MP panorama) is decoded at
    reduced size instead of in full (~1 GB, 3.4 GB at peak when captioned), keeping at least
    `max_pixels` in the box (the processor's limit, when the caller knows it: the processor shrinks the
    image to that anyway), else at least the FETCH_MAX_PIXELS this resize keeps. Smaller photos decode
    in full, as in RePIC."""
    from PIL import Image

    from ..core.images import STREAM_DECODE_PIXELS, inspect_image, open_oriented

    keep, full = max_pixels or FETCH_MAX_PIXELS, None
    if ref.box is not None:
        info = inspect_image(ref.path)  # header only: the displayed size the box refers to
        full = (info.width, info.height)
        if info.width * info.height >= STREAM_DECODE_PIXELS:
            keep = math.ceil(keep * info.width * info.height / max(1, ref.box[2] * ref.box[3]))
    img = open_oriented(ref.path, keep_pixels=keep)
    if img.mode == "RGBA":  # qwen_vl_utils' to_rgb: composite on white
        bg = Image.new("RGB", img.size, (255, 255, 255))
        bg.paste(img, mask=img.split()[3])
        img = bg
    elif img.mode != "RGB":
        img = img.convert("RGB")
    if ref.box is not None:
        x, y, w, h = ref.box
        if full is not None and img.size != full:  # decoded reduced: the box in the reduced pixels
            sx, sy = img.width / full[0], img.height / full[1]
            x, y, w, h = round(x * sx), round(y * sy), max(1, round(w * sx)), max(1, round(h * sy))
        img = img.crop((x, y, x + w, y + h))
    h, w = smart_resize(img.height, img.width, IMAGE_FACTOR, FETCH_MIN_PIXELS, FETCH_MAX_PIXELS)
    return img.resize((w, h), Image.Resampling.BICUBIC)


def visual_tokens(height: int, width: int, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS) -> int:
    """How many visual tokens an image of this size becomes (one per 28x28 block after resizing)."""
    h, w = smart_resize(height, width, IMAGE_FACTOR, min_pixels, max_pixels)
    return (h // IMAGE_FACTOR) * (w // IMAGE_FACTOR)


# ---- reading the answer ---------------------------------------------------------------------------

@dataclass
class TagReport:
    found: list[str] = field(default_factory=list)    # known names tagged in the caption, first-seen order
    missing: list[str] = field(default_factory=list)  # expected (prompted) names the caption never tags
    unknown: list[str] = field(default_factory=list)  # <tags> that match no known name

    def as_dict(self) -> dict[str, list[str]]:
        return {"found": self.found, "missing": self.missing, "unknown": self.unknown}


def parse_tags(caption: str, expected: Iterable[str], known: Iterable[str] = ()) -> TagReport:
    """Which `<Name>` tags a caption uses. Matching is case-insensitive and canonicalises to the
    library's spelling (the model copies tags but may change case at a sentence start)."""
    expected = list(expected)
    canon = {n.casefold(): n for n in [*known, *expected]}
    report = TagReport()
    for m in TAG_RE.finditer(caption):
        raw = m.group(1).strip()
        name = canon.get(raw.casefold())
        if name is None:
            if raw and raw not in report.unknown and not CONTROL_TOKEN_RE.fullmatch(f"<{raw}>"):
                report.unknown.append(raw)
        elif name not in report.found:
            report.found.append(name)
    report.missing = [n for n in expected if n not in report.found]
    return report


def max_pixels(value: str) -> int:
    """argparse type of a per-image pixel limit (`repic` and `repic-train`): from one 28x28 patch to RePIC's
    fetch ceiling (captioning.models.PIXELS_CEILING)."""
    return whole_number(28 * 28, FETCH_MAX_PIXELS)(value)


max_pixels.__name__ = "pixel limit"

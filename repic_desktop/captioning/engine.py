"""The caption engine: RePIC's greedy captioning of many photos, batched, cancellable and crash-safe.

What it does for each request (a `CaptionPrompt` in RePIC's layout):

1. `render(prompt)` gives the chat text byte for byte as RePIC's processor renders it (and verifies
   it: 3 turns, one vision block per image).
2. Every image goes through `prompt.fetch_image` (RePIC's first resize, qwen_vl_utils' rounding to 28 px)
   and then the processor's image processor with the engine's pixel limits (min 4*28*28, max 1024*28*28
   by default), one image at a time. The resulting `image_grid_thw` is checked against max_pixels (some
   transformers versions ignore limits); if the processor ignored them we resize to the limit ourselves.
3. Each `<|image_pad|>` is expanded to the image's visual-token count (as the processor does), the batch
   is tokenized with LEFT padding, and the number of image tokens in every row is checked against the grids.
4. `model.generate(..., do_sample=False, max_new_tokens=...)` with the checkpoint's generation_config
   (and any `generation_kwargs`) applying, exactly like RePIC's `generate(**inputs, use_cache=True,
   max_new_tokens=1024, do_sample=False)`. Only the new tokens are decoded, with
   `skip_special_tokens=True, clean_up_tokenization_spaces=False`.

Batch output == single output (greedy): rows are left-padded and the mrope positions come from the
attention mask. One subtlety: a repetition penalty (Qwen2.5-VL checkpoints ship 1.05) also penalises the
prompt's tokens, and in a padded row that includes the pad token (`<|endoftext|>`, also an EOS). A single
request never has padding, so for padded batches we give `generate` its own
`RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=<pads per row>)`, which replaces the
built-in one in place (same position in the processor list) and ignores exactly the pad columns.

Reference reuse (the speed feature). Photos of a run mostly share their concepts, so the reference images
are identical from photo to photo; RePIC re-encodes them for every caption.
 (a) Reference pixel tensors are prepared once (fetch + image processor) and cached, keyed by
     `ImageRef.key()` + the file's mtime/size (when no content hash is known) + the pixel limits.
 (b) Reference vision-encoder outputs are computed once and reused. Qwen2.5-VL's vision tower encodes each
     image independently (per-image `cu_seqlens`; window attention stays inside an image; sdpa/eager run
     attention per image chunk), so an image's features do not depend on its batch-mates. Per batch the
     engine runs `model.get_image_features` only on the images it has no features for (the queries and
     uncached references) and hands all features, in placeholder order, to `generate` through
     transformers' `mm_encoder_outputs` argument (5.2x: `Qwen2_5_VLModel.forward(mm_encoder_outputs=...)`,
     dropped by `generate` after prefill). On transformers without that argument it falls back to wrapping
     the instance's `Qwen2_5_VLModel.get_image_features` for the duration of the call (same splice).
     Once a reference has features its pixels are dropped (only the grid is kept).
 (c) NOT done: a KV cache of the shared prompt prefix. The prefill of the prefix (system prompt, reference
     tokens, reference lines) is still recomputed per photo. Making it exact needs per-row left padding
     *inside* the cache and prefill split into two passes, whose matmuls differ numerically from RePIC's
     one-pass prefill, so greedy output could drift; it is left out deliberately.
Transformers internals used: `generate(mm_encoder_outputs={"image": BaseModelOutputWithPooling(
pooler_output=(per-image features...))}, image_grid_thw=..., mm_token_type_ids=...)`, consumed by
`Qwen2_5_VLModel.forward` (5.24); features from `Qwen2_5_VLForConditionalGeneration.get_image_features`
(-> `Qwen2_5_VLModel.get_image_features`, which splits `visual(...).pooler_output` per image). Fallback:
an instance attribute replacing `Qwen2_5_VLModel.get_image_features` (the inner `model.model`), active only
during the engine's own generate calls, removed by `unload()`.

While a batch generates, a worker thread reads and preprocesses the next batch's images (`prefetch`).

Measured (bench/caption_bench.py, 2-core CPU, 15 M-param random Qwen2.5-VL, 20 photos, 2 concepts,
3 x <=144 visual tokens): engine with reuse off at batch 1 vs bare generate on pre-built inputs 1.06x;
engine as users run it (reuse on, batch 4) vs RePIC's own loop 1.70x faster at 32 new tokens and
2.11x at 128; identical captions.

Failures are per photo: an unusable query or reference image, a prompt error, or an out-of-memory at batch
size 1 gives that request a `CaptionResult` with `error` set, and the rest go on. On out-of-memory with a
bigger batch the batch is halved (and stays halved for the rest of the run) and retried.

Why one module of ~1000 lines: the batching loop (`_CaptionRun`), the batch step and the reference
cache with its feature splice share one invariant (each image's placeholder tokens, grid and features stay
in the same order from preparation to `generate`) and the engine's private state (cache, lock, hook plan);
splitting them would spread that invariant over modules that reach into each other's privates.
"""
from __future__ import annotations

import gc
import inspect
import math
import os
import threading
import time
from collections import Counter, OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Callable, Hashable, Iterable, Sequence

from .prompt import (
    FETCH_MAX_PIXELS,
    FETCH_MIN_PIXELS,
    IMAGE_FACTOR,
    MAX_PIXELS,
    MIN_PIXELS,
    CaptionPrompt,
    ImageRef,
    PromptError,
    TagReport,
    fetch_image,
    parse_tags,
    render,
    smart_resize,
    special_token_problem,
)

IMAGE_PAD = "<|image_pad|>"
OOM_ALONE_MESSAGE = "not enough GPU memory for this photo even alone: lower max pixels or use 4-bit"
OOM_ALONE_MESSAGE_CPU = "not enough memory for this photo even alone: lower max pixels"

ProgressFn = Callable[[int, int, "float | None", Any], None]


# ---- public data -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CaptionRequest:
    key: Hashable
    prompt: CaptionPrompt


@dataclass
class CaptionResult:
    key: Hashable
    caption: str | None
    error: str | None
    tags: TagReport | None
    seconds: float
    prompt_tokens: int
    new_tokens: int
    provenance: dict[str, Any] | None = None  # set by a backend whose results differ in origin (several servers)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class EngineStats:
    photos: int = 0                 # captions made
    errors: int = 0                 # requests that ended with an error
    seconds: float = 0.0            # wall time inside caption()
    prepare_seconds: float = 0.0    # images + text preparation
    vision_seconds: float = 0.0     # vision encoder run by the engine (reuse on)
    generate_seconds: float = 0.0   # model.generate (includes the vision encoder when reuse is off)
    batches: int = 0
    vision_cache_hits: int = 0      # reference images whose encoder output was reused
    vision_cache_misses: int = 0    # reference images that had to be encoded
    pixel_cache_hits: int = 0       # reference images not re-read / re-processed
    pixel_cache_misses: int = 0
    prompt_tokens: int = 0
    new_tokens: int = 0
    oom_backoffs: int = 0
    batch_size: int = 0             # current batch size (after any OOM back-off)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class EngineError(RuntimeError):
    """A problem with the engine's set-up (not with one photo)."""


# ---- internals ---------------------------------------------------------------------------------------

@dataclass(eq=False)
class _RefEntry:
    """A cached reference image: its grid always, its pixels until its features exist."""
    grid: tuple[int, int, int]
    pixels: Any = None           # torch.Tensor (patches, C*T*P*P) on CPU
    features: Any = None         # torch.Tensor (tokens, hidden) on the model's device

    def nbytes(self) -> int:
        n = 0
        for t in (self.pixels, self.features):
            if t is not None:
                n += t.numel() * t.element_size()
        return n


@dataclass(eq=False)
class _Image:
    grid: tuple[int, int, int]
    pixels: Any = None           # set for uncached images
    entry: _RefEntry | None = None


@dataclass(eq=False)
class _Prepared:
    index: int
    request: CaptionRequest
    text: str                    # rendered prompt with each <|image_pad|> expanded
    images: list[_Image]
    image_tokens: int
    seconds: float               # preparation time of this request


class _CancelCriteria:
    """StoppingCriteria that stops the whole batch as soon as `cancel()` says so."""

    def __init__(self, cancel: Callable[[], bool]):
        self.cancel = cancel
        self.triggered = False

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        if not self.triggered and self.cancel():
            self.triggered = True
        return torch.full((input_ids.shape[0],), self.triggered, dtype=torch.bool, device=input_ids.device)


class _QuietPenaltyReplacement:
    """logging filter: our per-row RepetitionPenaltyLogitsProcessor replaces generate's own on purpose."""

    @staticmethod
    def filter(record) -> bool:
        msg = record.getMessage()
        return not ("RepetitionPenaltyLogitsProcessor" in msg and "take precedence" in msg)


def _quiet_penalty_warning() -> None:
    import logging

    lg = logging.getLogger("transformers.generation.utils")
    if not any(isinstance(f, _QuietPenaltyReplacement) for f in lg.filters):
        lg.addFilter(_QuietPenaltyReplacement())


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def _empty_cuda_cache() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass


def _describe_image_error(exc: BaseException) -> str:
    msg = str(exc).strip()
    if isinstance(exc, FileNotFoundError):
        return "the file is missing"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return msg or type(exc).__name__


def _unwrap_model(model):
    """The transformers model under a PEFT wrapper (if any)."""
    base = model
    get_base = getattr(model, "get_base_model", None)
    if callable(get_base):
        try:
            base = get_base()
        except Exception:
            base = model
    return base


# ---- the engine --------------------------------------------------------------------------------------

class CaptionEngine:
    def __init__(self, model, processor, *, generation_kwargs: dict[str, Any] | None = None,
                 batch_size: int = 4, max_new_tokens: int = 1024, min_new_tokens: int | None = None,
                 min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS, reuse_references: bool = True,
                 known_names: Iterable[str] = (), ref_cache_mb: int = 512, prefetch: bool = True):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if min_new_tokens is not None and not 0 <= min_new_tokens <= max_new_tokens:
            raise ValueError("min_new_tokens must be between 0 and max_new_tokens")
        if not 0 < min_pixels <= max_pixels:
            raise ValueError("need 0 < min_pixels <= max_pixels")
        if max_pixels < IMAGE_FACTOR * IMAGE_FACTOR:
            raise ValueError(f"max_pixels must be at least {IMAGE_FACTOR * IMAGE_FACTOR} (one visual token)")
        self.model = model
        self.processor = processor
        self.generation_kwargs = dict(generation_kwargs or {})
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.min_new_tokens = min_new_tokens
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.reuse_references = reuse_references
        self.known_names = tuple(known_names)
        self.ref_cache_bytes = int(ref_cache_mb) * 1024 * 1024
        self.prefetch = prefetch
        self._lock = threading.Lock()  # the reference cache is shared with the prefetch thread
        self.stats = EngineStats(batch_size=batch_size)
        self.cancelled = False
        self._ref_cache: OrderedDict[tuple, _RefEntry] = OrderedDict()
        self._render_cache: dict[tuple, str] = {}
        self._feature_path = self._pick_feature_path()  # "mm_encoder_outputs" | "hook" | None
        self._hook_plan: Any = None
        self._hook_images: Any = None
        self._hook_installed = False

    @classmethod
    def from_loaded(cls, loaded, **kwargs) -> "CaptionEngine":
        """An engine for a `models.LoadedModel`: its model and processor, its greedy generation config
        (checkpoint extras kept) and its spec's pixel limits. `kwargs` go to the constructor and win."""
        gk = getattr(loaded, "generation_kwargs", None)
        gen = dict(gk() if callable(gk) else (gk or {}))
        gen.update(kwargs.pop("generation_kwargs", None) or {})
        spec = getattr(loaded, "spec", None)
        for k in ("min_pixels", "max_pixels"):
            v = getattr(spec, k, None)
            if v is not None:
                kwargs.setdefault(k, v)
        if getattr(loaded, "is_demo", False):
            from .demo_model import DEMO_MAX_NEW_TOKENS

            cap = min(kwargs.get("max_new_tokens") or DEMO_MAX_NEW_TOKENS, DEMO_MAX_NEW_TOKENS)
            kwargs["max_new_tokens"] = cap
            if kwargs.get("min_new_tokens") is not None:
                kwargs["min_new_tokens"] = min(kwargs["min_new_tokens"], cap)
        return cls(loaded.model, loaded.processor, generation_kwargs=gen, **kwargs)

    # ---- lifecycle -----------------------------------------------------------------------------

    def clear_cache(self) -> None:
        with self._lock:
            self._ref_cache.clear()
        self._render_cache.clear()

    def unload(self) -> None:
        """Drop the model, the processor and every cache; free GPU memory."""
        self._uninstall_hook()
        self.clear_cache()
        self.model = None
        self.processor = None
        gc.collect()
        _empty_cuda_cache()

    @property
    def loaded(self) -> bool:
        return self.model is not None

    # ---- main entry ----------------------------------------------------------------------------

    def caption(self, requests: Sequence[CaptionRequest], *, progress: ProgressFn | None = None,
                cancel: Callable[[], bool] | None = None,
                on_result: Callable[[CaptionResult], None] | None = None) -> list[CaptionResult]:
        """Caption `requests`; returns the finished results in input order. `on_result` gets each result
        (caption or per-photo error) as soon as it exists. When `cancel()` turns true the run stops
        between batches or inside generation; unfinished requests get no result (`self.cancelled`)."""
        if self.model is None:
            raise EngineError("the engine's model was unloaded")
        self.cancelled = False
        run = _CaptionRun(self, list(requests), progress, cancel or (lambda: False), on_result)
        try:
            run.loop()
        finally:
            self._hook_plan = None
            run.close()
            self.stats.seconds += time.perf_counter() - run.start
        return [run.results[i] for i in sorted(run.results)]

    def _oom_message(self, exc: BaseException) -> str:
        import torch

        try:
            on_gpu = self.model.device.type != "cpu"
        except Exception:
            on_gpu = True
        gpu = on_gpu or isinstance(exc, torch.OutOfMemoryError) or "cuda" in str(exc).lower()
        return OOM_ALONE_MESSAGE if gpu else OOM_ALONE_MESSAGE_CPU

    # ---- planning ----------------------------------------------------------------------------------

    def _plan_batches(self, requests: Sequence[CaptionRequest], batch_size: int) -> list[list[int]]:
        """Group requests sharing a prompt prefix (their references are then reused back to back) and,
        inside a group, sort by estimated prompt length so batch-mates need little padding."""
        group_of: dict[str, int] = {}
        keyed = []
        for i, r in enumerate(requests):
            try:
                pk = r.prompt.prefix_key()
            except Exception:
                pk = ""
            g = group_of.setdefault(pk, len(group_of))
            keyed.append((g, self._estimate_tokens(r.prompt) if batch_size > 1 else 0, i))
        keyed.sort()
        order = [i for _, _, i in keyed]
        return _chunks(order, batch_size)

    def _estimate_tokens(self, prompt: CaptionPrompt) -> int:
        """Cheap prompt-length estimate: image headers only, no decoding."""
        from PIL import Image

        n = len(prompt.request) // 3
        for ref in prompt.images():
            try:
                if ref.box is not None:
                    w, h = ref.box[2], ref.box[3]
                else:
                    with Image.open(ref.path) as im:
                        w, h = im.size
                fh, fw = smart_resize(h, w, IMAGE_FACTOR, FETCH_MIN_PIXELS, FETCH_MAX_PIXELS)
                rh, rw = smart_resize(fh, fw, IMAGE_FACTOR, self.min_pixels, self.max_pixels)
                n += (rh // IMAGE_FACTOR) * (rw // IMAGE_FACTOR)
            except Exception:
                pass
        return n

    # ---- preparation ---------------------------------------------------------------------------

    def _prepare(self, index: int, request: CaptionRequest) -> _Prepared:
        t0 = time.perf_counter()
        prompt = request.prompt
        try:
            text = self._render(prompt)
        except PromptError as exc:
            raise _RequestError(str(exc), time.perf_counter() - t0) from exc
        refs = prompt.images()[:-1]
        owners = [c for c in prompt.concepts for _ in c.references]
        images: list[_Image] = []
        for ref, concept in zip(refs, owners):
            try:
                images.append(self._reference_image(ref))
            except _ImageFailure as exc:
                raise _RequestError(f"the reference photo of <{concept.name}> ({ref.path}) cannot be used: "
                                    f"{exc}", time.perf_counter() - t0) from exc
        try:
            pixels, grid = self._process_image(prompt.query)
        except _ImageFailure as exc:
            raise _RequestError(f"this photo cannot be captioned ({prompt.query.path}): {exc}",
                                time.perf_counter() - t0) from exc
        images.append(_Image(grid, pixels))
        merge = self._merge_size()
        counts = [t * h * w // (merge * merge) for t, h, w in (im.grid for im in images)]
        parts = text.split(IMAGE_PAD)
        if len(parts) != len(images) + 1:
            raise _RequestError(f"rendered prompt has {len(parts) - 1} image slots for {len(images)} images",
                                time.perf_counter() - t0)
        expanded = parts[0] + "".join(IMAGE_PAD * n + part for n, part in zip(counts, parts[1:]))
        return _Prepared(index, request, expanded, images, sum(counts), time.perf_counter() - t0)

    def _render(self, prompt: CaptionPrompt) -> str:
        """render(prompt), memoised: the text does not depend on the image files (images are placeholders),
        only on the system prompt, style, concepts (names, info, number of references) and request."""
        key = (prompt.system, prompt.style, prompt.concepts, prompt.request)
        text = self._render_cache.get(key)
        if text is None:
            text = render(prompt)  # verifies the rendering (turns, one vision block per image)
            if len(self._render_cache) >= 256:
                self._render_cache.clear()
            self._render_cache[key] = text
        return text

    def _reference_image(self, ref: ImageRef) -> _Image:
        if not self.reuse_references:
            pixels, grid = self._process_image(ref)
            return _Image(grid, pixels)
        key = self._ref_key(ref)
        with self._lock:
            entry = self._ref_cache.get(key)
            if entry is not None:
                self._ref_cache.move_to_end(key)
                self.stats.pixel_cache_hits += 1
                return _Image(entry.grid, None, entry)
            self.stats.pixel_cache_misses += 1
        pixels, grid = self._process_image(ref)  # outside the lock: the slow part
        entry = _RefEntry(grid, pixels)
        with self._lock:
            self._ref_cache[key] = entry
            self._evict_locked()
        return _Image(grid, None, entry)

    def _ref_key(self, ref: ImageRef) -> tuple:
        stamp = None
        if ref.content_hash is None:  # identify the file version by its mtime and size
            try:
                st = os.stat(ref.path)
                stamp = (st.st_mtime_ns, st.st_size)
            except OSError:
                stamp = None
        return (ref.key(), stamp, self.min_pixels, self.max_pixels)

    def _evict(self) -> None:
        with self._lock:
            self._evict_locked()

    def _evict_locked(self) -> None:
        total = sum(e.nbytes() for e in self._ref_cache.values())
        while total > self.ref_cache_bytes and len(self._ref_cache) > 1:
            _, old = self._ref_cache.popitem(last=False)
            total -= old.nbytes()

    def _merge_size(self) -> int:
        return int(getattr(self.processor.image_processor, "merge_size", 2))

    def _process_image(self, ref: ImageRef):
        """(pixel_values, grid) for one image, RePIC's way, with the pixel limits verified."""
        try:
            img = fetch_image(ref, self.max_pixels)
        except Exception as exc:  # UnusableImage, PromptError (aspect ratio), OSError, ValueError, ...
            if isinstance(exc, MemoryError):
                raise
            raise _ImageFailure(_describe_image_error(exc)) from exc
        try:
            pixels, grid = self._run_image_processor(img)
            if not self._grid_ok(grid):
                # The processor ignored our limits: resize to them ourselves (same rule), then re-check.
                h, w = smart_resize(img.height, img.width, self._factor(), self.min_pixels, self.max_pixels)
                from PIL import Image

                pixels, grid = self._run_image_processor(img.resize((w, h), Image.Resampling.BICUBIC))
                if not self._grid_ok(grid):
                    raise EngineError(
                        f"the image processor produced a {grid[1]}x{grid[2]} patch grid, over max_pixels="
                        f"{self.max_pixels}, even after resizing to the limit: check the processor's size settings")
        except (EngineError, MemoryError):
            raise
        except Exception as exc:
            raise _ImageFailure(_describe_image_error(exc)) from exc
        return pixels, grid

    def _factor(self) -> int:
        ip = self.processor.image_processor
        return int(getattr(ip, "patch_size", 14)) * self._merge_size()

    def _run_image_processor(self, img):
        out = self.processor.image_processor(
            images=[img], size={"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
            return_tensors="pt")
        import torch

        pixels = out["pixel_values"]
        grid_t = out["image_grid_thw"]
        if not isinstance(pixels, torch.Tensor):
            pixels = torch.as_tensor(pixels)
        grid = tuple(int(x) for x in (grid_t[0].tolist() if hasattr(grid_t[0], "tolist") else grid_t[0]))
        return pixels, grid

    def _grid_ok(self, grid: tuple[int, int, int]) -> bool:
        patch = int(getattr(self.processor.image_processor, "patch_size", 14))
        return grid[1] * grid[2] * patch * patch <= self.max_pixels

    # ---- one batch -------------------------------------------------------------------------------

    def _check_special_token_ids(self, batch: list[_Prepared], input_ids, attention_mask) -> None:
        """The tokens the model will see, not the text: every added/special token id of each prompt is
        counted against RePIC's layout, so no user text can smuggle in a turn, an image slot or a tool call."""
        added = getattr(self, "_added_token_ids", None)
        if added is None:
            added = {i: t.content for i, t in self.processor.tokenizer.added_tokens_decoder.items()}
            self._added_token_ids = added
        for row, (p, ids, mask) in enumerate(zip(batch, input_ids.tolist(), attention_mask.tolist())):
            found = Counter(added[i] for i, m in zip(ids, mask) if m and i in added)
            problem = special_token_problem(found, len(p.images), p.image_tokens)
            if problem:
                raise EngineError(f"prompt for {p.request.key!r}: {problem}")

    def _run_batch(self, batch: list[_Prepared], cancel: Callable[[], bool]) -> list[CaptionResult] | None:
        import torch

        t0 = time.perf_counter()
        model = self.model
        input_ids, attention_mask = self._tokenize(batch)
        images = [im for p in batch for im in p.images]
        device = model.device
        gen, stopper = self._generation_args(attention_mask, cancel, device)
        inputs: dict[str, Any] = {
            "input_ids": input_ids.to(device),
            "attention_mask": attention_mask.to(device),
            "mm_token_type_ids": (input_ids == self._image_token_id()).to(input_ids.dtype).to(device),
            "image_grid_thw": torch.tensor([im.grid for im in images], dtype=torch.long).to(device),
        }
        prep_t = time.perf_counter()
        self.stats.prepare_seconds += prep_t - t0 + sum(p.seconds for p in batch)
        hook_plan = self._add_vision_inputs(inputs, images, device)
        vis_t = time.perf_counter()
        self.stats.vision_seconds += vis_t - prep_t

        self._hook_plan = hook_plan
        try:
            with torch.no_grad():
                out = model.generate(**inputs, **gen)
        finally:
            self._hook_plan = None
            self._hook_images = None
        gen_t = time.perf_counter()
        self.stats.generate_seconds += gen_t - vis_t
        self.stats.batches += 1
        if stopper.triggered:
            return None
        return self._results(batch, out, input_ids, attention_mask, shared=(gen_t - t0) / len(batch))

    def _tokenize(self, batch: list[_Prepared]):
        """The batch's texts tokenized with LEFT padding; the image-token count of every row checked."""
        tok = self.processor.tokenizer
        old_side = tok.padding_side
        tok.padding_side = "left"
        try:
            enc = tok([p.text for p in batch], padding=True, return_tensors="pt")
        finally:
            tok.padding_side = old_side
        input_ids = enc["input_ids"]
        attention_mask = enc["attention_mask"]
        n_img = (input_ids == self._image_token_id()).sum(dim=1).tolist()
        for p, n in zip(batch, n_img):
            if n != p.image_tokens:
                raise EngineError(f"prompt for {p.request.key!r} has {n} image tokens but its images need "
                                  f"{p.image_tokens}: the tokenizer does not treat {IMAGE_PAD} as one token")
        self._check_special_token_ids(batch, input_ids, attention_mask)
        return input_ids, attention_mask

    def _generation_args(self, attention_mask, cancel: Callable[[], bool], device) -> tuple[dict[str, Any], _CancelCriteria]:
        """`generate`'s keyword arguments for one batch (greedy decoding as RePIC, the pad-aware repetition
        penalty, the cancel stopper) and the stopper."""
        gen: dict[str, Any] = dict(self.generation_kwargs)
        decoding = {"use_cache": True, "do_sample": False, "max_new_tokens": self.max_new_tokens}  # as RePIC
        if self.min_new_tokens is not None:
            decoding["min_new_tokens"] = self.min_new_tokens
        if gen.get("generation_config") is not None:
            # Set the decoding fields on (a copy of) the config: transformers deprecates passing a
            # generation_config together with loose generation arguments.
            import copy

            cfg = copy.deepcopy(gen["generation_config"])
            for key, value in decoding.items():
                setattr(cfg, key, value)
            gen["generation_config"] = cfg
        else:
            gen.update(decoding)
        pads = (attention_mask == 0).sum(dim=1)
        processors = list(gen.pop("logits_processor", None) or [])
        penalty = self._gen_attr("repetition_penalty")
        if penalty is not None and float(penalty) != 1.0 and bool((pads > 0).any()):
            from transformers import RepetitionPenaltyLogitsProcessor

            _quiet_penalty_warning()
            # replaces the built-in one in place; ignores each row's pad columns (see module docstring)
            processors.append(RepetitionPenaltyLogitsProcessor(float(penalty), prompt_ignore_length=pads.to(device)))
        if processors:
            from transformers import LogitsProcessorList

            gen["logits_processor"] = LogitsProcessorList(processors)
        stopper = _CancelCriteria(cancel)
        from transformers import StoppingCriteriaList

        criteria = list(gen.pop("stopping_criteria", None) or [])
        gen["stopping_criteria"] = StoppingCriteriaList([*criteria, stopper])
        return gen, stopper

    def _add_vision_inputs(self, inputs: dict[str, Any], images: list[_Image], device) -> Any:
        """Put the images into `inputs`: cached reference features plus fresh ones (reuse on), or all
        pixels. Returns the hook plan when the fallback hook splices the cached features in."""
        import torch

        if not (self.reuse_references and self._feature_path is not None):
            inputs["pixel_values"] = torch.cat([im.pixels for im in images], dim=0).to(device)
            return None
        features, uncached_pixels, uncached_grids, plan = self._features(images, device)
        if self._feature_path == "mm_encoder_outputs":
            from transformers.modeling_outputs import BaseModelOutputWithPooling

            inputs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=tuple(features))}
            return None
        # "hook": the model computes the uncached ones, the hook splices the cached ones in
        self._install_hook()
        self._hook_images = images
        inputs["pixel_values"] = uncached_pixels
        return plan

    def _results(self, batch: list[_Prepared], out, input_ids, attention_mask, *, shared: float) -> list[CaptionResult]:
        """Decode only the new tokens of each row; count them up to the first EOS; parse the tags."""
        seq = out.sequences if hasattr(out, "sequences") else out
        new = seq[:, input_ids.shape[1]:].cpu()
        texts = self.processor.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        eos = self._eos_ids()
        results = []
        for row, (p, text) in enumerate(zip(batch, texts)):
            ids = new[row].tolist()
            n_new = len(ids)
            for j, t in enumerate(ids):
                if t in eos:
                    n_new = j + 1
                    break
            tags = parse_tags(text, p.request.prompt.expected_names(), self.known_names)
            results.append(CaptionResult(p.request.key, text, None, tags, p.seconds + shared,
                                         int(attention_mask[row].sum()), n_new))
        return results

    def _image_token_id(self) -> int:
        cfg = getattr(self.model, "config", None)
        tid = getattr(cfg, "image_token_id", None)
        if tid is None:
            tid = self.processor.tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        return int(tid)

    def _gen_attr(self, name: str) -> Any:
        """A generation setting as generate() will see it: explicit kwarg, else the passed
        generation_config, else the model's generation_config."""
        if name in self.generation_kwargs:
            return self.generation_kwargs[name]
        for cfg in (self.generation_kwargs.get("generation_config"), getattr(self.model, "generation_config", None)):
            if cfg is not None and getattr(cfg, name, None) is not None:
                return getattr(cfg, name)
        return None

    def _eos_ids(self) -> set[int]:
        eos = self._gen_attr("eos_token_id")
        if eos is None:
            return set()
        return {int(e) for e in eos} if isinstance(eos, (list, tuple, set)) else {int(eos)}

    # ---- reference feature reuse ---------------------------------------------------------------

    def _pick_feature_path(self) -> str | None:
        base = _unwrap_model(self.model)
        if not callable(getattr(base, "get_image_features", None)):
            return None
        try:
            params = inspect.signature(base.forward).parameters
        except (TypeError, ValueError):
            params = {}
        if "mm_encoder_outputs" in params:
            return "mm_encoder_outputs"
        inner = getattr(base, "model", None)
        if inner is not None and callable(getattr(inner, "get_image_features", None)):
            return "hook"
        return None

    def _encode(self, pixels, grids):
        """The vision tower's merged outputs, one tensor per image (Qwen2_5_VLModel.get_image_features)."""
        import torch

        with torch.no_grad():
            out = _unwrap_model(self.model).get_image_features(pixels, grids)
        return self._split(out, grids)

    def _features(self, images: list[_Image], device):
        """Features for every image of the batch, in placeholder order: cached references as they are,
        the rest (queries, new references) encoded together in one vision-tower call."""
        import torch

        todo = [k for k, im in enumerate(images) if im.entry is None or im.entry.features is None]
        features: list[Any] = [im.entry.features if im.entry is not None else None for im in images]
        # the same new reference may appear more than once in a batch: encode it once
        first: dict[int, int] = {}
        unique: list[int] = []
        for k in todo:
            e = images[k].entry
            if e is not None and id(e) in first:
                continue
            if e is not None:
                first[id(e)] = k
            unique.append(k)
        n_refs = sum(im.entry is not None for im in images)
        self.stats.vision_cache_misses += len(first)
        self.stats.vision_cache_hits += n_refs - len(first)
        pixels = grids = None
        if unique:
            pixels = torch.cat([(images[k].pixels if images[k].entry is None else images[k].entry.pixels)
                                for k in unique], dim=0).to(device)
            grids = torch.tensor([images[k].grid for k in unique], dtype=torch.long, device=device)
        if self._feature_path == "hook":
            # the model runs the encoder on `pixels` itself; the plan tells the hook where cached ones go
            plan = [None if k in todo else features[k] for k in range(len(images))]
            dup = {k: first[id(images[k].entry)] for k in todo
                   if images[k].entry is not None and first.get(id(images[k].entry)) != k}
            if pixels is None:
                pixels = torch.zeros((0, 1), device=device)
            return None, pixels, grids, (plan, unique, dup)
        if unique:
            encoded = self._encode(pixels, grids)
            for k, f in zip(unique, encoded):
                features[k] = f
                e = images[k].entry
                if e is not None:
                    e.features = f
                    e.pixels = None
            for k in todo:
                if features[k] is None:
                    features[k] = images[k].entry.features
            self._evict()
        return features, None, None, None

    # "hook" path (transformers without mm_encoder_outputs): wrap the inner model's get_image_features.
    def _install_hook(self) -> None:
        if self._hook_installed:
            return
        inner = _unwrap_model(self.model).model
        original = inner.get_image_features
        engine = self

        def get_image_features(pixel_values, image_grid_thw=None, **kwargs):
            plan = engine._hook_plan
            if plan is None:
                return original(pixel_values, image_grid_thw, **kwargs)
            slots, unique, dup = plan
            grids = image_grid_thw[unique]
            out = original(pixel_values, grids, **kwargs)  # the query is never cached: always >= 1 image
            feats = list(slots)
            for k, f in zip(unique, engine._split(out, grids)):
                feats[k] = f
            for k, src in dup.items():
                feats[k] = feats[src]
            engine._store_hook_features(feats)
            # answer in the original's own return type (ModelOutput in 5.x, a tuple of tensors in 4.5x)
            if hasattr(out, "pooler_output"):
                out.pooler_output = tuple(feats)
                return out
            return tuple(feats)

        self._original_get_image_features = original
        inner.get_image_features = get_image_features
        self._hook_inner = inner
        self._hook_installed = True

    def _uninstall_hook(self) -> None:
        if self._hook_installed:
            try:
                del self._hook_inner.get_image_features
            except AttributeError:
                pass
            self._hook_installed = False

    def _split(self, out, grids):
        import torch

        pooled = out.pooler_output if hasattr(out, "pooler_output") else out
        if isinstance(pooled, torch.Tensor):
            merge = self._merge_size()
            pooled = torch.split(pooled, (grids.prod(-1) // (merge * merge)).tolist())
        return list(pooled)

    def _store_hook_features(self, feats) -> None:
        images = self._hook_images
        for im, f in zip(images, feats):
            if im.entry is not None and im.entry.features is None:
                im.entry.features = f
                im.entry.pixels = None
        self._evict()


class _CaptionRun:
    """One `CaptionEngine.caption` call: the batch queue, the prepared requests, the prefetch worker and
    the results, and the steps of the loop over batches (OOM back-off included)."""

    def __init__(self, engine: CaptionEngine, requests: list[CaptionRequest], progress: ProgressFn | None,
                 cancel: Callable[[], bool], on_result: Callable[[CaptionResult], None] | None):
        self.engine = engine
        self.requests = requests
        self.total = len(requests)
        self.progress = progress
        self.cancel = cancel
        self.on_result = on_result
        self.results: dict[int, CaptionResult] = {}
        self.start = time.perf_counter()
        if progress is not None:  # before planning, which reads every image's header
            progress(0, self.total, None, requests[0].key if requests else None)
        self.queue: deque[list[int]] = deque(engine._plan_batches(requests, engine.batch_size))
        # request index -> prepared request, or the _RequestError that makes it a per-photo error
        self.prepared: dict[int, Any] = {}
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="caption-prepare") if engine.prefetch else None
        self.pending: list[Future] = []

    def loop(self) -> None:
        engine = self.engine
        while self.queue:
            if self.cancel():
                engine.cancelled = True
                return
            batch = self.queue.popleft()
            if len(batch) > engine.batch_size:  # the batch size was reduced after an OOM
                self.queue.extendleft(reversed(_chunks(batch, engine.batch_size)))
                continue
            ready = self._ready(batch)
            if not ready:
                continue
            self._prefetch_next()
            self._report(ready[0].request.key)
            try:
                outcome = engine._run_batch(ready, self.cancel)
            except Exception as exc:
                if not _is_oom(exc):
                    raise
                oom_message = engine._oom_message(exc)
                del exc
                self._back_off(ready, oom_message)
                continue
            if outcome is None:  # cancelled during generation: nothing of this batch is kept
                engine.cancelled = True
                return
            for p, res in zip(ready, outcome):
                self.prepared.pop(p.index, None)
                self._finish(res, p.index)

    def close(self) -> None:
        if self.pool is not None:
            for fut in self.pending:  # let an in-flight prefetch finish before returning
                fut.exception()
            self.pool.shutdown(wait=True)

    def _eta(self) -> float | None:
        done = len(self.results)
        elapsed = time.perf_counter() - self.start
        return elapsed / done * (self.total - done) if done else None

    def _report(self, key: Any) -> None:
        if self.progress is not None:
            self.progress(len(self.results), self.total, self._eta(), key)

    def _finish(self, res: CaptionResult, index: int) -> None:
        self.results[index] = res
        stats = self.engine.stats
        if res.error is None:
            stats.photos += 1
        else:
            stats.errors += 1
        stats.prompt_tokens += res.prompt_tokens
        stats.new_tokens += res.new_tokens
        if self.on_result is not None:
            self.on_result(res)
        self._report(res.key)

    def _prepare_many(self, indices: list[int]) -> dict[int, Any]:
        out: dict[int, Any] = {}
        for i in indices:
            try:
                out[i] = self.engine._prepare(i, self.requests[i])
            except _RequestError as exc:
                out[i] = exc
        return out

    def _collect(self, batch: list[int]) -> None:
        while self.pending:  # the prefetched batch (usually this one)
            self.prepared.update(self.pending.pop().result())
        missing = [i for i in batch if i not in self.prepared]
        if missing:
            self.prepared.update(self._prepare_many(missing))

    def _ready(self, batch: list[int]) -> list[_Prepared]:
        """The batch's prepared requests; the ones that failed to prepare finish as per-photo errors."""
        self._collect(batch)
        ready: list[_Prepared] = []
        for i in batch:
            item = self.prepared[i]
            if isinstance(item, _RequestError):  # bad photo / reference / prompt: per-photo error
                self.prepared.pop(i)
                self._finish(CaptionResult(self.requests[i].key, None, str(item), None, item.seconds, 0, 0), i)
                continue
            ready.append(item)
        return ready

    def _prefetch_next(self) -> None:
        """Read and preprocess the next batch's images while this batch generates."""
        if self.pool is None or not self.queue:
            return
        nxt = [i for i in self.queue[0][:self.engine.batch_size] if i not in self.prepared]
        if nxt:
            self.pending.append(self.pool.submit(self._prepare_many, nxt))

    def _back_off(self, ready: list[_Prepared], oom_message: str) -> None:
        """Out of memory: halve the batch size and requeue the batch, or at batch size 1 give the photo
        its per-photo error."""
        engine = self.engine
        gc.collect()
        _empty_cuda_cache()
        if len(ready) > 1:
            engine.stats.oom_backoffs += 1
            engine.batch_size = max(1, math.ceil(len(ready) / 2))
            engine.stats.batch_size = engine.batch_size
            self.queue.extendleft(reversed(_chunks([p.index for p in ready], engine.batch_size)))
            return
        p = ready[0]
        self.prepared.pop(p.index, None)
        self._finish(CaptionResult(p.request.key, None, oom_message, None, p.seconds, 0, 0), p.index)

class _RequestError(Exception):
    def __init__(self, message: str, seconds: float = 0.0):
        super().__init__(message)
        self.seconds = seconds


class _ImageFailure(Exception):
    pass


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i:i + size] for i in range(0, len(items), size)]

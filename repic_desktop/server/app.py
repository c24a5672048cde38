"""The OpenAI-compatible app of `repic serve`: /v1/chat/completions (images as data URLs), /v1/models,
/health and vLLM's /tokenize (chat form, for the client's prompt check).

Batching: handlers only parse and queue; one worker thread owns the engines (one GPU, one model in
memory per served name) and takes everything queued (what arrived while the last batch ran; no waiting
for stragglers, which would only add latency at one request in flight) into one `CaptionEngine.caption`
call. The engine then does what it does for a local job: groups photos with the
same references, reuses their pixels and vision-encoder outputs, batches `batch_size` at a time and hands
each result over as soon as its batch ends. Requests arriving while a batch runs wait for the next one
(no continuous batching: that is what vLLM is for).

A chat is turned into a `ChatPrompt`, which the engine treats like RePIC's CaptionPrompt: the same
Qwen2.5-VL chat template renders it, the same checks refuse chat control tokens in user text, the last
image is the query (never cached), every other image a reference (cached by the hash of its bytes, so
a reference sent again with the next photo is not decoded or encoded again). Greedy decoding only, with
the request's `max_tokens`, `min_tokens` and `repetition_penalty` (vLLM's field names).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hashlib
import json
import os
import queue
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request  # at module level: FastAPI resolves the handlers' annotations here
from fastapi.responses import JSONResponse

from ..captioning.prompt import ImageRef, PromptConcept, PromptError, check_user_text

DEFAULT_MAX_IMAGES = 16  # per prompt; RePIC's own prompts have at most 8 concepts x 8 references + 1
MAX_IMAGE_BYTES = 64 * 1024 * 1024
_MIME_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "image/jpg": ".jpg", "image/webp": ".webp",
             "image/gif": ".gif", "image/bmp": ".bmp", "image/tiff": ".tif"}


class RequestError(Exception):
    def __init__(self, status: int, message: str, kind: str = "BadRequestError"):
        super().__init__(message)
        self.status, self.kind = status, kind


# ---- chat -> prompt -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChatPrompt:
    """A chat of one optional system message and one user message with interleaved text and images,
    shaped for CaptionEngine (the attributes it reads from a CaptionPrompt)."""
    system_text: str | None
    parts: tuple[tuple[str, Any], ...]   # ("text", str) | ("image", index into image_refs)
    image_refs: tuple[ImageRef, ...]
    style: str = "chat"

    @property
    def system(self) -> str | None:
        return self.system_text

    @property
    def concepts(self) -> tuple[PromptConcept, ...]:
        # one pseudo-concept per reference image: the engine names images by concept in its errors
        return tuple(PromptConcept(f"image {i}", "", (ref,)) for i, ref in enumerate(self.image_refs[:-1], 1))

    @property
    def query(self) -> ImageRef:
        return self.image_refs[-1]

    @property
    def request(self) -> str:
        return json.dumps(self.parts)  # identifies the text layout (the engine memoises renders by it)

    def messages(self) -> list[dict[str, Any]]:
        content = [{"type": "image"} if kind == "image" else {"type": "text", "text": value}
                   for kind, value in self.parts]
        out = [] if self.system_text is None else [{"role": "system", "content": self.system_text}]
        return out + [{"role": "user", "content": content}]

    def images(self) -> list[ImageRef]:
        return list(self.image_refs)

    def prefix_key(self) -> str:
        data = [self.system_text, self.request, [r.key() for r in self.image_refs[:-1]]]
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()

    def prompt_hash(self) -> str:
        return self.prefix_key()[:16]

    def expected_names(self) -> list[str]:
        return []


class ImageStore:
    """Received images as files named by the hash of their bytes (the engine reads files; equal bytes
    = equal file = one cache entry). Old files are pruned past `keep` files."""

    def __init__(self, keep: int = 4096):
        self.dir = Path(tempfile.mkdtemp(prefix="repic-serve-"))
        self.keep = keep
        self.lock = threading.Lock()
        self.count = 0

    def put(self, data: bytes, ext: str) -> ImageRef:
        digest = hashlib.sha256(data).hexdigest()
        path = self.dir / f"{digest[:40]}{ext}"
        with self.lock:
            if not path.exists():
                tmp = path.with_suffix(".part")
                tmp.write_bytes(data)
                os.replace(tmp, path)
                self.count += 1
                if self.count > self.keep:
                    self._prune()
        return ImageRef(str(path), None, digest)

    def _prune(self) -> None:
        files = sorted(self.dir.iterdir(), key=lambda p: p.stat().st_mtime)
        for p in files[: len(files) // 2]:
            p.unlink(missing_ok=True)
        self.count = len(files) - len(files) // 2

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _decode_data_url(url: Any) -> tuple[bytes, str]:
    if not isinstance(url, str) or not url.startswith("data:"):
        raise RequestError(400, "this server takes images only as base64 data: URLs (it fetches nothing from the "
                           "network)")
    head, _, payload = url.partition(",")
    mime = head[5:].split(";")[0].lower()
    if ";base64" not in head or mime not in _MIME_EXT:
        raise RequestError(400, f"unsupported image data URL ({head[:40]}): send base64 PNG or JPEG")
    if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise RequestError(413, "an image is larger than 64 MB")
    try:
        return base64.b64decode(payload, validate=True), _MIME_EXT[mime]
    except (binascii.Error, ValueError):
        raise RequestError(400, "an image's base64 data is invalid") from None


def parse_chat(messages: Any, images: ImageStore | None, max_images: int) -> ChatPrompt:
    """The request's messages as a ChatPrompt; images saved through `images` (None: placeholders only,
    for /tokenize)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages must be a non-empty list")
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if roles not in (["user"], ["system", "user"]):
        raise RequestError(400, "this server captions one photo per request: send one optional system message "
                           f"and one user message (got roles {roles})")
    system = None
    if roles[0] == "system":
        content = messages[0].get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if not isinstance(content, str):
            raise RequestError(400, "the system message must be text")
        system = content
    content = messages[-1].get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise RequestError(400, "the user message content must be text or a list of parts")
    parts: list[tuple[str, Any]] = []
    refs: list[ImageRef] = []
    n_images = sum(1 for p in content if isinstance(p, dict) and p.get("type") in ("image_url", "image"))
    if n_images > max_images:
        # vLLM's wording, so clients recognise the limit (its --limit-mm-per-prompt)
        raise RequestError(400, f"At most {max_images} image(s) may be provided in one prompt "
                           "(repic serve --max-images).")
    for p in content:
        kind = p.get("type") if isinstance(p, dict) else None
        if kind == "text":
            parts.append(("text", str(p.get("text", ""))))
        elif kind == "image_url":
            url = p.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if images is None:
                refs.append(ImageRef(f"image-{len(refs)}"))
            else:
                data, ext = _decode_data_url(url)
                refs.append(images.put(data, ext))
            parts.append(("image", len(refs) - 1))
        else:
            raise RequestError(400, f"unsupported content part {kind!r}: send text and image_url parts")
    if not refs:
        raise RequestError(400, "this server captions images: send at least one image")
    try:
        for text in [system or ""] + [v for k, v in parts if k == "text"]:
            check_user_text(text, "the request text")
    except PromptError as exc:
        raise RequestError(400, str(exc)) from None
    return ChatPrompt(system, tuple(parts), tuple(refs))


# ---- models and the batching worker --------------------------------------------------------------------

class ServedModel:
    def __init__(self, name: str, loaded: Any, *, batch_size: int, base_name: str | None = None):
        from ..captioning.engine import CaptionEngine

        self.name = name
        self.loaded = loaded
        self.base_name = base_name
        self.engine = CaptionEngine.from_loaded(loaded, batch_size=batch_size, max_new_tokens=1024)
        self.cap = self.engine.max_new_tokens if loaded.is_demo else None  # the demo's own token cap
        self.base_kwargs = dict(self.engine.generation_kwargs)
        self.created = int(time.time())

    def entry(self) -> dict[str, Any]:
        prov = self.loaded.provenance()
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "repic",
                "root": prov.get("adapter") or prov.get("source"), "parent": self.base_name,
                "source": prov.get("source"), "revision": prov.get("commit") or prov.get("revision"),
                "adapter": self.name if self.base_name else None, "max_model_len": self.max_model_len()}

    def max_model_len(self) -> int | None:
        cfg = getattr(self.loaded.model, "config", None)
        text = getattr(cfg, "text_config", cfg)
        return getattr(text, "max_position_embeddings", None)

    def configure(self, max_tokens: int, min_tokens: int | None, penalty: float | None) -> None:
        eng = self.engine
        eng.max_new_tokens = min(max_tokens, self.cap) if self.cap else max_tokens
        eng.min_new_tokens = None if min_tokens is None else min(min_tokens, eng.max_new_tokens)
        kwargs = dict(self.base_kwargs)
        if penalty is not None:
            cfg = kwargs.get("generation_config")
            if cfg is not None:
                cfg = copy.deepcopy(cfg)
                cfg.repetition_penalty = float(penalty)
                kwargs["generation_config"] = cfg
            else:
                kwargs["repetition_penalty"] = float(penalty)
        eng.generation_kwargs = kwargs


@dataclass
class _Item:
    model: str
    prompt: ChatPrompt
    sampling: tuple
    future: Future


class Batcher:
    """One thread runs every engine call; it takes all queued requests at once (after `window` seconds
    for stragglers) and captions them together."""

    def __init__(self, models: dict[str, ServedModel], window: float = 0.0, max_take: int = 256):
        self.models = models
        self.window = window
        self.max_take = max_take
        self.q: queue.Queue[_Item | None] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="repic-serve-batcher", daemon=True)
        self.thread.start()
        self.batches = 0

    def submit(self, model: str, prompt: ChatPrompt, sampling: tuple) -> Future:
        fut: Future = Future()
        self.q.put(_Item(model, prompt, sampling, fut))
        return fut

    def close(self) -> None:
        self.q.put(None)

    def _loop(self) -> None:
        from ..captioning.engine import CaptionRequest

        while True:
            first = self.q.get()
            if first is None:
                return
            items = [first]
            deadline = time.monotonic() + self.window
            while len(items) < self.max_take:
                try:  # window 0: take only what is already queued (requests that came during the last batch)
                    left = deadline - time.monotonic()
                    item = self.q.get(timeout=left) if left > 0 else self.q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.q.put(None)
                    break
                items.append(item)
            groups: dict[tuple, list[_Item]] = {}
            for it in items:
                groups.setdefault((it.model, it.sampling), []).append(it)
            for (name, sampling), group in groups.items():
                served = self.models[name]
                try:
                    served.configure(*sampling)
                    by_key = {i: it for i, it in enumerate(group)}
                    requests = [CaptionRequest(i, it.prompt) for i, it in by_key.items()]

                    def deliver(res, by_key=by_key):
                        it = by_key.pop(res.key)
                        if not it.future.done():
                            it.future.set_result(res)

                    served.engine.caption(requests, on_result=deliver)
                    self.batches += 1
                    for it in by_key.values():  # none expected: the engine answers every request
                        it.future.set_exception(RuntimeError("the engine gave no result"))
                except BaseException as exc:  # engine set-up failure: every request of the group fails
                    for it in group:
                        if not it.future.done():
                            it.future.set_exception(exc)


# ---- the FastAPI app ------------------------------------------------------------------------------------

def _error(status: int, message: str, kind: str = "BadRequestError"):
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": status}},
                        status_code=status)


def _int_field(body: dict, name: str, lo: int, hi: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise RequestError(400, f"{name} must be a whole number from {lo} to {hi}")
    return value


def create_app(models: dict[str, ServedModel], *, api_key: str | None = None,
               max_images: int = DEFAULT_MAX_IMAGES, window: float = 0.0):
    from contextlib import asynccontextmanager

    images = ImageStore()
    batcher = Batcher(models, window=window)

    @asynccontextmanager
    async def lifespan(app):
        yield
        batcher.close()
        images.close()

    app = FastAPI(title="repic serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.batcher = batcher
    app.state.images = images

    def authorised(request: Request) -> bool:
        if not api_key:
            return True
        got = request.headers.get("authorization", "")
        return got.startswith("Bearer ") and secrets.compare_digest(got[7:].strip(), api_key)

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if request.url.path != "/health" and not authorised(request):
            return _error(401, "invalid or missing API key", "AuthenticationError")
        return await call_next(request)

    @app.get("/health")
    async def health():
        return JSONResponse({"status": "ok"})

    @app.get("/v1/models")
    async def list_models():
        return JSONResponse({"object": "list", "data": [m.entry() for m in models.values()]})

    async def read_json(request: Request) -> dict:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise RequestError(400, "the request body is not JSON") from None
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        return body

    def model_of(body: dict) -> str:
        name = body.get("model")
        if name is None and len(models) == 1:
            return next(iter(models))
        if name not in models:
            raise RequestError(404, f"The model `{name}` does not exist.", "NotFoundError")
        return name

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            body = await read_json(request)
            name = model_of(body)
            if body.get("stream"):
                raise RequestError(400, "streaming is not supported by repic serve")
            if body.get("n") not in (None, 1):
                raise RequestError(400, "n must be 1 (greedy decoding gives one caption)")
            temperature = body.get("temperature")
            if temperature not in (None, 0, 0.0):
                raise RequestError(400, "repic serve decodes greedily, as RePIC: temperature must be 0")
            max_tokens = _int_field(body, "max_completion_tokens", 1, 8192) or _int_field(body, "max_tokens", 1, 8192)
            min_tokens = _int_field(body, "min_tokens", 0, 8192)
            penalty = body.get("repetition_penalty")
            if penalty is not None and (isinstance(penalty, bool) or not isinstance(penalty, (int, float))
                                        or not 0 < penalty <= 10):
                raise RequestError(400, "repetition_penalty must be a number above 0 and at most 10")
            prompt = await asyncio.to_thread(parse_chat, body.get("messages"), images, max_images)
        except RequestError as exc:
            return _error(exc.status, str(exc), exc.kind)
        sampling = (max_tokens or 1024, min_tokens, None if penalty is None else float(penalty))
        try:
            res = await asyncio.wrap_future(batcher.submit(name, prompt, sampling))
        except Exception as exc:
            return _error(500, f"the engine failed: {exc}", "InternalServerError")
        if res.error is not None:
            return _error(400, res.error)
        served = models[name]
        finish = "length" if res.new_tokens >= served.engine.max_new_tokens else "stop"
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": res.caption},
                         "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": res.prompt_tokens, "completion_tokens": res.new_tokens,
                      "total_tokens": res.prompt_tokens + res.new_tokens}})

    @app.post("/tokenize")
    async def tokenize(request: Request):
        from ..captioning.prompt import render

        try:
            body = await read_json(request)
            name = model_of(body)
            if "messages" not in body:
                raise RequestError(400, "repic serve tokenizes chats only: send messages")
            prompt = parse_chat(body["messages"], None, max_images)
            text = render(prompt)
        except RequestError as exc:
            return _error(exc.status, str(exc), exc.kind)
        except PromptError as exc:
            return _error(400, str(exc))
        served = models[name]
        ids = served.loaded.processor.tokenizer(text, add_special_tokens=False)["input_ids"]
        return JSONResponse({"count": len(ids), "max_model_len": served.max_model_len(), "tokens": ids})

    return app


# ---- `repic serve` ----------------------------------------------------------------------------------------

def load_models(model: str, adapters: list[tuple[str, str]], *, served_name: str | None, quantization: str,
                device: str, max_pixels: int | None, batch_size: int) -> dict[str, ServedModel]:
    """The base model under `served_name` (default: the model as given) and each adapter under its name.
    Each adapter is its own copy of the base (simple and exact; costs one model's memory per adapter)."""
    from ..captioning.models import ModelSpec, load_model

    kw: dict[str, Any] = {"quantization": quantization, "device": device}
    if max_pixels is not None:
        kw["max_pixels"] = max_pixels
    base = served_name or model
    out = {base: ServedModel(base, load_model(ModelSpec(source=model, **kw)), batch_size=batch_size)}
    for name, folder in adapters:
        if name in out:
            raise ValueError(f"the served name {name!r} is used twice")
        out[name] = ServedModel(name, load_model(ModelSpec(source=model, adapter=folder, **kw)),
                                batch_size=batch_size, base_name=base)
    return out

"""Captioning on an OpenAI-compatible server (vLLM first; also `repic serve`): the remote backend.

Why httpx and not the `openai` package: the backend needs exactly three things the official client
hides or does not do: vLLM's extra sampling fields in the body (`repetition_penalty`, `min_tokens`;
the client can only smuggle them through `extra_body`), vLLM's non-OpenAI `/tokenize` and `/health`
routes, and full control of retries (the client retries on its own with its own back-off, which would
fight the server pool below that skips a dead server and tries another). httpx is what the `openai`
package itself is built on, so nothing is lost; `openai` stays a test-only dependency that proves
`repic serve` speaks the protocol.

One photo = one chat-completions request in RePIC's layout (prompt.CaptionPrompt.messages()): the
system prompt, then per concept its reference images and its info line, then the query image and the
request, in one user turn. Images travel as base64 PNG data URLs after RePIC's own two resizes
(prompt.fetch_image, then smart_resize to the job's pixel limits with PIL bicubic, the resize the
image processor applies), so the server's processor has nothing left to resize and sees the pixels the
local engine sees, whatever `max_pixels` the server was started with. PNG keeps them lossless.

Request fields (vLLM `ChatCompletionRequest`, vllm/entrypoints/openai/chat_completion/protocol.py at
002032ee2b18e1f7bd924ec47b62504ba3866063): `model`, `messages`, `temperature` (0 = greedy),
`max_tokens` (deprecated there in favour of `max_completion_tokens`, still accepted, and the one
field every OpenAI-compatible server knows), and from vLLM's "chat-completion-sampling-params" block
`repetition_penalty` and `min_tokens`. Nothing else is sent (tests check it against
VLLM_CHAT_REQUEST_FIELDS).

Privacy: photos go only to the URLs the user configured; the API key comes from an environment
variable or the OS keyring and lives only in the HTTP client's headers (never in the library,
provenance, job parameters or logs); https certificates are verified (optionally against a CA file);
plain http to anything but this computer needs an explicit opt-in (server_address.py).

Module size (~630 lines): the backend, its server pool and the connection test are one thing: the test
drives the same backend and pool the jobs use (`prompt_check` on a live `_Server`), so it stays here; the
addresses/keys (server_address.py) and the request body (chat_request.py) are separate.
"""
from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Sequence

# Addresses, keys and options live in server_address.py, the request body in chat_request.py;
# importers still know these names as remote.X.
from .server_address import DEFAULT_API_KEY_ENV as DEFAULT_API_KEY_ENV
from .server_address import DEFAULT_IN_FLIGHT as DEFAULT_IN_FLIGHT
from .server_address import KEYRING_SERVICE as KEYRING_SERVICE
from .server_address import RemoteError as RemoteError
from .server_address import RemoteOptions as RemoteOptions
from .server_address import ServerAddress as ServerAddress
from .server_address import api_key_for as api_key_for
from .server_address import is_local_host as is_local_host
from .server_address import server_settings as server_settings
from .server_address import store_api_key as store_api_key
from .server_address import strip_credentials
from .chat_request import SENT_FIELDS as SENT_FIELDS
from .chat_request import VLLM_CHAT_REQUEST_FIELDS as VLLM_CHAT_REQUEST_FIELDS
from .chat_request import chat_messages as chat_messages
from .chat_request import encode_image as encode_image
from .chat_request import repetition_penalty_for as repetition_penalty_for
from .chat_request import request_body as request_body
from .prompt import MAX_PIXELS, MIN_PIXELS, CaptionPrompt, ImageRef, parse_tags

RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
MAX_RETRIES_PER_PHOTO = 5  # a 5xx that keeps coming for one photo is that photo's error, not an outage
_MM_LIMIT_RE = re.compile(r"at most \d+ image|limit[_-]mm[_-]per[_-]prompt|image.{0,40}(?:limit|exceed)|"
                          r"only \d+ image", re.IGNORECASE)


class ServerConfigError(RemoteError):
    """The server answers but refuses the job (key, model, image limit): retrying cannot help."""


class ServersUnavailable(RemoteError):
    """No configured server answered for longer than the backend waits: the job pauses."""


# ---- one server ---------------------------------------------------------------------------------------

def _retry_after(resp) -> float | None:
    """The server's Retry-After in seconds (at most a minute), if it sent a number."""
    try:
        return min(60.0, float(resp.headers.get("retry-after")))
    except (TypeError, ValueError):
        return None


def _error_text(resp) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text.strip()[:300]
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message") or json.dumps(err)
        if err is not None:
            return str(err).strip()[:300]
    return json.dumps(data)[:300]


def _transport_problem(exc: BaseException) -> str:
    import httpx

    if isinstance(exc, httpx.ConnectTimeout):
        return "no answer to the connection (timeout)"
    if isinstance(exc, httpx.ConnectError):
        msg = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in msg or "certificate" in msg.lower():
            return "its https certificate is not trusted (set a CA file if it is your own)"
        if "Name or service not known" in msg or "nodename nor servname" in msg or "getaddrinfo" in msg:
            return "the host name is unknown"
        return "the connection was refused or the host is unreachable"
    if isinstance(exc, httpx.TimeoutException):
        return "it took too long to answer"
    return "the connection was lost"


class _Server:
    def __init__(self, address: ServerAddress, options: RemoteOptions):
        import httpx

        self.address = address
        self.key = api_key_for(address, options.api_key_env)
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        verify: Any = options.ca_file if options.ca_file else True
        self.client = httpx.Client(headers=headers, verify=verify, trust_env=False,
                                   timeout=httpx.Timeout(options.timeout, connect=options.connect_timeout),
                                   limits=httpx.Limits(max_connections=max(1, options.in_flight)))
        self.dead_until = 0.0
        self.failures = 0
        self.in_flight = 0
        self.problem: str | None = None
        self.models: dict[str, dict] | None = None

    def close(self) -> None:
        self.client.close()

    def list_models(self) -> dict[str, dict]:
        resp = self.client.get(self.address.api + "/models")
        self.check_auth(resp)
        if resp.status_code != 200:
            raise RemoteError(f"{self.address.url} did not list its models (HTTP {resp.status_code}: "
                              f"{_error_text(resp)}); is it an OpenAI-compatible server?")
        try:
            data = resp.json()["data"]
            self.models = {m["id"]: m for m in data}
        except (ValueError, KeyError, TypeError):
            raise RemoteError(f"{self.address.url} answered /v1/models with something that is not a model "
                              "list; is it an OpenAI-compatible server?") from None
        return self.models

    def check_auth(self, resp) -> None:
        if resp.status_code in (401, 403):
            how = (f"set the right one with `repic server set-key {self.address.url}` or the "
                   f"{DEFAULT_API_KEY_ENV} variable")
            raise ServerConfigError(
                f"{self.address.url} refused the API key (HTTP {resp.status_code}): {how}" if self.key else
                f"{self.address.url} needs an API key (HTTP {resp.status_code}): {how}")


def pick_served_model(models: dict[str, dict], wanted: str | None, hint: str | None, url: str) -> str:
    if wanted is not None:
        if wanted not in models:
            raise ServerConfigError(f"{url} serves no model named {wanted!r} (it serves: {', '.join(models) or 'none'})")
        return wanted
    if hint in models:
        return hint
    if len(models) == 1:
        return next(iter(models))
    raise ServerConfigError(f"{url} serves several models ({', '.join(models)}): choose one with --served-model")


def model_provenance(server_url: str, served_model: str, entry: dict | None) -> dict[str, Any]:
    """What the server says produced a caption. vLLM lists a LoRA adapter as its own model whose `parent`
    is the base model; `repic serve` adds `revision` and `adapter`."""
    entry = entry or {}
    parent = entry.get("parent")
    adapter = entry.get("adapter") or (served_model if parent else None)
    source = entry.get("source") or parent or entry.get("root") or served_model
    return {"backend": "remote", "server": server_url, "served_model": served_model, "source": source,
            "revision": entry.get("revision"), "adapter": adapter, "root": entry.get("root")}


# ---- the backend ----------------------------------------------------------------------------------------

class _Pool:
    """The configured servers: least-busy live one first; a failed one sits out an exponential back-off
    (1, 2, 4 ... 30 s) and is tried again after it. `down_since` = when every server was last seen down."""

    def __init__(self, servers: list[_Server]):
        self.servers = servers
        self.lock = threading.Lock()
        self.down_since: float | None = None

    def acquire(self) -> _Server | None:
        now = time.monotonic()
        with self.lock:
            live = [s for s in self.servers if s.dead_until <= now]
            if not live:
                if self.down_since is None:
                    self.down_since = now
                return None
            s = min(live, key=lambda s: (s.in_flight, s.failures))
            s.in_flight += 1
            return s

    def release(self, s: _Server, ok: bool | None, problem: str | None = None, wait: float | None = None) -> None:
        with self.lock:
            s.in_flight -= 1
            if ok:
                s.failures, s.problem = 0, None
                self.down_since = None
            elif ok is False:
                s.failures += 1
                s.problem = problem
                backoff = wait if wait is not None else min(30.0, 2.0 ** (s.failures - 1))
                s.dead_until = time.monotonic() + backoff * (0.9 + 0.2 * random.random())
                if all(x.dead_until > time.monotonic() for x in self.servers) and self.down_since is None:
                    self.down_since = time.monotonic()

    def down_for(self) -> float:
        with self.lock:
            return 0.0 if self.down_since is None else time.monotonic() - self.down_since

    def describe_down(self) -> str:
        return "; ".join(f"{s.address.url}: {s.problem or 'not answering'}" for s in self.servers)


class _Stop(Exception):
    pass


class RemoteBackend:
    """The caption backend for OpenAI-compatible servers; same `caption()` contract as CaptionEngine."""

    kind = "remote"

    def __init__(self, options: RemoteOptions, *, max_new_tokens: int = 1024, min_new_tokens: int | None = None,
                 min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS, repetition_penalty: float | None = None,
                 model_hint: str | None = None, known_names: Sequence[str] = ()):
        if not options.servers:
            raise RemoteError("no server given")
        if options.in_flight < 1:
            raise RemoteError("requests in flight must be at least 1")
        addresses = []
        for raw in options.servers:
            a = ServerAddress.parse(raw, allow_http=options.allow_http)
            if a not in addresses:
                addresses.append(a)
        self.options = options
        self.max_new_tokens = max_new_tokens
        self.min_new_tokens = min_new_tokens
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.repetition_penalty = repetition_penalty
        self.model_hint = model_hint
        self.known_names = tuple(known_names)
        self.cancelled = False
        self._servers = [_Server(a, options) for a in addresses]
        self._pool = _Pool(self._servers)
        self._served: str | None = options.served_model
        self._ref_urls: dict[tuple, str] = {}
        self._ref_lock = threading.Lock()
        self._stop = threading.Event()

    # ---- what the UI shows ----
    @property
    def urls(self) -> list[str]:
        return [s.address.url for s in self._servers]

    def destination(self) -> str:
        return "server " + ", ".join(self.urls)

    def provenance(self) -> dict[str, Any]:
        """Job-level provenance (each caption's own names the server that made it)."""
        s = self._servers[0]
        entry = (s.models or {}).get(self._served or "")
        prov = model_provenance(s.address.url, self._served or "", entry)
        prov.update(servers=self.urls, max_pixels=self.max_pixels, repetition_penalty=self.repetition_penalty)
        return prov

    def close(self) -> None:
        self._stop.set()
        for s in self._servers:
            s.close()

    unload = close  # the CLI/GUI call unload() on engines when done

    # ---- connecting ----
    def connect(self) -> str:
        """List every server's models; pick the served model. A dead server is skipped (and retried
        during the run); ServerConfigError for a refused key or a missing model."""
        problems = []
        for s in self._servers:
            try:
                models = s.list_models()
            except ServerConfigError:
                raise
            except RemoteError as exc:
                problems.append(str(exc))
                self._pool.release(self._acquire_named(s), False, str(exc))
                continue
            except Exception as exc:  # httpx transport errors
                problem = _transport_problem(exc)
                problems.append(f"{s.address.url}: {problem}")
                self._pool.release(self._acquire_named(s), False, problem)
                continue
            self._served = pick_served_model(models, self._served, self.model_hint, s.address.url)
        if all(s.models is None for s in self._servers):
            raise ServersUnavailable("no server answered: " + "; ".join(problems))
        return self._served

    def _acquire_named(self, s: _Server) -> _Server:
        with self._pool.lock:
            s.in_flight += 1
        return s

    # ---- captioning ----
    def _image_url(self, ref: ImageRef, cache: bool) -> str:
        if not cache:
            return encode_image(ref, self.min_pixels, self.max_pixels)
        stamp = None
        if ref.content_hash is None:
            try:
                st = os.stat(ref.path)
                stamp = (st.st_mtime_ns, st.st_size)
            except OSError:
                pass
        key = (ref.key(), stamp)
        with self._ref_lock:
            url = self._ref_urls.get(key)
        if url is None:
            url = encode_image(ref, self.min_pixels, self.max_pixels)
            with self._ref_lock:
                if len(self._ref_urls) > 256:
                    self._ref_urls.clear()
                self._ref_urls[key] = url
        return url

    def body(self, prompt: CaptionPrompt) -> dict[str, Any]:
        query = prompt.query
        return request_body(prompt, lambda ref: self._image_url(ref, ref is not query),
                            model=self._served or self.model_hint or "", max_tokens=self.max_new_tokens,
                            repetition_penalty=self.repetition_penalty, min_tokens=self.min_new_tokens)

    def _timed_body(self, prompt: CaptionPrompt) -> tuple[dict[str, Any], float]:
        t0 = time.perf_counter()
        return self.body(prompt), time.perf_counter() - t0

    def _one(self, request, body_future: Future, cancel: Callable[[], bool]):
        from .engine import CaptionResult

        t0 = time.perf_counter()
        try:
            body, encode_seconds = body_future.result()
            t0 -= encode_seconds  # a photo's time includes reading and encoding its images
        except Exception as exc:
            if isinstance(exc, MemoryError):
                raise
            which = getattr(exc, "filename", None)
            return CaptionResult(request.key, None, f"this photo or a reference photo cannot be used"
                                 f"{f' ({which})' if which else ''}: {exc}", None, time.perf_counter() - t0, 0, 0)
        retries = 0
        while True:
            if self._stop.is_set() or cancel():
                raise _Stop()
            server = self._pool.acquire()
            if server is None:
                if self._pool.down_for() > self.options.patience:
                    raise ServersUnavailable(
                        f"no server has answered for {self.options.patience:.0f} s ({self._pool.describe_down()}); "
                        "the job is paused: resume it when the server is back")
                time.sleep(0.1)
                continue
            resp = self._post(server, body)
            if resp is None:
                continue
            if resp.status_code == 200:
                return self._completion(server, resp, request, t0)
            if resp.status_code in RETRY_STATUSES:
                retries += 1
                if retries > MAX_RETRIES_PER_PHOTO and resp.status_code != 429:
                    self._pool.release(server, None)
                    return CaptionResult(request.key, None, f"{server.address.url} failed on this photo "
                                         f"{retries} times (HTTP {resp.status_code}: {_error_text(resp)})", None,
                                         time.perf_counter() - t0, 0, 0)
                self._pool.release(server, False, f"busy or failing (HTTP {resp.status_code})", _retry_after(resp))
                continue
            return self._refused(server, resp, request, body, t0)

    def _post(self, server, body: dict):
        """The server's answer, or None after a transport error (the server is marked down)."""
        try:
            return server.client.post(server.address.api + "/chat/completions", json=body)
        except Exception as exc:
            import httpx

            if not isinstance(exc, httpx.TransportError):
                self._pool.release(server, None)
                raise
            self._pool.release(server, False, _transport_problem(exc))
            return None

    def _completion(self, server, resp, request, t0: float):
        """The caption from a 200 answer, with the serving model's provenance."""
        from .engine import CaptionResult

        try:
            data = resp.json()
            text = data["choices"][0]["message"]["content"] or ""
            usage = data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError):
            self._pool.release(server, None)
            return CaptionResult(request.key, None, f"{server.address.url} sent an answer that is not a "
                                 "chat completion", None, time.perf_counter() - t0, 0, 0)
        self._pool.release(server, True)
        served = data.get("model") or self._served or ""
        entry = (server.models or {}).get(served)
        res = CaptionResult(request.key, text, None,
                            parse_tags(text, request.prompt.expected_names(), self.known_names),
                            time.perf_counter() - t0, int(usage.get("prompt_tokens") or 0),
                            int(usage.get("completion_tokens") or 0))
        res.provenance = model_provenance(server.address.url, served, entry)
        return res

    def _refused(self, server, resp, request, body: dict, t0: float):
        """A refusal that retrying cannot fix: a job-wide configuration error (auth, unknown model, too few
        images per prompt allowed) raises; anything else is this photo's error."""
        from .engine import CaptionResult

        self._pool.release(server, None)
        server.check_auth(resp)
        message = _error_text(resp)
        if resp.status_code == 404 or (resp.status_code == 400 and "model" in message.lower()
                                       and ("exist" in message.lower() or "not found" in message.lower())):
            raise ServerConfigError(f"{server.address.url} does not serve the model {body['model']!r}: "
                                    f"choose another with --served-model ({message})")
        if _MM_LIMIT_RE.search(message):
            n = len(request.prompt.images())
            raise ServerConfigError(
                f"{server.address.url} refuses prompts with {n} images; start vLLM with "
                f"--limit-mm-per-prompt '{{\"image\": 8}}' ({message})")
        return CaptionResult(request.key, None, f"the server refused this photo (HTTP {resp.status_code}: "
                             f"{message})", None, time.perf_counter() - t0, 0, 0)

    def caption(self, requests: Sequence, *, progress=None, cancel: Callable[[], bool] | None = None,
                on_result=None) -> list:
        """Caption `requests` with up to `in_flight` of them at the servers at once. Results are handed
        to `on_result` on the calling thread (the job runner's library connection lives there). Raises
        ServerConfigError or ServersUnavailable after handing over every result it has."""
        requests = list(requests)
        cancel = cancel or (lambda: False)
        self.cancelled = False
        self._stop.clear()
        if self._served is None:
            self.connect()
        total = len(requests)
        results: list = []
        start = time.perf_counter()
        if progress is not None:
            progress(0, total, None, requests[0].key if requests else None)
        pool = ThreadPoolExecutor(self.options.in_flight, thread_name_prefix="caption-remote")
        # Images of the next photos are read, resized and PNG-encoded while earlier ones are at the server
        # (the local engine's prefetch, here): at one request in flight this hides the client's work.
        encoder = ThreadPoolExecutor(1, thread_name_prefix="caption-encode")
        ahead = self.options.in_flight + 1
        todo = list(reversed(requests))
        bodies: dict[int, Future] = {}
        running: dict[Future, Any] = {}
        error: BaseException | None = None

        def encode_ahead() -> None:
            for req in reversed(todo[-ahead:]):  # the next to go first
                if id(req) not in bodies:
                    bodies[id(req)] = encoder.submit(self._timed_body, req.prompt)

        try:
            while todo or running:
                if cancel():
                    self.cancelled = True
                    break
                while todo and len(running) < self.options.in_flight:
                    encode_ahead()
                    req = todo.pop()
                    running[pool.submit(self._one, req, bodies.pop(id(req)), cancel)] = req
                encode_ahead()
                done, _ = wait(list(running), timeout=0.1, return_when=FIRST_COMPLETED)
                for fut in done:
                    running.pop(fut)
                    try:
                        res = fut.result()
                    except _Stop:
                        continue
                    except RemoteError as exc:
                        error = error or exc
                        self._stop.set()
                        continue
                    results.append(res)
                    if on_result is not None:
                        on_result(res)
                    if progress is not None:
                        n = len(results)
                        elapsed = time.perf_counter() - start
                        progress(n, total, elapsed / n * (total - n), res.key)
                if error is not None and not running:
                    break
                if error is not None:
                    todo.clear()
        finally:
            self._stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            encoder.shutdown(wait=False, cancel_futures=True)
        if error is not None:
            raise error
        return results


# ---- connection test and prompt check ------------------------------------------------------------------

@dataclass
class ConnectionReport:
    url: str
    ok: bool
    lines: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "ok": self.ok, "lines": self.lines}


def _collapse_runs(ids: list[int], token: int | None) -> list[int]:
    """Image placeholders: vLLM may expand each to the image's visual-token count; compare one per image."""
    out: list[int] = []
    for t in ids:
        if token is not None and t == token and out and out[-1] == token:
            continue
        out.append(t)
    return out


def sample_prompt(folder) -> CaptionPrompt:
    """A RePIC prompt with one concept and two small images (written into `folder`)."""
    from pathlib import Path

    from PIL import Image

    from .prompt import PromptConcept

    folder = Path(folder)
    Image.new("RGB", (112, 112), (230, 170, 190)).save(folder / "reference.png")
    Image.new("RGB", (168, 112), (90, 140, 210)).save(folder / "query.png")
    concept = PromptConcept("Anya", "A girl with pink hair.", (ImageRef(str(folder / "reference.png")),))
    return CaptionPrompt((concept,), ImageRef(str(folder / "query.png")))


def prompt_check(backend: RemoteBackend, server: _Server, tokenizer: Any) -> str:
    """Compare the server's tokens for RePIC's chat (vLLM's /tokenize, chat form) with the local
    rendering; one line: the verdict or the first difference."""
    import tempfile

    from .prompt import render

    with tempfile.TemporaryDirectory() as tmp:
        prompt = sample_prompt(tmp)
        body = backend.body(prompt)
        resp = server.client.post(server.address.url + "/tokenize",
                                  json={"model": body["model"], "messages": body["messages"],
                                        "add_generation_prompt": True})
        if resp.status_code in (404, 405):
            return "prompt check: the server has no /tokenize (not vLLM?), so the prompt could not be compared"
        server.check_auth(resp)
        if resp.status_code != 200:
            return f"prompt check failed: /tokenize answered HTTP {resp.status_code}: {_error_text(resp)}"
        theirs = list(resp.json().get("tokens") or [])
        ours = tokenizer(render(prompt), add_special_tokens=False)["input_ids"]
    pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    a, b = _collapse_runs(list(ours), pad), _collapse_runs(theirs, pad)
    if a == b:
        return "prompt check: same prompt as RePIC"
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    show = lambda ids: repr(tokenizer.decode(ids[max(0, i - 3):i + 3]))  # noqa: E731
    return (f"prompt check: DIFFERENT from RePIC's at token {i}: RePIC has {show(a)}, the server has {show(b)} "
            f"({len(a)} vs {len(b)} tokens, image placeholders counted once)")


def test_connection(options: RemoteOptions, *, tokenizer: Any = None, model_hint: str | None = None) -> list[ConnectionReport]:
    """What `repic server test` and Settings' "Test connection" show, per server: reachable, key,
    models, the served model, and the prompt check (when a tokenizer of the model is on this computer)."""
    reports = []
    for raw in options.servers:
        try:
            one = RemoteBackend(RemoteOptions(**{**options.__dict__, "servers": [raw], "patience": 0}),
                                model_hint=model_hint)
        except RemoteError as exc:
            reports.append(ConnectionReport(strip_credentials(raw), False, [str(exc)]))
            continue
        s = one._servers[0]
        lines = []
        try:
            try:
                health = s.client.get(s.address.url + "/health")
                lines.append(f"reachable ({'healthy' if health.status_code == 200 else f'/health: HTTP {health.status_code}'})")
            except Exception as exc:
                import httpx

                if not isinstance(exc, httpx.TransportError):
                    raise
                reports.append(ConnectionReport(s.address.url, False,
                                                [f"{s.address.url} cannot be reached: {_transport_problem(exc)}"]))
                continue
            models = s.list_models()
            lines.append("API key: " + ("accepted" if s.key else "none needed"))
            lines.append("models: " + (", ".join(models) or "none"))
            served = pick_served_model(models, options.served_model, model_hint, s.address.url)
            one._served = served
            lines.append(f"photos will be captioned by {served!r}")
            if tokenizer is not None:
                lines.append(prompt_check(one, s, tokenizer))
            else:
                lines.append("prompt check skipped: the model's tokenizer is not on this computer")
            reports.append(ConnectionReport(s.address.url, True, lines))
        except RemoteError as exc:
            reports.append(ConnectionReport(s.address.url, False, lines + [str(exc)]))
        finally:
            one.close()
    return reports


test_connection.__test__ = False  # not a pytest test despite its name

"""Running durable captioning jobs (the store itself is core/jobs.py): each caption committed alone.

Why it is shaped like this:
- `complete_item` writes the caption row and marks the item done in ONE transaction, right when the
  engine finishes that photo. A kill -9 at any moment therefore loses at most the photo in flight, and
  a resumed job never captions a done photo twice (the item is done exactly when its caption exists).
- Items left 'running' by a killed process count as pending on resume: nothing is marked done until
  its caption is stored.
- The job stores its parameters (model, request, concepts mode, ...) so `--resume` (or the GUI on the
  next start) finishes it the same way it started.
- The runner reads photos and concepts from the library, never from a GUI model, so it can run in a
  worker thread with its own Library connection; it reports through plain callbacks.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..core.jobs import JobStore
from ..core.library import Library, LibraryError, now
from .prompt import PromptError, build_prompt
from ..core.errors import RepicError

if TYPE_CHECKING:
    from .engine import CaptionResult
    from .prompt import CaptionPrompt

# ------------------------------------------------------------------------------------------------------
# running a caption job
# ------------------------------------------------------------------------------------------------------

@dataclass
class CaptionOutcome:
    """One photo's outcome, as reported to the CLI/GUI."""
    photo_id: int
    caption: str | None = None
    caption_id: int | None = None
    error: str | None = None
    tags_found: list[str] = field(default_factory=list)
    tags_missing: list[str] = field(default_factory=list)
    tags_unknown: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = {"photo": self.photo_id, "caption": self.caption, "caption_id": self.caption_id,
             "tags_found": self.tags_found, "tags_missing": self.tags_missing, "tags_unknown": self.tags_unknown,
             "provenance": self.provenance}
        if self.error is not None:
            d["error"] = self.error
        return d


@dataclass
class RunSummary:
    job_id: int
    done: int = 0
    failed: int = 0
    remaining: int = 0
    cancelled: bool = False
    seconds: float = 0.0
    stopped: str | None = None  # why the backend stopped early (every server down, key refused): job paused

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


# What a caption job may ask for (the GUI's spin boxes use the same ranges).
BATCH_SIZE_RANGE = (1, 64)
MAX_NEW_TOKENS_RANGE = (1, 8192)
MAX_REFS_RANGE = (1, 8)


class JobParamsError(RepicError, ValueError):
    """A caption job's parameters cannot run; the message names the setting and the allowed values."""


def _whole_number_problem(what: str, value: Any, lo: int, hi: int) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        return f"{what} must be a whole number from {lo} to {hi} (got {value!r})"
    return None


def caption_job_problem(params: Any) -> str | None:
    """Why a caption job with these stored parameters cannot run, or None. Checked when a job is made
    (so a bad value never becomes a job) and again before one is resumed (a job stored by an older
    version, or edited by hand, fails with this reason instead of blocking every later resume)."""
    from .models import ModelSpec
    from .prompt import SYSTEM_PROMPTS

    if not isinstance(params, dict):
        return "its parameters are not an object"
    for what, key, (lo, hi) in (("batch size", "batch_size", BATCH_SIZE_RANGE),
                                ("max new tokens", "max_new_tokens", MAX_NEW_TOKENS_RANGE),
                                ("reference photos per concept", "max_refs", MAX_REFS_RANGE)):
        problem = _whole_number_problem(what, params.get(key), lo, hi)
        if problem:
            return problem
    min_new = params.get("min_new_tokens")
    if min_new is not None:
        problem = _whole_number_problem("min new tokens", min_new, 0, params["max_new_tokens"])
        if problem:
            return problem
    model = params.get("model")
    if not isinstance(model, dict):
        return "it names no model"
    try:
        spec = ModelSpec(**model)
    except (TypeError, ValueError) as exc:
        return f"its model settings are invalid: {exc}"
    if params.get("max_pixels") not in (None, spec.max_pixels):
        problem = _whole_number_problem("max pixels", params.get("max_pixels"), spec.min_pixels, spec.max_pixels)
        if problem:
            return problem
    request = params.get("request")
    if not isinstance(request, str) or not request.strip():
        return "it has no caption request"
    if params.get("system_preset") not in SYSTEM_PROMPTS:
        return f"unknown system preset {params.get('system_preset')!r} (known: {', '.join(SYSTEM_PROMPTS)})"
    concepts = params.get("concepts")
    if concepts is not None and not (isinstance(concepts, list) and all(isinstance(c, str) for c in concepts)):
        return "its concept list is not a list of names"
    backend = params.get("backend")
    if backend is not None:
        if not isinstance(backend, dict) or backend.get("kind") not in ("local", "remote"):
            return "its backend is neither local nor remote"
        servers = backend.get("servers")
        if backend["kind"] == "remote" and not (isinstance(servers, list) and servers
                                                 and all(isinstance(u, str) for u in servers)):
            return "it names no caption server"
    return None


def job_params(*, model: dict[str, Any], concepts: Sequence[str] | None, request: str, system_preset: str,
               max_refs: int, batch_size: int, max_pixels: int, max_new_tokens: int,
               min_new_tokens: int | None = None, backend: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything needed to resume a job exactly as it started; JobParamsError when it could not run.
    `backend`: None (this computer) or {"kind": "remote", "servers": [URL...], "served_model": NAME|None}
    (URLs without credentials: a key never goes into a job)."""
    params = {"model": model, "concepts": list(concepts) if concepts else None, "request": request,
              "system_preset": system_preset, "max_refs": max_refs, "batch_size": batch_size,
              "max_pixels": max_pixels, "max_new_tokens": max_new_tokens, "min_new_tokens": min_new_tokens}
    if backend is not None:
        params["backend"] = backend
    problem = caption_job_problem(params)
    if problem:
        raise JobParamsError(problem)
    return params


def resumable_jobs(store: JobStore) -> tuple[list, list[tuple[Any, str]]]:
    """The unfinished caption jobs that can run (newest first), and those that cannot, each with its reason.
    The unrunnable ones are marked failed with that reason, so they stop being offered for resume."""
    runnable, failed = [], []
    for job in store.unfinished():
        problem = caption_job_problem(job.params)
        if problem is None:
            runnable.append(job)
            continue
        reason = f"this job's settings cannot run: {problem}"
        store.set_status(job.id, "failed", reason)
        failed.append((job, reason))
    return runnable, failed


def job_prompt(library: Library, params: dict[str, Any], photo_id: int) -> "CaptionPrompt":
    """The prompt a caption job with these stored parameters sends for one photo (`repic prompt` shows
    this same prompt: app/caption_jobs.py)."""
    # Jobs fix each photo's own names (retrieval order) when they are made: app/caption_jobs.py.
    auto_names = (params.get("photo_concepts") or {}).get(str(photo_id))
    names = auto_names or params.get("concepts")
    prompt = build_prompt(library, photo_id, names=names, max_refs=params.get("max_refs", 1),
                          request=params["request"], system_preset=params["system_preset"])
    if auto_names:
        # build_prompt puts names in library order (RePIC's skip-retrieval); retrieved concepts
        # are numbered closest match first, as RePIC's retriever does.
        rank = {n.casefold(): i for i, n in enumerate(auto_names)}
        prompt = dataclasses.replace(prompt, concepts=tuple(sorted(
            prompt.concepts, key=lambda c: rank.get(c.name.casefold(), len(rank)))))
    return prompt


def run_caption_job(library: Library, job_id: int, engine, *, model_provenance: dict[str, Any],
                    progress: Callable[[int, int, float | None, int | None], None] | None = None,
                    cancel: Callable[[], bool] | None = None,
                    on_outcome: Callable[[CaptionOutcome], None] | None = None) -> RunSummary:
    """Caption a job's pending photos with `engine` (a CaptionEngine or any backends.CaptionBackend),
    committing each caption as soon as it is made. Returns when the job is finished or cancelled; a
    cancelled job is left 'paused', and so is one whose backend stopped (every server down, a refused
    key): then `summary.stopped` and the job's error say why."""
    from .engine import CaptionRequest
    from .remote import RemoteError

    store = JobStore(library)
    job = store.get(job_id)
    p = job.params
    started = time.perf_counter()
    store.set_status(job_id, "running")
    summary = RunSummary(job_id)
    known = [c.name for c in library.concepts.all()]
    requests, meta = [], {}
    for pid in store.pending_photo_ids(job_id):
        try:
            photo = library.photos.get(pid)
            if photo.status != "ok":
                raise PromptError("the photo's file is missing (moved or deleted outside the library?)")
            prompt = job_prompt(library, p, pid)
        except (PromptError, LibraryError) as exc:
            store.fail_item(job_id, pid, str(exc))
            summary.failed += 1
            if on_outcome:
                on_outcome(CaptionOutcome(pid, error=str(exc)))
            continue
        concept_ids = [library.concepts.get(c.name).id for c in prompt.concepts]
        meta[pid] = (prompt, concept_ids)
        requests.append(CaptionRequest(pid, prompt))

    def commit(result: "CaptionResult") -> None:
        pid = result.key
        prompt, concept_ids = meta[pid]
        if result.error is not None:
            store.fail_item(job_id, pid, result.error)
            summary.failed += 1
            outcome = CaptionOutcome(pid, error=result.error)
        else:
            prov = dict(model_provenance)
            prov.update(getattr(result, "provenance", None) or {})  # several servers: the one that made this caption
            prov.update(request=prompt.request, system_preset=p["system_preset"], prompt_hash=prompt.prompt_hash(),
                        concept_ids=concept_ids, concepts=prompt.expected_names(), max_refs=p.get("max_refs", 1),
                        seconds=round(result.seconds, 3), prompt_tokens=result.prompt_tokens,
                        new_tokens=result.new_tokens, created_at=now(), job_id=job_id)
            tags = result.tags
            cid = store.complete_item(job_id, pid, result.caption, tags=tags.found, concept_set=prompt.expected_names(),
                                      provenance=prov, model_id=prov.get("source"),
                                      model_revision=prov.get("revision"),
                                      adapter_id=prov.get("adapter"), prompt_hash=prompt.prompt_hash())
            summary.done += 1
            outcome = CaptionOutcome(pid, result.caption, cid, None, tags.found, tags.missing, tags.unknown, prov)
        if on_outcome:
            on_outcome(outcome)

    if requests:
        engine.known_names = tuple(known)
        try:
            engine.caption(requests, progress=progress, cancel=cancel, on_result=commit)
        except RemoteError as exc:  # backends.BackendStopped: every caption made so far is committed
            summary.stopped = str(exc)
    summary.cancelled = bool(cancel and cancel())
    summary.remaining = len(store.pending_photo_ids(job_id))
    summary.seconds = time.perf_counter() - started
    store.set_status(job_id, "done" if summary.remaining == 0 else "paused",
                     summary.stopped if summary.remaining else None)
    return summary

"""Which caption job a selection makes: the one place `repic caption`, `repic prompt` and the GUI's caption
dialog turn (library, settings, photos, the user's choices) into stored job parameters.

Why it exists: both fronts used to build jobs themselves and drifted (user presets honoured in one, a
different skip rule, a hard-coded max_refs, suggestion options read two ways), and `repic prompt` built
its prompt a third way, so it could show another prompt than the job sent. Now:
- `CaptionOptions` is what a front may choose; every field left None comes from Settings.
- `plan_caption_job` validates everything (a RepicError whose message is for the user) and decides which
  photos to caption; nothing is written. `create_caption_job` stores the plan (the CLI loads the model
  in between, so a model that cannot load leaves no job behind).
- "Each photo's own people & pets" fixes every photo's names when the job is made (confirmed tags, and
  strong pending suggestions when the settings or the options allow), so a resumed job captions with the
  same names even if tags or suggestions change meanwhile.
- `plan_prompt` is `repic prompt`: the same options and settings, planned for one photo, rendered by
  `captioning.jobs.job_prompt`, which is also what the job runner sends.
Plain Python: no Qt, no torch (the heavy modules are imported inside the functions).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..core.errors import UserError

if TYPE_CHECKING:
    from ..captioning.models import ModelSpec
    from ..captioning.prompt import CaptionPrompt
    from ..core.library import Library
    from ..core.settings import Settings

@dataclass(frozen=True)
class CaptionOptions:
    """What a front chose for a caption job; None = the user's settings (or RePIC's default)."""
    concepts: Sequence[str] | None = None     # the same names for every photo; None = each photo's own
    request: str | None = None                # free request text (wins over any preset)
    request_preset: str | None = None         # a built-in or user preset name
    system_preset: str | None = None
    max_refs: int | None = None
    batch_size: int | None = None
    max_new_tokens: int | None = None
    min_new_tokens: int | None = None
    # model overrides (`repic caption --model/--adapter/--quant/--device/--max-pixels`)
    model: str | None = None
    adapter: str | None = None                # a folder or a registered adapter name
    quantization: str | None = None
    device: str | None = None
    max_pixels: int | None = None
    # "each photo's own": suggestion options (Settings → Suggestions unless given)
    include_suggestions: bool | None = None
    threshold: float | None = None
    top_k: int | None = None
    skip_captioned: bool = True               # leave out photos that already have a caption
    title: str | None = None                  # shown in the GUI's queue ("Regenerate IMG_1.jpg")
    # where the photos go: None = the default server from Settings, if any (else this computer)
    servers: Sequence[str] | None = None      # `repic caption --server URL…`
    local: bool = False                       # `--local`: this computer even when Settings name a server
    served_model: str | None = None
    in_flight: int | None = None
    allow_http: bool = False                  # plain http to another computer, explicitly allowed


@dataclass
class CaptionJobPlan:
    params: dict[str, Any]                    # what JobStore stores (and a resumed job runs with)
    photo_ids: list[int]                      # to caption, in the order given, no duplicates
    skipped: list[int] = field(default_factory=list)   # already captioned, left out (skip_captioned)
    spec: "ModelSpec | None" = None

    @property
    def empty(self) -> bool:
        return not self.photo_ids


def request_presets(settings: "Settings") -> dict[str, str]:
    """Every request preset this user has (built-in ones, then their own)."""
    from ..captioning.prompt import request_presets as merge

    return merge(settings.caption_default("request_presets"))


def suggestion_options(settings: "Settings", *, include: bool | None = None, threshold: float | None = None,
                       top_k: int | None = None) -> dict[str, Any]:
    """What "each photo's own people & pets" adds from suggestions: Settings → Suggestions, where the
    caller gives no value of its own. Stored values of the wrong type count as unset."""
    from ..retrieval.config import retrieval_settings, stored_top_k

    cfg = retrieval_settings(settings)
    if include is None:
        include = cfg.get("auto_include_suggestions") is True
    if threshold is None:
        t = cfg.get("threshold")
        threshold = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None
    if top_k is None:
        top_k = stored_top_k(cfg)
    return {"include_suggestions": bool(include), "threshold": threshold, "top_k": top_k}


def demo_model_dir() -> Path:
    """Where the app builds its demo model (the user's data dir; rebuilt on demand)."""
    from ..core import paths

    return paths.data_dir() / "demo-model"


def spec_label(spec: "ModelSpec") -> str:
    """A short, human name for a ModelSpec ("RePIC 7B, 4-bit", "Demo model (captions are noise)")."""
    from ..captioning.demo_model import is_demo_model
    from ..core.settings import DEFAULT_MODEL_SOURCE

    src = spec.source
    if Path(src).expanduser() == demo_model_dir() or is_demo_model(Path(src).expanduser()):
        text = "Demo model (captions are noise)"
    elif src == DEFAULT_MODEL_SOURCE:
        text = "RePIC 7B"
    elif spec.is_local():
        text = Path(src).expanduser().name or src
    else:
        text = src
    if spec.adapter:
        text += f" + {Path(spec.adapter).name or spec.adapter}"
    if spec.quantization != "none":
        text += f", {spec.quantization.replace('bit', '-bit')}"
    return text


def where_label(backend: dict[str, Any] | None, spec: "ModelSpec") -> str:
    """The model's name and where the photos go: what the caption dialog and the queue show."""
    if backend and backend.get("kind") == "remote":
        return f"{spec_label(spec)} on server {', '.join(backend['servers'])} (photos are sent there)"
    return spec_label(spec) + " on this computer"


def backend_choice(settings: "Settings", options: CaptionOptions = CaptionOptions(), *,
                   stored: dict[str, Any] | None = None, resume: bool = False) -> dict[str, Any] | None:
    """Where a job's photos go: the given servers, else (resume) the job's own, else the default server from
    Settings; None = this computer (also with `local`). URLs are stored without credentials, never a key.
    Raises RemoteError (a RepicError) for an address that cannot be used."""
    from ..captioning.remote import ServerAddress, server_settings

    if options.local:
        if options.servers:
            raise UserError("--local and --server contradict each other")
        return None
    prefs = server_settings(settings)
    if resume:  # a job goes on where it started unless told otherwise
        urls = list(options.servers or (stored or {}).get("servers") or [])
    else:
        urls = list(options.servers or ([prefs["url"]] if prefs["url"] else []))
    if not urls:
        given = [o for o, v in (("--served-model", options.served_model), ("--in-flight", options.in_flight))
                 if v is not None]
        if given:
            raise UserError(f"{given[0]} applies to a caption server: give --server URL (or set one in Settings)")
        return None
    allow_http = bool(options.allow_http or prefs["allow_http"] or (stored or {}).get("allow_http"))
    backend: dict[str, Any] = {
        "kind": "remote", "servers": [ServerAddress.parse(u, allow_http=allow_http).url for u in urls],
        "served_model": options.served_model or (stored or {}).get("served_model") or prefs["served_model"]}
    in_flight = options.in_flight or (stored or {}).get("in_flight") or (None if options.servers else prefs["in_flight"])
    if in_flight:
        backend["in_flight"] = int(in_flight)
    if allow_http:
        backend["allow_http"] = True
    return backend


def model_spec(library: "Library", settings: "Settings", options: CaptionOptions = CaptionOptions()) -> "ModelSpec":
    """The model the job will use: the settings (this library's active adapter) with the options' overrides."""
    from ..captioning.jobs import JobParamsError
    from ..captioning.models import ModelSpec, resolve_adapter_source

    # a folder, or the name of an adapter repic-train registered in this library (ModelLoadError otherwise)
    adapter = resolve_adapter_source(options.adapter, library)
    overrides = {k: v for k, v in dict(source=options.model, adapter=adapter, quantization=options.quantization,
                                       device=options.device, max_pixels=options.max_pixels).items()
                 if v is not None}
    try:
        return ModelSpec.from_user_settings(settings, library, **overrides)
    except ValueError as exc:  # the spec's own checks: say which setting, as one line
        raise JobParamsError(str(exc)) from None


def _prompt_params(library: "Library", settings: "Settings", options: CaptionOptions) -> dict[str, Any]:
    """The parameters that decide the prompt (concepts, request, system preset, max_refs)."""
    from ..captioning.prompt import resolve_request

    if options.request is not None:  # an explicit request wins over the user's default preset
        preset = options.request_preset
    else:
        preset = options.request_preset or settings.caption_default("request_preset")
    request = resolve_request(options.request, preset, settings.caption_default("request_presets"))
    concepts = list(dict.fromkeys(options.concepts)) if options.concepts else None
    for name in concepts or []:
        library.concepts.get(name)  # a typo fails now (NotFound), not after the model has loaded
    max_refs = options.max_refs if options.max_refs is not None else settings.caption_default("max_refs")
    return {"concepts": concepts, "request": request,
            "request_preset": preset if options.request is None else None,
            "system_preset": options.system_preset or settings.caption_default("system_preset"),
            "max_refs": max_refs}


def _check_suggestion_options(options: CaptionOptions) -> None:
    if options.concepts and (options.include_suggestions or options.threshold is not None
                             or options.top_k is not None):
        raise UserError("suggestion options apply to each photo's own people & pets: "
                        "do not combine them with chosen concepts")


def _own_concepts(library: "Library", settings: "Settings", options: CaptionOptions,
                  photo_ids: Sequence[int]) -> dict[str, Any]:
    from ..retrieval.service import auto_params

    opts = suggestion_options(settings, include=options.include_suggestions, threshold=options.threshold,
                              top_k=options.top_k)
    return auto_params(library, photo_ids, **opts)


def plan_caption_job(library: "Library", settings: "Settings", photo_ids: Sequence[int],
                     options: CaptionOptions = CaptionOptions()) -> CaptionJobPlan:
    """Validate the options against the settings and decide which photos to caption; writes nothing.
    Raises a RepicError (JobParamsError, PromptError, NotFound, ModelError, UserError) with a message
    for the user; a bad value never becomes a job."""
    from ..captioning.jobs import job_params

    _check_suggestion_options(options)
    ids = list(dict.fromkeys(int(i) for i in photo_ids))  # ids the library gave (the CLI resolves its own)
    spec = model_spec(library, settings, options)
    prompt = _prompt_params(library, settings, options)
    batch_size = options.batch_size if options.batch_size is not None else settings.caption_default("batch_size")
    max_new_tokens = (options.max_new_tokens if options.max_new_tokens is not None
                      else settings.caption_default("max_new_tokens"))
    # JobParamsError names the setting or option; `is None` above, not `or`: an explicit 0 is reported
    params = job_params(model=dataclasses.asdict(spec), concepts=prompt["concepts"], request=prompt["request"],
                        system_preset=prompt["system_preset"], max_refs=prompt["max_refs"],
                        batch_size=batch_size, max_pixels=spec.max_pixels, max_new_tokens=max_new_tokens,
                        min_new_tokens=options.min_new_tokens, backend=backend_choice(settings, options))
    skipped: list[int] = []
    if options.skip_captioned and ids:
        done = library.captions.captioned_photo_ids(ids)
        skipped = [i for i in ids if i in done]
        ids = [i for i in ids if i not in done]
    if prompt["concepts"] is None and ids:
        params.update(_own_concepts(library, settings, options, ids))
    # labels for the job queue (the GUI's dock shows jobs made by either front)
    params["gui"] = {"preset": prompt["request_preset"], "title": options.title,
                     "model_label": where_label(params.get("backend"), spec)}
    return CaptionJobPlan(params=params, photo_ids=ids, skipped=skipped, spec=spec)


def create_caption_job(library: "Library", plan: CaptionJobPlan):
    """Store the planned job (one transaction) and return it (`core.jobs.Job`)."""
    from ..core.jobs import JobStore

    if plan.empty:
        raise UserError("nothing to caption")
    return JobStore(library).create(plan.photo_ids, plan.params)


def plan_prompt(library: "Library", settings: "Settings", photo_id: int,
                options: CaptionOptions = CaptionOptions(), *, style: str = "eval") -> "CaptionPrompt":
    """The prompt a caption job planned with these options and settings sends for this photo (what
    `repic prompt` shows). No model is resolved: a prompt can be inspected before any model is there."""
    from ..captioning.jobs import job_prompt
    from ..captioning.prompt import REFERENCE_STYLES

    _check_suggestion_options(options)
    library.photos.get(photo_id)
    params = _prompt_params(library, settings, options)
    if params["concepts"] is None:
        params.update(_own_concepts(library, settings, options, [photo_id]))
    prompt = job_prompt(library, params, photo_id)
    if style != "eval":
        if style not in REFERENCE_STYLES:
            raise UserError(f"unknown reference style {style!r} (choose from {', '.join(REFERENCE_STYLES)})")
        prompt = dataclasses.replace(prompt, style=style)
    return prompt

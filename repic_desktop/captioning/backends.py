"""Where captions are made: the local engine or an OpenAI-compatible server, behind one interface.

The durable job runner (jobs.run_caption_job), the CLI and the GUI queue talk to a `CaptionBackend`:

    backend.caption(requests, progress=, cancel=, on_result=)   # CaptionEngine's own contract
    backend.known_names                                        # set by the runner for tag parsing
    backend.provenance() -> dict                               # what made the captions (no secrets)
    backend.destination() -> str                               # where the photos go, for the UI
    backend.unload()                                           # free the model / close connections

`CaptionEngine` already is the local backend's engine; `LocalBackend` only adds the provenance and the
destination, so nothing about batching, reference reuse or OOM back-off changes. The remote backend is
remote.RemoteBackend. A backend that cannot go on (every server down, a refused key) raises
`BackendStopped` from caption() after handing over every finished result; the runner pauses the job with
that sentence as its reason, and `--resume` (or the GUI) continues it.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

from .remote import RemoteError as BackendStopped  # noqa: F401  (the one exception the runner handles)


class CaptionBackend(Protocol):
    known_names: tuple[str, ...]
    cancelled: bool

    def caption(self, requests: Sequence, *, progress: Callable | None = None, cancel: Callable[[], bool] | None = None,
                on_result: Callable | None = None) -> list: ...

    def provenance(self) -> dict[str, Any]: ...

    def destination(self) -> str: ...

    def unload(self) -> None: ...


class LocalBackend:
    """The local CaptionEngine with its model's provenance."""

    kind = "local"

    def __init__(self, engine, loaded):
        self.engine = engine
        self.loaded = loaded

    @classmethod
    def from_loaded(cls, loaded, **engine_kwargs) -> "LocalBackend":
        from .engine import CaptionEngine

        return cls(CaptionEngine.from_loaded(loaded, **engine_kwargs), loaded)

    @property
    def known_names(self) -> tuple[str, ...]:
        return self.engine.known_names

    @known_names.setter
    def known_names(self, names) -> None:
        self.engine.known_names = tuple(names)

    @property
    def cancelled(self) -> bool:
        return self.engine.cancelled

    @property
    def stats(self):
        return self.engine.stats

    def caption(self, requests, *, progress=None, cancel=None, on_result=None) -> list:
        return self.engine.caption(requests, progress=progress, cancel=cancel, on_result=on_result)

    def provenance(self) -> dict[str, Any]:
        return {"backend": "local", **self.loaded.provenance()}

    def destination(self) -> str:
        return "this computer"

    def unload(self) -> None:
        self.engine.unload()


def remote_backend_for_job(params: dict[str, Any], *, servers: Sequence[str] | None = None,
                           served_model: str | None = None, settings: Any = None, **overrides: Any):
    """The RemoteBackend a job's stored parameters ask for (servers from the job unless given)."""
    from .models import ModelSpec
    from .remote import RemoteBackend, RemoteOptions, repetition_penalty_for, server_settings

    stored = params.get("backend") or {}
    prefs = server_settings(settings) if settings is not None else {}
    urls = list(servers or stored.get("servers") or ([prefs["url"]] if prefs.get("url") else []))
    spec = ModelSpec(**params["model"])
    options = RemoteOptions(
        servers=urls, served_model=served_model or stored.get("served_model") or prefs.get("served_model"),
        in_flight=overrides.pop("in_flight", None) or stored.get("in_flight") or prefs.get("in_flight") or 8,
        api_key_env=overrides.pop("api_key_env", None) or prefs.get("api_key_env"),
        ca_file=overrides.pop("ca_file", None) or prefs.get("ca_file"),
        allow_http=bool(overrides.pop("allow_http", False) or stored.get("allow_http") or prefs.get("allow_http")),
        **overrides)
    return RemoteBackend(options, max_new_tokens=params["max_new_tokens"], min_new_tokens=params.get("min_new_tokens"),
                         min_pixels=spec.min_pixels, max_pixels=params.get("max_pixels") or spec.max_pixels,
                         repetition_penalty=repetition_penalty_for(spec), model_hint=spec.source)

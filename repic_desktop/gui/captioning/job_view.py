"""What the queue and the caption dialog show about a caption job: the JobView kept on the GUI thread, and
the labels for its request, people & pets and model.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ...app.caption_jobs import backend_choice, where_label as _where_label
from ...core.errors import RepicError
from ...app.caption_jobs import spec_label


@dataclass
class JobView:
    """What the GUI shows about a job (kept on the GUI thread, fed by the worker's signals)."""
    id: int
    title: str
    detail: str
    total: int
    processed: int = 0             # done + failed
    failed: int = 0
    status: str = "queued"
    message: str = ""
    eta: float = -1.0              # seconds left when last reported, -1 = unknown
    eta_at: float = 0.0            # time.monotonic() of that report
    current: str = ""              # file being captioned
    errors: list[tuple[str, str]] = field(default_factory=list)   # (file name, reason)
    from_previous_run: bool = False
    run_started: float | None = None
    run_base: int = 0

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.processed)

    @property
    def rate(self) -> float | None:
        """Photos per minute in the current run (None until the first photo is done)."""
        if self.run_started is None:
            return None
        n = self.processed - self.run_base
        elapsed = time.monotonic() - self.run_started
        return n / elapsed * 60 if n > 0 and elapsed > 0 else None

    @property
    def seconds_left(self) -> float | None:
        """The engine's estimate, counted down since it was made."""
        if self.eta < 0:
            return None
        return max(0.0, self.eta - (time.monotonic() - self.eta_at))

    @property
    def active(self) -> bool:
        return self.status in ("queued", "starting", "running", "stopping")


def _preset_name(request: str) -> str:
    from ...captioning.prompt import REQUEST_PRESETS

    for name, text in REQUEST_PRESETS.items():
        if text == request:
            return name
    return request if len(request) <= 40 else request[:38].rsplit(" ", 1)[0] + "…"


def own_concepts_text(auto: dict[str, Any] | None) -> str:
    text = "each photo's own people & pets"
    if auto and auto.get("include_suggestions"):
        thr = auto.get("threshold")
        text += f" + suggestions above {thr:g}" if thr is not None else " + pending suggestions"
    return text


def job_view(job, errors: list[tuple[str, str]] | None = None) -> JobView:
    """A JobView for a stored `jobs.Job` (made by the GUI or by `repic caption`)."""
    p = job.params or {}
    gui = p.get("gui") or {}
    n = job.total
    title = gui.get("title") or f"Job {job.id}: {n} photo" + ("s" if n != 1 else "")
    parts = [gui.get("preset") or _preset_name(p.get("request") or "")]
    concepts = p.get("concepts")
    parts.append(own_concepts_text(p.get("auto")) if not concepts else ", ".join(f"<{c}>" for c in concepts))
    parts.append(f"batch {p.get('batch_size', '?')}")
    if gui.get("model_label"):
        parts.append(gui["model_label"])
    elif isinstance(p.get("model"), dict):
        try:
            from ...captioning.models import ModelSpec

            parts.append(spec_label(ModelSpec(**p["model"])))
        except Exception:
            pass
    counts = job.counts
    return JobView(id=job.id, title=title, detail=" · ".join(x for x in parts if x), total=n,
                   processed=counts.get("done", 0) + counts.get("failed", 0), failed=counts.get("failed", 0),
                   status={"running": "interrupted", "queued": "interrupted"}.get(job.status, job.status),
                   message=job.error or "", errors=list(errors or []))


def where_label(settings, spec) -> str:
    """The model and where the photos go, as the caption dialog and the queue say it (app layer's rule)."""
    try:
        return _where_label(backend_choice(settings), spec)
    except RepicError as exc:  # a server address in Settings that cannot be used: say so, the job will too
        return f"{_where_label(None, spec)} (server setting not usable: {exc})"

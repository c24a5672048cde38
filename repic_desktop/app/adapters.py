"""The one reader of a trained adapter's manifest (trainer/train.py writes it; the library keeps a copy).

Why one reader: `repic status`, `repic-train adapters list/activate` and the Personalize page each read
"flagged" and the before/after metrics; older runs kept the metrics under other keys, so every reader
has to look in the same places or the fronts disagree about whether an adapter helped."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AdapterManifest:
    flagged: bool                 # did not beat the base model on the held-out photos (or was not scored)
    improved: bool
    before: dict | None           # held-out metrics of the base model
    after: dict | None            # ... and with the adapter
    metrics: dict = field(default_factory=dict)
    concepts: list = field(default_factory=list)
    created: str | None = None


def read_manifest(manifest: Any) -> AdapterManifest:
    m = manifest if isinstance(manifest, dict) else {}

    def pick(key: str) -> dict | None:
        # trainer/train.py writes metrics.before/after; earlier versions used the top level, "eval" or
        # "evaluation"
        for holder in (m, m.get("eval"), m.get("metrics"), m.get("evaluation")):
            if isinstance(holder, dict) and isinstance(holder.get(key), dict):
                return holder[key]
        return None

    metrics = m.get("metrics")
    concepts = m.get("concepts")
    return AdapterManifest(flagged=m.get("flagged") is True, improved=m.get("improved") is True,
                           before=pick("before"), after=pick("after"),
                           metrics=metrics if isinstance(metrics, dict) else {},
                           concepts=concepts if isinstance(concepts, list) else [],
                           created=m.get("created") if isinstance(m.get("created"), str) else None)

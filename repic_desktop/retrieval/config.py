"""The retrieval settings (Settings.extra["retrieval"]) and the top-K and threshold a suggestion run uses."""
from __future__ import annotations

from typing import Any

from .registry import DEFAULT_MATCHER

def retrieval_settings(settings=None) -> dict[str, Any]:
    """Settings.extra["retrieval"]: clip_dir, dino_dir, detector_dir, default_matcher,
    auto_include_suggestions, threshold, top_k."""
    if settings is None:
        from ..core.settings import Settings

        settings = Settings.load()
    value = (getattr(settings, "extra", None) or {}).get("retrieval") or {}
    return dict(value) if isinstance(value, dict) else {}


def stored_top_k(cfg: dict[str, Any]) -> int | None:
    """Settings' "top_k" when it is a positive whole number; anything else stored there counts as unset."""
    k = cfg.get("top_k")
    return k if isinstance(k, int) and not isinstance(k, bool) and k > 0 else None


def match_params(matcher, *, top_k: int | None = None, threshold: float | None = None,
                 settings=None) -> tuple[int | None, float | None]:
    """The top-K and threshold a suggestion run uses when the caller gives none: Settings' "top_k" and
    "threshold" (0 or unset = the matcher's own). The one threshold in Settings is a cosine for the
    default matcher (Settings' default_matcher, else dlib-faces): other matchers keep their own."""
    if top_k is None or threshold is None:
        cfg = retrieval_settings(settings)
        if top_k is None:
            top_k = stored_top_k(cfg)
        if threshold is None:
            t = cfg.get("threshold")
            default = cfg.get("default_matcher") or DEFAULT_MATCHER
            if (isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t <= 1
                    and getattr(matcher, "id", None) == default):
                threshold = float(t)
    return top_k, threshold


__all__ = ["match_params", "retrieval_settings", "stored_top_k"]

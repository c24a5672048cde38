"""Held-out scoring: greedy captions of the held-out photos with the app's caption engine, scored with
RePIC's name precision/recall/F1 (captioning.evaluate), before and after training."""
from __future__ import annotations

from typing import Any, Callable

from .dataset import HeldOut
from .events import Cancelled

def evaluate_heldout(model, processor, heldout: list[HeldOut], *, max_new_tokens: int, batch_size: int = 4,
                     min_pixels: int, max_pixels: int, generation_kwargs: dict[str, Any] | None = None,
                     rule: str = "name-aware", should_stop: Callable[[], bool] | None = None
                     ) -> tuple[dict[str, Any], list[str]]:
    """Greedy captions of the held-out photos and RePIC's name precision/recall/F1 over them.
    `should_stop` is asked before each batch of `batch_size` photos; when true, `Cancelled` is raised."""
    import torch

    from repic_desktop.captioning.engine import CaptionEngine, CaptionRequest
    from repic_desktop.captioning.evaluate import Sample, evaluate_samples

    if not heldout:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "n": 0}, []
    was_training = model.training
    model.eval()
    try:
        engine = CaptionEngine(model, processor, generation_kwargs=generation_kwargs, batch_size=batch_size,
                               max_new_tokens=max_new_tokens, min_pixels=min_pixels, max_pixels=max_pixels,
                               prefetch=False)
        results = []
        step = max(1, batch_size)
        with torch.no_grad():
            for i in range(0, len(heldout), step):
                if should_stop is not None and should_stop():
                    raise Cancelled()
                results.extend(engine.caption([CaptionRequest(h.photo_id, h.prompt) for h in heldout[i:i + step]]))
        engine.clear_cache()
    finally:
        if was_training:
            model.train()
    by_key = {r.key: r for r in results}
    captions = [(by_key[h.photo_id].caption or "") if h.photo_id in by_key else "" for h in heldout]
    samples = [Sample(str(h.photo_id), [f"<{n}>" for n in h.concepts], c, photo_id=h.photo_id)
               for h, c in zip(heldout, captions)]
    res = evaluate_samples(samples, rule)
    return {"precision": res.precision, "recall": res.recall, "f1": res.f1, "n": len(samples)}, captions

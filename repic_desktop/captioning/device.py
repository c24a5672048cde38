"""What compute this machine offers for captioning and training (torch imported inside: it takes seconds).

The one probe: `repic status`, the About dialog and the GUI's model worker all read `device_summary()`;
the GUI builds its own wording from the same fields (gui/captioning/model_worker.gpu_text)."""
from __future__ import annotations

from typing import Any


def device_summary() -> dict[str, Any]:
    """{"torch": version or None, "cuda": bool, "devices": [{"index", "name", "total_gb"}], "gpus": [names],
    "error": a user-facing line when torch is unusable, else None, "summary": one plain sentence}."""
    info: dict[str, Any] = {"torch": None, "cuda": False, "devices": [], "gpus": [], "error": None}
    # Imported here: torch takes seconds to import and nothing else in the CLI's library commands needs it.
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["cuda"] = True
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                info["devices"].append({"index": i, "name": p.name, "total_gb": round(p.total_memory / 1e9, 1)})
    except Exception as exc:  # a broken torch install must not break `repic status` or take the app down
        from ..core.errors import user_message

        info["error"] = user_message(exc)
        info["summary"] = f"PyTorch not usable ({exc.__class__.__name__})"
        return info
    info["gpus"] = [d["name"] for d in info["devices"]]
    if info["cuda"]:
        info["summary"] = f"CUDA GPU: {', '.join(info['gpus'])} (torch {info['torch']})"
    else:
        info["summary"] = (f"no NVIDIA GPU found: captioning runs on the CPU (slow) or with the demo model "
                           f"(torch {info['torch']})")
    return info

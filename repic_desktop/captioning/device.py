"""What compute this machine offers for captioning and training (torch imported inside: it takes seconds)."""
from __future__ import annotations

from typing import Any


def device_summary() -> dict[str, Any]:
    # Imported here: torch takes seconds to import and nothing else in the CLI's library commands needs it.
    try:
        import torch
    except Exception as exc:  # a broken torch install must not break `repic status`
        return {"torch": None, "cuda": False, "summary": f"PyTorch not usable ({exc.__class__.__name__})"}
    info: dict[str, Any] = {"torch": torch.__version__, "cuda": bool(torch.cuda.is_available())}
    if info["cuda"]:
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["gpus"] = names
        info["summary"] = f"CUDA GPU: {', '.join(names)} (torch {torch.__version__})"
    else:
        info["summary"] = (f"no NVIDIA GPU found: captioning runs on the CPU (slow) or with the demo model "
                           f"(torch {torch.__version__})")
    return info

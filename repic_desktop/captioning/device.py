"""What compute this machine offers for captioning and training (torch imported inside: it takes seconds).

The one probe: `repic status`, the About dialog, the GUI's model worker and `probe_compute` (the input of
the advice given before a caption job) all read `device_summary()`; the GUI builds its own wording from the
same fields (gui/captioning/model_worker.gpu_text)."""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any


def device_summary() -> dict[str, Any]:
    """{"torch": version or None, "cuda": bool, "devices": [{"index", "name", "total_gb", "total_bytes"}], "gpus": [names],
    "error": a user-facing line when torch is unusable, else None, "summary": one plain sentence}."""
    info: dict[str, Any] = {"torch": None, "cuda": False, "devices": [], "gpus": [], "error": None}
    # Imported here: torch takes seconds to import and nothing else in the CLI's library commands needs it.
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = getattr(torch.version, "cuda", None)   # None: the CPU-only build
        info["driver"] = nvidia_driver_version()
        if torch.cuda.is_available():
            info["cuda"] = True
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                info["devices"].append({"index": i, "name": p.name, "total_gb": round(p.total_memory / 1e9, 1),
                                        "total_bytes": int(p.total_memory)})
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


# ---------------------------------------------------------------------------------------------------
# Can this machine run the chosen model at the chosen precision? Said before a caption job starts,
# with what to do instead. `caption_advice` is the pure decision (tested without a GPU);
# `probe_compute` gathers its inputs (imports torch).

GiB = 1024 ** 3
# Qwen2.5-VL-7B (RePIC) as stored on the hub in bf16: used when the model folder cannot be measured
DEFAULT_WEIGHTS_BYTES = 16_580_000_000
# what a caption job needs beside the weights: activations and KV cache for a photo with its
# references at RePIC's pixel limit, plus the CUDA context
RUNTIME_OVERHEAD_BYTES = int(1.5 * GiB)
# bytes in memory per byte of bf16 weights on disk, by quantization: 8-bit and 4-bit leave the vision
# tower, embeddings and lm_head in bf16, so they shrink less than 2x and 4x
_PRECISION_FACTOR = {"none": 1.0, "8bit": 0.56, "4bit": 0.33}
_PRECISION_NAME = {"none": "bf16", "8bit": "8-bit", "4bit": "4-bit"}


@dataclasses.dataclass(frozen=True)
class GpuInfo:
    name: str
    total_bytes: int


@dataclasses.dataclass(frozen=True)
class Compute:
    """What the machine offers. `torch_cuda`: the CUDA version this PyTorch was built for (None: the
    CPU-only build); `driver`: the NVIDIA driver nvidia-smi reports (None: no nvidia-smi or no GPU)."""
    torch_version: str | None
    torch_cuda: str | None = None
    cuda_usable: bool = False
    gpus: tuple[GpuInfo, ...] = ()
    driver: str | None = None


@dataclasses.dataclass(frozen=True)
class CaptionAdvice:
    level: str                      # "ok", "warn" (can run, but badly) or "stop" (will not run)
    problem: str = ""
    alternatives: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.level == "ok"

    def text(self) -> str:
        if not self.problem:
            return ""
        problem = self.problem[0].upper() + self.problem[1:]
        if not self.alternatives:
            return problem
        return problem + " Instead: " + "; ".join(self.alternatives) + "."


ALT_DEMO = "the demo model shows how the app works on any computer (its captions are noise)"
ALT_SERVER = "caption on a captioning server (a computer with an NVIDIA GPU)"


def needed_bytes(weights_bytes: int, quantization: str) -> int:
    return int(weights_bytes * _PRECISION_FACTOR.get(quantization, 1.0)) + RUNTIME_OVERHEAD_BYTES


def _gb(n: int | float) -> str:
    return f"{n / GiB:.0f} GB" if n >= 10 * GiB else f"{n / GiB:.1f} GB"


def _no_cuda_reason(c: Compute) -> str:
    if c.torch_cuda is None:
        if c.driver:
            return ("this PyTorch is the CPU-only build, though an NVIDIA GPU is here "
                    "(reinstall with the installer's --torch cuda)")
        return "no NVIDIA GPU is usable here (this PyTorch is the CPU-only build)"
    if c.driver:
        return (f"the NVIDIA driver {c.driver} cannot run this PyTorch (built for CUDA {c.torch_cuda}): "
                f"update the driver")
    return "no NVIDIA GPU was found"


def caption_advice(compute: Compute, *, is_demo: bool, quantization: str = "none", device: str = "auto",
                   weights_bytes: int | None = None) -> CaptionAdvice:
    """Whether a caption job with this model, precision and device can run here, and what else to do."""
    if is_demo:
        return CaptionAdvice("ok")   # tiny: any CPU
    if compute.torch_version is None:
        return CaptionAdvice("stop", "PyTorch is not usable in this installation.",
                             ("reinstall the app (installers/install.sh or install.ps1)",))
    weights = weights_bytes or DEFAULT_WEIGHTS_BYTES
    precision = _PRECISION_NAME.get(quantization, quantization)
    if not compute.cuda_usable:
        reason = _no_cuda_reason(compute)
        if quantization != "none":
            return CaptionAdvice("stop", f"{precision} loading needs an NVIDIA GPU, and {reason}.",
                                 ("set quantization to none to run on the CPU (very slow)", ALT_SERVER, ALT_DEMO))
        if device.startswith("cuda"):
            return CaptionAdvice("stop", f"the device {device} was asked for, but {reason}.",
                                 ("set the device to auto or cpu (very slow)", ALT_SERVER, ALT_DEMO))
        ram = weights * 2 + RUNTIME_OVERHEAD_BYTES   # float32 on the CPU
        return CaptionAdvice("warn", f"{reason}: the model runs on the CPU, which takes "
                                     f"minutes per photo and about {_gb(ram)} of memory.",
                             (ALT_SERVER, ALT_DEMO))
    if device == "cpu":
        return CaptionAdvice("warn", "the device is set to cpu although a CUDA GPU is usable: captioning will "
                                     "take minutes per photo.", ("set the device to auto",))
    index = int(device.split(":")[1]) if device.startswith("cuda:") else 0
    if not compute.gpus or index >= len(compute.gpus):
        return CaptionAdvice("ok")   # the loader names a missing device itself
    gpu = compute.gpus[index]
    need = needed_bytes(weights, quantization)
    if need <= gpu.total_bytes:
        return CaptionAdvice("ok")
    alts = [f"load it in {_PRECISION_NAME[q]} (about {_gb(needed_bytes(weights, q))}; Settings → Model, or --quant {q})"
            for q in ("4bit", "8bit")
            if _PRECISION_FACTOR[q] < _PRECISION_FACTOR.get(quantization, 1.0)
            and needed_bytes(weights, q) <= gpu.total_bytes]
    alts += [ALT_SERVER, ALT_DEMO]
    level = "stop" if weights * _PRECISION_FACTOR.get(quantization, 1.0) > gpu.total_bytes else "warn"
    return CaptionAdvice(level, f"the model in {precision} needs about {_gb(need)} of GPU memory and the "
                                f"{gpu.name} has {_gb(gpu.total_bytes)}"
                                + (": it will not fit." if level == "stop" else ": it may run out of memory."),
                         tuple(alts))


def nvidia_driver_version() -> str | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    line = out.stdout.strip().splitlines()[0].strip() if out.returncode == 0 and out.stdout.strip() else ""
    return line or None


def probe_compute() -> Compute:
    """The machine as `caption_advice` sees it, from the one probe (device_summary)."""
    return compute_from_probe(device_summary()) or Compute(None)


def model_weights_bytes(folder) -> int | None:
    """Size of a model folder's safetensors weights (what loading reads), or None."""
    try:
        files = list(Path(folder).glob("*.safetensors"))
        return sum(f.stat().st_size for f in files) or None
    except OSError:
        return None


def compute_from_probe(info: dict[str, Any] | None) -> Compute | None:
    """A device_summary() dict (the GUI keeps the worker's) as a Compute; None before the probe came."""
    if not info:
        return None
    # exact bytes where the probe has them: the memory advice must not move with the rounding of total_gb
    gpus = tuple(GpuInfo(str(d.get("name", "GPU")), int(d.get("total_bytes") or float(d.get("total_gb", 0)) * 1e9))
                 for d in info.get("devices") or [])
    return Compute(info.get("torch"), info.get("torch_cuda"), bool(info.get("cuda")), gpus, info.get("driver"))


def advice_for_spec(spec, compute: Compute | None = None) -> CaptionAdvice:
    """caption_advice for a ModelSpec: its folder (never downloads), demo or not, its weights' size.
    A model that is not downloaded gets "ok": loading it says what to do in its own words."""
    from .demo_model import is_demo_model
    from .model_manager import ModelError, resolve_local

    try:
        folder, _ = resolve_local(spec.source, revision=spec.revision, cache_dir=spec.cache_dir)
    except (ModelError, OSError, ValueError):
        return CaptionAdvice("ok")
    if is_demo_model(folder):
        return CaptionAdvice("ok")   # decided before torch is imported: any CPU runs it
    return caption_advice(compute if compute is not None else probe_compute(), is_demo=False,
                          quantization=spec.quantization, device=spec.device,
                          weights_bytes=model_weights_bytes(folder))

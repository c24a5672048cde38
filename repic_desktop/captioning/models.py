"""Loading RePIC (Qwen2.5-VL-7B + GRPO) for captioning: what to load (``ModelSpec``) and how (``load_model``).

Rules, all from the RePIC reference implementation and the project's stack notes:

* **Offline loading.**  ``load_model`` never touches the network: a local folder is used as is, a hub id
  is resolved in the local Hugging Face cache only (``ModelNotAvailable`` otherwise, telling the user to
  run ``repic model download``).  Downloads are explicit (``model_manager.download_model``).
* **Safe formats only.**  ``use_safetensors=True``, never ``trust_remote_code``; adapters must ship
  ``adapter_model.safetensors``.
* **Adapter unmerged.**  A LoRA adapter is attached with ``PeftModel.from_pretrained`` and *not* merged
  (the RePIC authors lose 6-8 % recall with their bf16-merged checkpoint).
* **Dtype / attention.**  ``auto`` = bf16 on a CUDA GPU that supports it, fp16 on older GPUs, fp32 on the
  CPU; flash-attention-2 when the ``flash_attn`` package is usable and the model runs on CUDA in half
  precision (what RePIC was tested with), SDPA otherwise.
* **Quantization** (bitsandbytes): 4-bit NF4 with double quantization, or 8-bit; the vision tower and
  ``lm_head`` stay unquantized (``llm_int8_skip_modules=["model.visual", "lm_head"]``; plain ``"visual"``
  does *not* match in transformers 5) and this is verified after loading.  bitsandbytes 0.50 also runs
  on the CPU, but slowly and untested upstream, so without CUDA quantization is refused unless the
  caller passes ``allow_cpu_quantization=True`` (tests do).
* **Pixel limits.**  Every image is resized to 3136..802,816 pixels (<= 1024 visual tokens), set on the
  image processor after loading (``apply_pixel_limits``), verified at load time on two probe images
  (``verify_pixel_limits``); callers can check every real batch with ``check_grid``.
* **Decoding.**  Greedy, ``max_new_tokens=1024``; the checkpoint's ``generation_config.json`` extras
  (e.g. ``repetition_penalty``, eos ids) still apply, sampling knobs are neutralised.

The steps that are not loading proper live beside it: quantization.py, adapter_source.py (which adapter,
and may it be loaded), pixel_limits.py; the errors in model_errors.py. Their public names are still
importable from here.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import importlib.util
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..core.cpu_threads import apply_cpu_thread_policy
from ..core.settings import DEFAULT_MODEL_SOURCE
# The loading steps in their own modules; importers still know these names as models.X.
from .adapter_source import MERGE_MARKER as MERGE_MARKER
from .adapter_source import file_sha256 as file_sha256
from .adapter_source import resolve_adapter
from .adapter_source import resolve_adapter_source as resolve_adapter_source
from .model_errors import ModelLoadError, QuantizationUnavailable
from .model_manager import ModelError, ModelNotAvailable, resolve_local
from .quantization import SKIP_QUANT_MODULES as SKIP_QUANT_MODULES
from .quantization import check_quantization_possible, quantization_config, verify_quantization
from .quantization import quantized_module_names as quantized_module_names
from .pixel_limits import PATCH_SIZE as PATCH_SIZE
from .pixel_limits import PixelLimitError as PixelLimitError
from .pixel_limits import apply_pixel_limits, check_grid, verify_pixel_limits
from .prompt import FETCH_MAX_PIXELS

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MIN_PIXELS",
    "LoadCancelled",
    "LoadedModel",
    "ModelError",
    "ModelLoadError",
    "ModelNotAvailable",
    "ModelSpec",
    "PixelLimitError",
    "apply_pixel_limits",
    "QuantizationUnavailable",
    "SKIP_QUANT_MODULES",
    "check_grid",
    "generation_kwargs",
    "load_model",
    "quantized_module_names",
    "resolve_attention",
    "resolve_device",
    "resolve_dtype",
    "unload",
    "verify_pixel_limits",
]

DEFAULT_MIN_PIXELS = 4 * 28 * 28  # 3136, the checkpoint default
DEFAULT_MAX_PIXELS = 1024 * 28 * 28  # 802,816: at most 1024 visual tokens per image (RePIC's setting)
DEFAULT_MAX_NEW_TOKENS = 1024
PIXELS_CEILING = FETCH_MAX_PIXELS  # 12.8 MP: RePIC's fetch_image upper limit

QUANTIZATIONS = ("none", "4bit", "8bit")
ATTENTIONS = ("auto", "flash_attention_2", "sdpa", "eager")
_DTYPE_ALIASES = {
    "auto": "auto",
    "bf16": "bfloat16", "bfloat16": "bfloat16",
    "fp16": "float16", "float16": "float16", "half": "float16",
    "fp32": "float32", "float32": "float32", "float": "float32",
}
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")

Progress = Callable[[str, float], None]
"""``progress(stage, fraction)``; stage is one of "resolve", "processor", "weights", "adapter", "ready"."""


class LoadCancelled(Exception):
    """``cancel()`` returned True between two load stages.  Not a ModelError: nothing went wrong."""


# ------------------------------------------------------------------------------------------------ spec


@dataclass(frozen=True)
class ModelSpec:
    """What to load.  Immutable and hashable, so it can key caches and be compared to the loaded one."""

    source: str = DEFAULT_MODEL_SOURCE  # hub id or local folder
    revision: str | None = None  # pinned commit or tag; None = the cached "main"
    adapter: str | None = None  # LoRA folder or hub id, applied unmerged
    dtype: str = "auto"  # auto | bfloat16 | float16 | float32 (bf16/fp16/fp32 accepted)
    quantization: str = "none"  # none | 4bit | 8bit
    attention: str = "auto"  # auto | flash_attention_2 | sdpa | eager
    device: str = "auto"  # auto | cuda | cuda:N | cpu
    cache_dir: str | None = None  # None = huggingface_hub's default cache
    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError("model source must be a hub id or a folder")
        for name in ("revision", "adapter", "cache_dir"):  # "" means "not set", like None
            if getattr(self, name) == "":
                object.__setattr__(self, name, None)
        dtype = _DTYPE_ALIASES.get(str(self.dtype).lower())
        if dtype is None:
            raise ValueError(f"dtype must be one of auto, bfloat16, float16, float32 (got {self.dtype!r})")
        object.__setattr__(self, "dtype", dtype)
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)} (got {self.quantization!r})")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)} (got {self.attention!r})")
        if not _DEVICE_RE.match(str(self.device)):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N (got {self.device!r})")
        if not (isinstance(self.min_pixels, int) and isinstance(self.max_pixels, int)
                and 28 * 28 <= self.min_pixels <= self.max_pixels):
            raise ValueError(f"need 784 <= min_pixels <= max_pixels (got {self.min_pixels}, {self.max_pixels})")
        if self.max_pixels > PIXELS_CEILING:  # beyond RePIC's own fetch limit only memory grows
            raise ValueError(f"max pixels can be at most {PIXELS_CEILING} (got {self.max_pixels})")

    @classmethod
    def from_settings(cls, model_settings: Any, **overrides: Any) -> "ModelSpec":
        """Build from ``Settings().model`` (fields it lacks keep their defaults); ``overrides`` win."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if hasattr(model_settings, f.name):
                value = getattr(model_settings, f.name)
                if value is not None or f.default is None:
                    kwargs[f.name] = value
        kwargs.update(overrides)
        return cls(**kwargs)

    @classmethod
    def from_user_settings(cls, settings: Any, library: Any = None, **overrides: Any) -> "ModelSpec":
        """The spec a user's Settings describe for ``library``: the model fields plus attention and pixel
        limit, which live among the captioning preferences, and that library's own active adapter (none
        without a library: an adapter is trained on one library's people). ``overrides`` win."""
        kwargs: dict[str, Any] = {"attention": settings.caption_default("attention"),
                                  "max_pixels": int(settings.caption_default("max_pixels")),
                                  "adapter": settings.active_adapter(library) if library is not None else None}
        kwargs.update(overrides)
        return cls.from_settings(settings.model, **kwargs)

    def is_local(self) -> bool:
        return os.path.isdir(os.path.expanduser(self.source))

    def id_string(self) -> str:
        """Short human-readable identity, e.g. ``Yeongtak/RePIC_Qwen2.5VL_7B@abc123 + adapter lora/ [4bit]``."""
        s = self.source + (f"@{self.revision}" if self.revision else "")
        if self.adapter:
            s += f" + adapter {self.adapter}"
        if self.quantization != "none":
            s += f" [{self.quantization}]"
        return s

    def provenance(self) -> dict[str, Any]:
        """The requested settings (``auto`` unresolved); ``LoadedModel.provenance()`` has the resolved ones."""
        return {"source": self.source, "revision": self.revision, "adapter": self.adapter,
                "quantization": self.quantization, "dtype": self.dtype, "attention": self.attention,
                "device": self.device}


# ---------------------------------------------------------------------------------------- resolution


def _cuda_available() -> bool:
    import torch

    try:
        return bool(torch.cuda.is_available())
    except Exception:
        return False


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda:0`` when a CUDA GPU is usable, else ``cpu``; ``cuda``/``cuda:N`` are checked."""
    if device == "cpu":
        return "cpu"
    has_cuda = _cuda_available()
    if device == "auto":
        return "cuda:0" if has_cuda else "cpu"
    if not has_cuda:
        raise ModelLoadError(f"Device {device} was asked for but no NVIDIA GPU (CUDA) is usable here: set the "
                             f"device to auto or cpu.")
    import torch

    index = int(device.split(":")[1]) if ":" in device else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise ModelLoadError(f"Device {device} does not exist: this machine has {count} CUDA GPU(s) "
                             f"(cuda:0 to cuda:{count - 1}).")
    return f"cuda:{index}"


def resolve_dtype(dtype: str, device: str):
    """``auto`` → bf16 on CUDA with bf16 support, fp16 on other CUDA GPUs, fp32 on the CPU."""
    import torch

    if dtype != "auto":
        return getattr(torch, _DTYPE_ALIASES[dtype])
    if device.startswith("cuda"):
        try:
            bf16 = torch.cuda.is_bf16_supported()
        except Exception:
            bf16 = False
        return torch.bfloat16 if bf16 else torch.float16
    return torch.float32


def flash_attn_usable() -> bool:
    """flash-attn installed (and accepted by transformers)."""
    if importlib.util.find_spec("flash_attn") is None:
        return False
    try:
        from transformers.utils import is_flash_attn_2_available

        return bool(is_flash_attn_2_available())
    except Exception:
        return False


def resolve_attention(attention: str, device: str, dtype) -> str:
    """``auto`` → flash_attention_2 on CUDA in half precision when flash-attn is usable, else sdpa."""
    import torch

    half = dtype in (torch.float16, torch.bfloat16)
    if attention == "auto":
        return "flash_attention_2" if device.startswith("cuda") and half and flash_attn_usable() else "sdpa"
    if attention == "flash_attention_2":
        if not flash_attn_usable():
            raise ModelLoadError("flash-attention 2 was asked for but the flash-attn package is not installed: "
                                 "install it (`pip install flash-attn`) or set attention to auto or sdpa.")
        if not device.startswith("cuda") or not half:
            raise ModelLoadError("flash-attention 2 only runs on an NVIDIA GPU in bfloat16/float16: set attention "
                                 "to auto or sdpa.")
    return attention


# --------------------------------------------------------------------------------------------- loaded


@dataclass
class LoadedModel:
    model: Any  # Qwen2_5_VLForConditionalGeneration, or a PeftModel wrapping it
    processor: Any  # Qwen2_5_VLProcessor (or the image-only subclass)
    spec: ModelSpec
    dtype: Any  # torch.dtype actually used
    device: str  # "cpu" / "cuda:N"
    attention: str  # attn_implementation actually used
    is_demo: bool
    generation_config: Any  # transformers.GenerationConfig in force (greedy, checkpoint extras kept)
    model_path: Path  # local folder the weights came from
    commit: str | None = None  # hub snapshot commit, None for local folders
    adapter_path: Path | None = None  # local folder the adapter came from
    adapter_commit: str | None = None  # hub snapshot commit of the adapter, None for local folders

    @property
    def max_pixels(self) -> int:
        return self.spec.max_pixels

    def check_grid(self, image_grid_thw: Any) -> None:
        check_grid(image_grid_thw, self.spec.max_pixels)

    def generation_kwargs(self, max_new_tokens: int | None = None) -> dict[str, Any]:
        return generation_kwargs(self, max_new_tokens=max_new_tokens)

    def id_string(self) -> str:
        s = self.spec.source + (f"@{self.spec.revision}" if self.spec.revision else "")
        if self.commit and self.commit != self.spec.revision:
            s += f" ({self.commit[:12]})"
        if self.spec.adapter:
            s += f" + adapter {self.spec.adapter}"
        s += f" [{_dtype_name(self.dtype)}"
        if self.spec.quantization != "none":
            s += f", {self.spec.quantization}"
        return s + f", {self.device}]" + (" (demo)" if self.is_demo else "")

    def provenance(self) -> dict[str, Any]:
        """For caption provenance: what produced a caption, with every ``auto`` resolved."""
        # Local folders as absolute paths; hub ids as given, with the snapshot commit alongside.
        source = str(self.model_path) if self.commit is None else self.spec.source
        adapter = self.spec.adapter
        if self.adapter_path is not None and self.adapter_commit is None:
            adapter = str(self.adapter_path)
        return {
            "source": source,
            "revision": self.spec.revision,
            "commit": self.commit,
            "adapter": adapter,
            "adapter_commit": self.adapter_commit,
            "quantization": self.spec.quantization,
            "dtype": _dtype_name(self.dtype),
            "attention": self.attention,
            "device": self.device,
            "demo": self.is_demo,
        }


def _dtype_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


# ------------------------------------------------------------------------------------------ generation


def _greedy_generation_config(base: Any, max_new_tokens: int) -> Any:
    """The checkpoint's generation config with greedy decoding forced and sampling knobs neutralised.

    Kept: eos/pad/bos ids, ``repetition_penalty`` and any other extras.  Cleared: temperature, top_p,
    top_k, min_p, typical_p (set to None, so transformers falls back to its neutral defaults without
    the "`do_sample` is False but temperature is set" warnings).
    """
    from transformers import GenerationConfig

    gen = copy.deepcopy(base) if base is not None else GenerationConfig()
    gen.do_sample = False
    for knob in ("temperature", "top_p", "top_k", "min_p", "typical_p"):
        if hasattr(gen, knob):
            setattr(gen, knob, None)
    gen.num_beams = 1
    gen.max_new_tokens = max_new_tokens
    gen.max_length = None
    gen.use_cache = True
    return gen


def generation_kwargs(loaded: LoadedModel, max_new_tokens: int | None = None) -> dict[str, Any]:
    """``model.generate(**inputs, **generation_kwargs(loaded))``: greedy with the checkpoint's extras."""
    gen = copy.deepcopy(loaded.generation_config)
    if max_new_tokens is not None:
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        gen.max_new_tokens = int(max_new_tokens)
    return {"generation_config": gen}


# ----------------------------------------------------------------------------------------------- load

_WEIGHTS_HOOK_LOCK = threading.Lock()


@contextlib.contextmanager
def _weights_loop_hook(progress: Progress | None, cancel: Callable[[], bool] | None):
    """Report progress and honour cancel *while* the weights load (a 7B checkpoint takes minutes), not
    only between stages. transformers 5 loads tensors in one loop wrapped in `tqdm(...)` from
    `transformers.core_model_loading`; for the duration of the load that name is replaced by a wrapper
    that checks `cancel()` and reports each step, then passes items through unchanged. If the loop moves
    elsewhere in a future transformers, loading still works; only mid-load cancel falls back to the
    between-stage checks."""
    if progress is None and cancel is None:
        yield
        return
    try:
        from transformers import core_model_loading as cml
    except Exception:  # noqa: BLE001 - an older/newer transformers layout: no mid-load hook
        yield
        return
    original = getattr(cml, "tqdm", None)
    if original is None:
        yield
        return

    def hooked(iterable=None, *args, **kwargs):
        if kwargs.get("desc") != "Loading weights" or iterable is None:
            return original(iterable, *args, **kwargs)

        def gen():
            items = list(iterable)
            for i, item in enumerate(items):
                _check_cancel(cancel, "loading the weights")
                if progress is not None and i % 16 == 0:
                    _report(progress, "weights", 0.1 + 0.8 * i / max(1, len(items)))
                yield item
        return gen()

    with _WEIGHTS_HOOK_LOCK:
        cml.tqdm = hooked
        try:
            yield
        finally:
            cml.tqdm = original


def _check_cancel(cancel: Callable[[], bool] | None, stage: str) -> None:
    if cancel is not None and cancel():
        raise LoadCancelled(f"model loading cancelled before {stage}")


def _report(progress: Progress | None, stage: str, fraction: float) -> None:
    if progress is not None:
        progress(stage, fraction)


def _check_model_folder(path: Path, source: str) -> None:
    config_path = path / "config.json"
    if not config_path.exists():
        if (path / "adapter_config.json").exists():
            raise ModelLoadError(f"{source} is a LoRA adapter, not a model: set it as the adapter and its base "
                                 f"model as the source.")
        raise ModelLoadError(f"{source} is not a model folder (it has no config.json).")
    try:
        model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        raise ModelLoadError(f"{source} has an unreadable config.json.") from None
    if model_type != "qwen2_5_vl":
        raise ModelLoadError(f"{source} is a {model_type or 'unknown'} model, but RePIC needs a Qwen2.5-VL "
                             f"(qwen2_5_vl) model.")
    if not any(path.glob("*.safetensors")):
        raise ModelLoadError(f"{source} has no safetensors weights, and RePIC Desktop only loads safetensors "
                             f"(never pickled .bin files).")


def load_model(
    spec: ModelSpec,
    *,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    allow_cpu_quantization: bool = False,
) -> LoadedModel:
    """Load model + processor as ``spec`` says, offline.  See the module docstring for the rules.

    ``progress(stage, fraction)`` is called as stages start; ``cancel()`` is polled between stages
    (resolve, processor, weights, adapter) and makes this raise ``LoadCancelled``.  Errors for the user are
    ``ModelError`` subclasses with a one-sentence message: ``ModelNotAvailable`` (not downloaded),
    ``QuantizationUnavailable``, ``ModelLoadError``.
    """
    from .demo_model import is_demo_model

    _check_cancel(cancel, "resolving the model")
    _report(progress, "resolve", 0.0)
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    if device == "cpu":
        apply_cpu_thread_policy()  # all cores but one (core/cpu_threads.py); the CLI, GUI and trainer alike
    check_quantization_possible(spec.quantization, device, allow_cpu_quantization)
    attention = resolve_attention(spec.attention, device, dtype)

    model_path, commit = resolve_local(spec.source, revision=spec.revision, cache_dir=spec.cache_dir)
    _check_model_folder(model_path, spec.source)
    adapter_path, adapter_commit = resolve_adapter(spec, model_path)

    _check_cancel(cancel, "loading the processor")
    _report(progress, "processor", 0.05)
    processor = _load_processor(spec, model_path)

    _check_cancel(cancel, "loading the weights")
    _report(progress, "weights", 0.1)
    model = _load_weights(spec, model_path, device=device, dtype=dtype, attention=attention,
                          progress=progress, cancel=cancel)
    generation_config = _greedy_generation_config(getattr(model, "generation_config", None),
                                                  DEFAULT_MAX_NEW_TOKENS)
    # Also installed on the model: generate() fills unset (None) fields from model.generation_config, so
    # the checkpoint's sampling knobs would otherwise creep back in.
    model.generation_config = generation_config

    if adapter_path is not None:
        try:
            _check_cancel(cancel, "loading the adapter")
        except LoadCancelled:
            del model  # here, where the only reference lives
            unload(None)  # gc + free the GPU memory the weights took
            raise
        model = _attach_adapter(model, spec, adapter_path, progress=progress)

    _report(progress, "ready", 1.0)
    return LoadedModel(
        model=model,
        processor=processor,
        spec=spec,
        dtype=dtype,
        device=device,
        attention=attention,
        is_demo=is_demo_model(model_path),
        generation_config=generation_config,
        model_path=model_path,
        commit=commit,
        adapter_path=adapter_path,
        adapter_commit=adapter_commit,
    )


def _load_processor(spec: ModelSpec, model_path: Path) -> Any:
    from .processor import load_processor

    try:  # no pixel limits here: see apply_pixel_limits
        processor = load_processor(model_path, trust_remote_code=False)
    except Exception as exc:
        raise ModelLoadError(f"The processor/tokenizer files of {spec.source} could not be loaded "
                             f"({type(exc).__name__}: {_first_line(exc)}).") from exc
    apply_pixel_limits(processor, spec.min_pixels, spec.max_pixels)
    verify_pixel_limits(processor, spec.min_pixels, spec.max_pixels)
    return processor


def _load_weights(spec: ModelSpec, model_path: Path, *, device: str, dtype: Any, attention: str,
                  progress: Progress | None, cancel: Callable[[], bool] | None) -> Any:
    """The model in eval mode, safetensors only, quantized as asked (and verified)."""
    import torch
    from transformers import AutoModelForImageTextToText

    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "attn_implementation": attention,
        "use_safetensors": True,
        "trust_remote_code": False,
        "local_files_only": True,
    }
    if device.startswith("cuda"):
        kwargs["device_map"] = {"": device}
    if spec.quantization != "none":
        kwargs["quantization_config"] = quantization_config(spec.quantization, dtype)
    try:
        with _weights_loop_hook(progress, cancel):
            model = AutoModelForImageTextToText.from_pretrained(model_path, **kwargs)
    except LoadCancelled:
        gc.collect()
        raise
    except torch.cuda.OutOfMemoryError as exc:
        raise ModelLoadError(f"The GPU ran out of memory loading {spec.source}: try 4-bit quantization or "
                             f"close other GPU programs.") from exc
    except Exception as exc:
        raise ModelLoadError(f"The weights of {spec.source} could not be loaded ({type(exc).__name__}: "
                             f"{_first_line(exc)}).") from exc
    model.eval()
    if spec.quantization != "none":
        verify_quantization(model)
    return model


def _attach_adapter(model: Any, spec: ModelSpec, adapter_path: Path, *, progress: Progress | None) -> Any:
    """The LoRA attached, unmerged, in eval mode."""
    _report(progress, "adapter", 0.9)
    from peft import PeftModel

    try:
        model = PeftModel.from_pretrained(model, str(adapter_path), is_trainable=False)
    except Exception as exc:
        raise ModelLoadError(f"The adapter {spec.adapter} does not fit {spec.source} "
                             f"({type(exc).__name__}: {_first_line(exc)}).") from exc
    model.eval()
    return model


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else ""


def unload(loaded: LoadedModel | None) -> None:
    """Drop the model and processor (the caller should drop its ``loaded`` too) and free GPU memory."""
    if loaded is not None:
        loaded.model = None
        loaded.processor = None
    gc.collect()
    if _cuda_available():
        import torch

        torch.cuda.empty_cache()

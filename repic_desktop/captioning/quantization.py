"""bitsandbytes quantization for loading: 4-bit NF4 with double quantization or 8-bit, the vision tower
and ``lm_head`` left unquantized (``llm_int8_skip_modules``; plain ``"visual"`` does *not* match in
transformers 5), refused where it cannot run, and verified after loading."""
from __future__ import annotations

import importlib.util
from typing import Any

from .model_errors import ModelLoadError, QuantizationUnavailable

SKIP_QUANT_MODULES = ["model.visual", "lm_head"]


def quantized_module_names(model: Any) -> list[str]:
    """Names of the bitsandbytes ``Linear4bit`` / ``Linear8bitLt`` modules in ``model``."""
    try:
        import bitsandbytes as bnb
    except Exception:
        return []
    kinds = (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
    return [name for name, module in model.named_modules() if isinstance(module, kinds)]


def _strip_peft_prefix(name: str) -> str:
    return name[len("base_model.model."):] if name.startswith("base_model.model.") else name


def verify_quantization(model: Any) -> None:
    names = [_strip_peft_prefix(n) for n in quantized_module_names(model)]
    if not names:
        raise ModelLoadError("Quantization was asked for but no layer was quantized (bitsandbytes did nothing).")
    wrong = [n for n in names if n.startswith("model.visual") or n.startswith("visual") or n == "lm_head"
             or n.startswith("lm_head.")]
    if wrong:
        raise ModelLoadError(f"Quantization also hit the vision tower / lm_head ({wrong[0]}...), which must stay "
                             f"unquantized: this transformers version ignores llm_int8_skip_modules.")


def quantization_config(quantization: str, dtype: Any) -> Any:
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        # Compute dtype = the model dtype: bf16 on modern GPUs (the usual QLoRA setting), fp16 on GPUs
        # without bf16, fp32 for the CPU (tests only).
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=dtype, llm_int8_skip_modules=list(SKIP_QUANT_MODULES))
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(SKIP_QUANT_MODULES))


def check_quantization_possible(quantization: str, device: str, allow_cpu_quantization: bool) -> None:
    if quantization == "none":
        return
    if importlib.util.find_spec("bitsandbytes") is None:
        raise QuantizationUnavailable(f"{quantization} quantization needs the bitsandbytes package: "
                                      f"install it (`pip install bitsandbytes`) or set quantization to none.")
    if not device.startswith("cuda") and not allow_cpu_quantization:
        bits = "4-bit" if quantization == "4bit" else "8-bit"
        raise QuantizationUnavailable(f"{bits} quantization needs an NVIDIA GPU (CUDA) and none is in use here: "
                                      f"set quantization to none to run on the CPU.")

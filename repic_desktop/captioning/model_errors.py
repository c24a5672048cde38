"""The errors of loading a model, in one place so the loading steps (models.py, quantization.py,
adapter_source.py) can share them; ModelError and ModelNotAvailable come from model_manager.py."""
from __future__ import annotations

from .model_manager import ModelError


class ModelLoadError(ModelError):
    """The model exists but cannot be loaded as asked (bad folder, wrong architecture, bad options...)."""


class QuantizationUnavailable(ModelLoadError):
    """4-bit/8-bit asked for where it cannot run (no CUDA GPU, no bitsandbytes)."""

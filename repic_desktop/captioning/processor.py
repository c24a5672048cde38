"""Loading a Qwen2.5-VL processor with or without torchvision.

Why this module exists: in transformers 5.x ``Qwen2_5_VLProcessor`` (and therefore ``AutoProcessor``)
insists on a *video* processor, and ``Qwen2VLVideoProcessor`` needs torchvision.  The project's CPU setup
(torch 2.13.0+cpu) has no usable torchvision: the only wheels are CUDA builds, whose import fails with
``RuntimeError: operator torchvision::nms does not exist``.  Without it, building the processor fails with
``ImportError: Qwen2VLVideoProcessor requires the Torchvision library`` or
``TypeError: Received a NoneType for argument video_processor, but a VideoProcessorMixin was expected``.

The app only captions still images, so we fall back to an image-only processor subclass.  Its image
processor (``Qwen2VLImageProcessor``) works without torchvision via its PIL backend, and the tokenizer
and chat template are unaffected.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from transformers import Qwen2_5_VLProcessor


@functools.lru_cache(maxsize=1)
def have_torchvision() -> bool:
    """True when ``import torchvision`` actually succeeds.

    ``importlib.util.find_spec`` (what ``transformers.utils.is_torchvision_available`` uses) is not
    enough: a CUDA torchvision installed beside CPU torch is *found* but raises ``RuntimeError`` on
    import.  So we really import it, and treat any exception as "not available".
    """
    try:
        import torchvision  # noqa: F401
    except Exception:  # ImportError, RuntimeError (CUDA build beside CPU torch), OSError (missing .so), ...
        return False
    return True


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """A ``Qwen2_5_VLProcessor`` without the video sub-processor (so it needs no torchvision).

    Images, text and the chat template behave exactly as in the parent class; passing ``videos=`` fails.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        kwargs.pop("video_processor", None)
        super().__init__(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=None,
            chat_template=chat_template,
            **kwargs,
        )


# save_pretrained() writes ``processor_class`` from the class name.  Pretend to be the real class so a
# folder saved from this shim names "Qwen2_5_VLProcessor" and loads with AutoProcessor elsewhere.
ImageOnlyQwen2_5_VLProcessor.__name__ = "Qwen2_5_VLProcessor"


def load_processor(path: str | os.PathLike, **kwargs: Any) -> Qwen2_5_VLProcessor:
    """Load the processor of a Qwen2.5-VL folder: ``AutoProcessor`` when it works, else image-only.

    ``kwargs`` go to ``from_pretrained`` in both cases (for example ``max_pixels=...``; note that limits
    given at load time are re-applied on every call and beat per-call values).
    """
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(path, **kwargs)
    except Exception:
        # Deliberately broad: without torchvision this is ImportError or TypeError (video_processor is
        # None); with a broken CUDA torchvision beside CPU torch it is RuntimeError.  If the folder itself
        # is bad, the fallback below fails too and its error (chained to this one) reaches the caller.
        return ImageOnlyQwen2_5_VLProcessor.from_pretrained(path, **kwargs)

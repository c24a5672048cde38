"""The pixel limits of the image processor: every image resized to min_pixels..max_pixels (3136..802,816
by default: <= 1024 visual tokens), set on the image processor after loading (``apply_pixel_limits``,
whatever attribute this transformers version reads), verified at load time on two probe images
(``verify_pixel_limits``); callers can check every real batch with ``check_grid``."""
from __future__ import annotations

from typing import Any

from .model_manager import ModelError

PATCH_SIZE = 14


class PixelLimitError(ModelError, ValueError):
    """The image processor produced more visual patches than ``max_pixels`` allows."""


def check_grid(image_grid_thw: Any, max_pixels: int, *, patch_size: int = PATCH_SIZE) -> None:
    """Raise ``PixelLimitError`` when an image got more patches than ``max_pixels`` allows.

    ``image_grid_thw`` is the processor output (a tensor or nested list of ``[t, h, w]`` rows, in
    14-pixel patches).  Each image may have at most ``max_pixels // (14*14)`` patches: some transformers
    versions silently ignore the ``max_pixels`` given at load time, which would blow the prompt up.
    """
    rows = image_grid_thw.tolist() if hasattr(image_grid_thw, "tolist") else list(image_grid_thw)
    limit = max_pixels // (patch_size * patch_size)
    for i, row in enumerate(rows):
        t, h, w = (int(x) for x in row)
        if t * h * w > limit:
            raise PixelLimitError(
                f"Image {i + 1} was resized to {h * patch_size}x{w * patch_size} px ({t * h * w} patches), over "
                f"the max_pixels limit of {max_pixels} ({limit} patches): the image processor ignored max_pixels.")


def apply_pixel_limits(processor: Any, min_pixels: int, max_pixels: int) -> None:
    """Set the resize limits on the processor's image processor, in every form transformers has used.

    transformers 5 reads ``size={"shortest_edge": min, "longest_edge": max}``; 4.x read ``min_pixels`` /
    ``max_pixels`` attributes.  The attributes are set only where they already exist: in transformers 5.24
    an instance attribute ``max_pixels`` is passed to every call and triggers a FutureWarning each time.

    Limits are deliberately *not* passed to ``from_pretrained``: there they land in
    ``tokenizer.init_kwargs``, which ``ProcessorMixin._merge_kwargs`` re-applies on every call over the
    image processor's own ``size`` (and which ``save_pretrained`` writes into tokenizer_config.json).  A
    checkpoint saved that way carries such keys too, so they are removed here.
    """
    image_processor = getattr(processor, "image_processor", processor)
    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    try:
        from transformers.image_utils import SizeDict  # transformers 5
    except Exception:  # transformers 4.x: plain dicts
        SizeDict = None  # noqa: N806
    if SizeDict is not None and isinstance(getattr(image_processor, "size", None), SizeDict):
        image_processor.size = SizeDict(**size)
    else:
        image_processor.size = dict(size)
    for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if getattr(image_processor, name, None) is not None:
            setattr(image_processor, name, value)
    tokenizer = getattr(processor, "tokenizer", None)
    init_kwargs = getattr(tokenizer, "init_kwargs", None)
    if isinstance(init_kwargs, dict):
        for key in ("size", "min_pixels", "max_pixels"):
            init_kwargs.pop(key, None)


def verify_pixel_limits(processor: Any, min_pixels: int, max_pixels: int) -> None:
    """Run the processor on a too-big and a too-small blank image; raise ``PixelLimitError`` if a limit is ignored.

    Costs a few tens of milliseconds; catches transformers versions that ignore the limits before the first
    real caption does.
    """
    from PIL import Image

    image_token = getattr(processor, "image_token", "<|image_pad|>")
    side = int((2 * max_pixels) ** 0.5) + 28
    big, small = Image.new("RGB", (side, side)), Image.new("RGB", (28, 28))
    text = f"<|vision_start|>{image_token}<|vision_end|>" * 2
    grid = processor(text=[text], images=[big, small], return_tensors="pt")["image_grid_thw"]
    check_grid(grid, max_pixels)
    t, h, w = (int(x) for x in grid[1])
    if t * h * w * PATCH_SIZE * PATCH_SIZE < min_pixels:
        raise PixelLimitError(f"A 28x28 px image was resized to only {t * h * w} patches, under the min_pixels limit "
                              f"of {min_pixels}: the image processor ignored min_pixels.")

"""One photo as one OpenAI chat-completions request body in RePIC's layout (prompt.CaptionPrompt.messages()):
images as base64 PNG data URLs after RePIC's own two resizes, greedy decoding, and only the fields vLLM's
ChatCompletionRequest knows (see remote.py's docstring for the field list's source)."""
from __future__ import annotations

import base64
import io
import json
from typing import Any, Callable

from .prompt import IMAGE_FACTOR, MAX_PIXELS, MIN_PIXELS, CaptionPrompt, ImageRef, fetch_image, smart_resize

# Fields of vLLM's ChatCompletionRequest (vllm/entrypoints/openai/chat_completion/protocol.py at commit
# 002032ee2b18e1f7bd924ec47b62504ba3866063, "class ChatCompletionRequest"); a body the backend builds may
# hold only these (tested). Listed in full for the fields we might ever use, not only the ones we send.
VLLM_CHAT_REQUEST_FIELDS = frozenset({
    # "Ordered by official OpenAI API documentation"
    "messages", "model", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "max_tokens",
    "max_completion_tokens", "n", "presence_penalty", "response_format", "seed", "stop", "stream",
    "stream_options", "temperature", "top_p", "tools", "tool_choice", "reasoning_effort", "include_reasoning",
    "parallel_tool_calls", "user",
    # "chat-completion-sampling-params"
    "use_beam_search", "top_k", "min_p", "repetition_penalty", "length_penalty", "stop_token_ids",
    "include_stop_str_in_output", "ignore_eos", "min_tokens", "skip_special_tokens",
    "spaces_between_special_tokens", "truncate_prompt_tokens", "prompt_logprobs", "allowed_token_ids",
    "bad_words",
    # "chat-completion-extra-params"
    "echo", "add_generation_prompt", "continue_final_message", "add_special_tokens", "documents",
    "chat_template", "chat_template_kwargs", "mm_processor_kwargs", "priority", "request_id",
})
SENT_FIELDS = ("model", "messages", "temperature", "max_tokens", "repetition_penalty", "min_tokens")

# Qwen2.5-VL checkpoints ship generation_config.json with repetition_penalty 1.05 (RePIC's included,
# ../shared/reference/repic-method.md §1.3); used only when the model's own file is not on this computer.
QWEN25VL_REPETITION_PENALTY = 1.05


def encode_image(ref: ImageRef, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS) -> str:
    """A data URL of the pixels the local engine's processor would work on: RePIC's first resize
    (fetch_image), then the processor's resize to the pixel limits (PIL bicubic, as its PIL backend)."""
    from PIL import Image

    img = fetch_image(ref, max_pixels)
    h, w = smart_resize(img.height, img.width, IMAGE_FACTOR, min_pixels, max_pixels)
    if (h, w) != (img.height, img.width):
        img = img.resize((w, h), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)  # lossless; level 1: encoding time beats bytes on a LAN
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def chat_messages(prompt: CaptionPrompt, image_url: Callable[[ImageRef], str]) -> list[dict[str, Any]]:
    """RePIC's messages (prompt.messages(), the same list the local engine renders) with each image
    placeholder replaced by an OpenAI image_url part, in prompt.images() order."""
    images = iter(prompt.images())
    out = []
    for msg in prompt.messages():
        content = msg["content"]
        if isinstance(content, list):
            content = [{"type": "image_url", "image_url": {"url": image_url(next(images))}}
                       if part.get("type") == "image" else dict(part) for part in content]
        out.append({"role": msg["role"], "content": content})
    return out


def request_body(prompt: CaptionPrompt, image_url: Callable[[ImageRef], str], *, model: str, max_tokens: int,
                 repetition_penalty: float | None = None, min_tokens: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": chat_messages(prompt, image_url), "temperature": 0,
                            "max_tokens": max_tokens}
    if repetition_penalty is not None:
        body["repetition_penalty"] = float(repetition_penalty)
    if min_tokens:
        body["min_tokens"] = int(min_tokens)
    return body


def repetition_penalty_for(spec: Any) -> float:
    """The checkpoint's repetition penalty: from its generation_config.json when the model is a local
    folder or in the Hugging Face cache, else Qwen2.5-VL's shipped 1.05. A file without the field means
    none (1.0)."""
    from pathlib import Path

    path = None
    source = getattr(spec, "source", None)
    if source and Path(source).is_dir():
        path = Path(source) / "generation_config.json"
    elif source:
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(source, "generation_config.json", revision=getattr(spec, "revision", None),
                                           cache_dir=getattr(spec, "cache_dir", None))
            path = Path(found) if isinstance(found, str) else None
        except Exception:
            path = None
    if path is not None and path.is_file():
        try:
            return float(json.loads(path.read_text(encoding="utf-8")).get("repetition_penalty") or 1.0)
        except (OSError, ValueError, TypeError):
            pass
    return QWEN25VL_REPETITION_PENALTY

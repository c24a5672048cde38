"""The "demo model": a tiny, randomly initialised Qwen2.5-VL built on demand, fully offline.

It has the real architecture, the official chat template, Qwen's special tokens and a real image
processor, so the whole captioning pipeline (templating, image preprocessing, generate, decode) runs
end to end in well under a second on a CPU.  Its weights are random, so its captions are noise: it is for
tests, for trying the app without downloading 15 GB, and for development.  It is never committed; the
app and the test suite build it when they need it.  The build itself takes 0.2-0.4 s; a fresh process
(`repic demo-model DIR`) spends 10-20 s before that importing torch (about 3 s) and transformers'
Qwen2.5-VL classes (about 8 s, on the 2-core build machine under load), which loading the model for
captioning needs anyway.

The folder has the same layout as a hub checkpoint and loads with ``load_processor(path)`` and
``AutoModelForImageTextToText.from_pretrained(path)``.  A marker file, ``repic_demo_model.json``, tells
it apart from a real model (``is_demo_model``).
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

from .chat_template import EOS_TOKEN, PAD_TOKEN, QWEN25VL_CHAT_TEMPLATE, QWEN_SPECIAL_TOKENS

MARKER_FILENAME = "repic_demo_model.json"
# The demo model writes noise: a short line shows the flow. Every front (CLI, GUI, trainer's evaluation)
# gets this cap through CaptionEngine.from_loaded, instead of 1,024 tokens of noise per photo.
DEMO_MAX_NEW_TOKENS = 32
BUILDER_VERSION = 1

# Token budget: a fixed-size BPE vocabulary plus Qwen's 14 specials = 448 tokens, a multiple of 64,
# which keeps the embedding and lm_head matrices (and the folder, about 0.9 MB) small.
_BPE_VOCAB_SIZE = 448 - len(QWEN_SPECIAL_TOKENS)

# Image limits: 4..64 merged 28x28 patches per image keeps prompts short and tests fast.
_PATCH_SIZE = 14
_MERGE_SIZE = 2
_TEMPORAL_PATCH_SIZE = 2
_MIN_PIXELS = 4 * 28 * 28
_MAX_PIXELS = 224 * 224

# Seed of the synthetic corpus.  Independent of the weight seed, so every demo model shares one tokenizer.
_CORPUS_SEED = 1234


def is_demo_model(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder written by ``build_demo_model`` (it holds a valid marker file)."""
    try:
        with open(Path(path) / MARKER_FILENAME, encoding="utf-8") as f:
            marker = json.load(f)
    except (OSError, ValueError):  # missing / unreadable / not JSON (UnicodeDecodeError is a ValueError)
        return False
    return isinstance(marker, dict) and marker.get("demo") is True


def build_demo_model(out_dir: str | os.PathLike, *, seed: int = 0) -> dict[str, Any]:
    """Build the demo model into ``out_dir`` and return a summary.

    ``out_dir`` is created if missing.  To avoid clobbering a real model by mistake, an existing non-empty
    folder is only accepted when it is already a demo model folder (it is then rebuilt in place).
    The same ``seed`` gives byte-identical weights and tokenizer files.

    Returns ``{"path", "params", "vocab_size", "size_bytes", "seconds"}``; ``seconds`` is the build
    time proper (torch/transformers are imported lazily, before the clock starts, so that merely
    importing this module or calling ``is_demo_model`` stays cheap).
    """
    # Heavy imports first (see "seconds" above); the helpers below re-import these names for free.
    import tokenizers  # noqa: F401
    import torch  # noqa: F401
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2Tokenizer  # noqa: F401
    from transformers.utils import logging as hf_logging

    out = Path(out_dir)
    _prepare_out_dir(out)
    start = time.perf_counter()
    # Written first, so that a build interrupted half-way leaves a folder that can simply be rebuilt.
    _write_marker(out, seed)

    tokenizer = _build_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS}
    processor = _build_processor(tokenizer)
    model = _build_model(ids, vocab_size=len(tokenizer), seed=seed)

    # save_pretrained shows a "Writing model shards" progress bar on stderr: pointless for one tiny file.
    bar_was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(out)  # safetensors by default
    finally:
        if bar_was_enabled:
            hf_logging.enable_progress_bar()
    processor.save_pretrained(out)
    _ensure_video_processor_section(out / "processor_config.json")

    size_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "path": str(out),
        "params": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "size_bytes": size_bytes,
        "seconds": time.perf_counter() - start,
    }


# --------------------------------------------------------------------------------------------- folder


def _prepare_out_dir(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"Cannot build the demo model at {out}: it exists and is not a folder.")
        if any(out.iterdir()) and not is_demo_model(out):
            raise ValueError(
                f"Refusing to build the demo model into {out}: the folder is not empty and is not a demo "
                f"model folder (no valid {MARKER_FILENAME}). Choose an empty or new folder."
            )
    out.mkdir(parents=True, exist_ok=True)


def _write_marker(out: Path, seed: int) -> None:
    marker = {
        "demo": True,
        "note": "Tiny random Qwen2.5-VL built by RePIC Desktop: random weights, captions are noise.",
        "seed": seed,
        "builder_version": BUILDER_VERSION,
    }
    (out / MARKER_FILENAME).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------ tokenizer


def _corpus() -> list[str]:
    """A small synthetic caption corpus (a few thousand short lines: BPE trains on it in ~0.1 s).

    Names with accents and a few emoji give them merges of their own; the byte-level alphabet added by
    the trainer means any other text is still encodable (no byte is ever unknown).
    """
    rnd = random.Random(_CORPUS_SEED)
    names = [
        "Alice", "Bob", "Charlie", "Dana", "Eve", "Frank", "Grace", "Max", "Luna",
        "Zoë", "José", "Chloé", "Søren", "Björn", "François", "Łucja", "Renée", "Ana María", "Jürgen",
    ]
    subjects = ["dog", "cat", "child", "woman", "man", "friend", "puppy", "grandma", "teacher"]
    verbs = ["is playing with", "is sitting next to", "is running towards", "looks at", "holds", "smiles at"]
    objects = ["a red ball", "the sofa", "a tree", "the beach", "a birthday cake 🎂", "a bicycle", "the garden 🌷"]
    lines = [
        "You are a helpful assistant.",
        "Describe the image.",
        "Write a short caption for the last image.",
        "This is",
        "The reference images show",
        "Picture",
        "system",
        "user",
        "assistant",
        "Happy birthday! 🎉😀❤️",
    ]
    for _ in range(2000):
        a, b = rnd.sample(names, 2)
        lines.append(f"{a} the {rnd.choice(subjects)} {rnd.choice(verbs)} {rnd.choice(objects)}, while {b} watches.")
    return lines


def _build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from tokenizers import Regex
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    # Train with exactly the pipeline Qwen2Tokenizer uses (NFC, Qwen's split regex, byte-level), so the
    # learnt merges are the ones the final tokenizer applies.
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_BPE_VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is ever unknown
        special_tokens=[],
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)

    trained = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(trained["vocab"])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    for token in QWEN_SPECIAL_TOKENS:  # specials right after the BPE vocab, in Qwen's order
        vocab[token] = len(vocab)

    # transformers 5 API: Qwen2Tokenizer builds the same BPE pipeline from vocab + merges and registers
    # the named and extra special tokens as special added tokens (so they are never split).
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens=[t for t in QWEN_SPECIAL_TOKENS if t != PAD_TOKEN],  # as in Qwen's own config
        model_max_length=32768,
    )
    tokenizer.chat_template = QWEN25VL_CHAT_TEMPLATE
    return tokenizer


# ------------------------------------------------------------------------------------------ processor


def _image_processor_kwargs() -> dict[str, Any]:
    return {
        "size": {"shortest_edge": _MIN_PIXELS, "longest_edge": _MAX_PIXELS},
        "patch_size": _PATCH_SIZE,
        "temporal_patch_size": _TEMPORAL_PATCH_SIZE,
        "merge_size": _MERGE_SIZE,
    }


def _build_processor(tokenizer):
    from .processor import ImageOnlyQwen2_5_VLProcessor, have_torchvision

    if have_torchvision():
        from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        try:
            return Qwen2_5_VLProcessor(
                image_processor=Qwen2VLImageProcessor(**_image_processor_kwargs()),
                video_processor=Qwen2VLVideoProcessor(**_image_processor_kwargs()),
                tokenizer=tokenizer,
                chat_template=QWEN25VL_CHAT_TEMPLATE,
            )
        except Exception:  # any trouble with the video side: fall back to the image-only processor
            pass

    # Without torchvision: the PIL backend, imported by name (``Qwen2VLImageProcessor`` would warn that it
    # falls back to it anyway), and no video processor; its config section is written by hand afterwards.
    from transformers import Qwen2VLImageProcessorPil

    return ImageOnlyQwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessorPil(**_image_processor_kwargs()),
        tokenizer=tokenizer,
        chat_template=QWEN25VL_CHAT_TEMPLATE,
    )


def _ensure_video_processor_section(processor_config: Path) -> None:
    """Give an image-only processor_config.json the ``video_processor`` section of a real checkpoint.

    ``AutoProcessor`` in an environment *with* torchvision requires it (``OSError: Can't load video
    processor`` otherwise); our image-only loader ignores it.  Same geometry as the image processor.
    """
    config = json.loads(processor_config.read_text(encoding="utf-8"))
    if "video_processor" in config:
        return
    video = {k: v for k, v in config["image_processor"].items() if k != "image_processor_type"}
    video.update(video_processor_type="Qwen2VLVideoProcessor", do_sample_frames=False, return_metadata=False)
    config["video_processor"] = video
    processor_config.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------- model


def _build_model(ids: dict[str, int], *, vocab_size: int, seed: int):
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    endoftext, im_end = ids[PAD_TOKEN], ids[EOS_TOKEN]
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": -(-vocab_size // 64) * 64,  # round up to a multiple of 64, as real checkpoints do
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            # mrope sections (temporal, height, width) must sum to head_dim / 2 = 64 / 4 / 2 = 8
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": endoftext,
            "eos_token_id": im_end,
            "pad_token_id": endoftext,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,  # must equal the text hidden size
            "patch_size": _PATCH_SIZE,
            "spatial_merge_size": _MERGE_SIZE,
            "temporal_patch_size": _TEMPORAL_PATCH_SIZE,
            "window_size": 112,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    # Seed a private copy of the RNG so the caller's global torch RNG state is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=endoftext,
        eos_token_id=[im_end, endoftext],
        pad_token_id=endoftext,
        do_sample=False,
    )
    return model

"""Test set-up: offline, headless, and never touching the real user's library, settings or caches."""
from __future__ import annotations

import os
import tempfile

# Set before anything imports huggingface_hub / Qt: both read these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_SANDBOX = tempfile.mkdtemp(prefix="repic-tests-home-")
for var, sub in [("XDG_DATA_HOME", "data"), ("XDG_CONFIG_HOME", "config"), ("XDG_CACHE_HOME", "cache"),
                 ("REPIC_CONFIG_DIR", "repic-config"), ("REPIC_CACHE_DIR", "repic-cache"),
                 ("HF_HOME", "hf")]:
    os.environ[var] = os.path.join(_SANDBOX, sub)
os.environ.pop("REPIC_LIBRARY", None)

import pytest  # noqa: E402

from tests.helpers.cli_family import family  # noqa: E402,F401 - a fixture for the CLI captioning tests


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory):
    """The tiny random Qwen2.5-VL, built once per test session (well under a second)."""
    from repic_desktop.captioning.demo_model import build_demo_model

    d = tmp_path_factory.mktemp("demo-model")
    build_demo_model(d)
    return d


@pytest.fixture
def library(tmp_path):
    from repic_desktop.core.library import Library

    lib = Library(tmp_path / "lib.sqlite")
    yield lib
    lib.close()


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """Per-test settings and library locations (for CLI tests that use the defaults)."""
    monkeypatch.setenv("REPIC_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("REPIC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("REPIC_LIBRARY", raising=False)
    return tmp_path


# ---- retrieval (tests/test_retrieval*.py) ---------------------------------------------------------------

def augment_face_photo(img, seed: int):
    """A deterministic "another photo of the same person": small rotation and scale, brightness, mirror."""
    import numpy as np
    from PIL import Image, ImageEnhance, ImageOps

    r = np.random.default_rng(seed)
    out = img.rotate(float(r.uniform(-8, 8)), resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))
    s = float(r.uniform(0.85, 1.1))
    out = out.resize((int(out.width * s), int(out.height * s)), Image.Resampling.BICUBIC)
    out = ImageEnhance.Brightness(out).enhance(float(r.uniform(0.75, 1.25)))
    return ImageOps.mirror(out) if r.random() < 0.5 else out


@pytest.fixture(scope="session")
def real_faces():
    """Two real, openly licensed faces shipped inside installed packages, downscaled for speed:
    scikit-image's astronaut (Eileen Collins) and matplotlib's Grace Hopper."""
    import matplotlib
    import numpy as np
    import skimage.data
    from PIL import Image

    def small(img):
        img = img.convert("RGB")
        img.thumbnail((480, 480))
        return img

    hopper = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    return {"eileen": small(Image.fromarray(np.asarray(skimage.data.astronaut()))),
            "grace": small(Image.open(hopper))}


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A random 95k-parameter CLIP saved as safetensors (shared/reference/retrieval.md §4c)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=998, eos_token_id=999,
                         pad_token_id=1),
        vision_config=dict(image_size=64, patch_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2),
        projection_dim=16)
    d = tmp_path_factory.mktemp("tiny-clip")
    CLIPModel(cfg).eval().save_pretrained(d)
    CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_dino_dir(tmp_path_factory):
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny-dinov2")
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             image_size=64, patch_size=16)).eval().save_pretrained(d)
    BitImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_owl_dir(tmp_path_factory):
    """A random one-layer OWLv2 with a letters-only CLIP tokenizer (no merges), built offline."""
    import json
    import string

    import torch
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    d = tmp_path_factory.mktemp("tiny-owlv2")
    # OWL treats a query whose first token id is 0 as padding, so the special tokens come last.
    toks = list(string.ascii_lowercase) + [c + "</w>" for c in string.ascii_lowercase] + ["<|startoftext|>",
                                                                                           "<|endoftext|>"]
    (d / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(toks)}))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"), pad_token="<|endoftext|>", model_max_length=16)
    torch.manual_seed(0)
    cfg = Owlv2Config(
        text_config=dict(vocab_size=len(toks), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=len(toks) - 2,
                         eos_token_id=len(toks) - 1, pad_token_id=len(toks) - 1),
        vision_config=dict(image_size=64, patch_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2),
        projection_dim=32)
    Owlv2ForObjectDetection(cfg).eval().save_pretrained(d)
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}), tokenizer=tok)
    processor.save_pretrained(d)
    return d

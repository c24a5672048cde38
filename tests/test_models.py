"""Model loading (repic_desktop/captioning/models.py) on the tiny demo model: offline, safetensors-only,
pixel limits, greedy generation with the checkpoint's extras, 4-bit/8-bit on CPU, unmerged LoRA, cancel.

The demo model's weights are random: tests check plumbing, shapes and numbers, never caption content.
"""
from __future__ import annotations

import ast
import json
import logging
import shutil
import sys
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from repic_desktop.captioning import models as models_mod
from repic_desktop.captioning.models import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
    LoadCancelled,
    LoadedModel,
    ModelLoadError,
    ModelNotAvailable,
    ModelSpec,
    PixelLimitError,
    QuantizationUnavailable,
    check_grid,
    generation_kwargs,
    load_model,
    quantized_module_names,
    resolve_attention,
    resolve_device,
    resolve_dtype,
    unload,
)
from repic_desktop.core.settings import ModelSettings

LORA_REGEX = r".*language_model.*\.(q_proj|v_proj)"


@pytest.fixture(scope="module")
def demo(demo_model_dir) -> LoadedModel:
    """The demo model loaded once per module with the default spec (fp32, sdpa, CPU)."""
    return load_model(ModelSpec(source=str(demo_model_dir)))


def _prompt(loaded: LoadedModel, n_images: int = 1) -> str:
    content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": "Describe the image."}]
    return loaded.processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                add_generation_prompt=True)


def _text_ids(loaded: LoadedModel, text: str = "Alice the dog holds a red ball") -> torch.Tensor:
    return loaded.processor.tokenizer(text, return_tensors="pt")["input_ids"]


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()


# ------------------------------------------------------------------------------------------------ spec


def test_spec_defaults_and_validation():
    s = ModelSpec()
    assert (s.source, s.revision, s.adapter, s.dtype, s.quantization, s.attention, s.device) == (
        "Yeongtak/RePIC_Qwen2.5VL_7B", None, None, "auto", "none", "auto", "auto")
    assert (s.min_pixels, s.max_pixels) == (3136, 1024 * 28 * 28) == (DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS)
    assert ModelSpec(dtype="bf16").dtype == "bfloat16" and ModelSpec(dtype="FP32").dtype == "float32"
    assert ModelSpec(adapter="", revision="").adapter is None
    assert hash(ModelSpec()) == hash(ModelSpec())  # frozen, usable as a cache key
    for bad in [dict(quantization="2bit"), dict(attention="flash"), dict(device="mps"), dict(device="cuda:x"),
                dict(dtype="int8"), dict(min_pixels=10), dict(min_pixels=5000, max_pixels=4000), dict(source=" ")]:
        with pytest.raises(ValueError):
            ModelSpec(**bad)


def test_spec_from_settings_id_string_and_provenance():
    ms = ModelSettings(source="org/model", revision="abc123", adapter="/loras/me", quantization="4bit",
                       device="cuda:1", cache_dir="/hf")
    s = ModelSpec.from_settings(ms)
    assert (s.source, s.revision, s.adapter, s.quantization, s.device, s.cache_dir) == (
        "org/model", "abc123", "/loras/me", "4bit", "cuda:1", "/hf")
    assert s.dtype == "auto" and s.max_pixels == DEFAULT_MAX_PIXELS  # fields the settings lack keep defaults
    assert ModelSpec.from_settings(ms, quantization="none").quantization == "none"
    assert s.id_string() == "org/model@abc123 + adapter /loras/me [4bit]"
    assert s.provenance() == {"source": "org/model", "revision": "abc123", "adapter": "/loras/me",
                              "quantization": "4bit", "dtype": "auto", "attention": "auto", "device": "cuda:1"}
    assert ModelSpec.from_settings(ModelSettings()) == ModelSpec()


def test_auto_resolution_cpu_and_fake_cuda(monkeypatch):
    monkeypatch.setattr(models_mod, "_cuda_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ModelLoadError, match="no NVIDIA GPU"):
        resolve_device("cuda:0")
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("bfloat16", "cpu") is torch.bfloat16
    assert resolve_attention("auto", "cpu", torch.float32) == "sdpa"
    assert resolve_attention("eager", "cpu", torch.float32) == "eager"

    # A pretend CUDA machine (no GPU here): the decisions, not the kernels.
    monkeypatch.setattr(models_mod, "_cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == "cuda:0" and resolve_device("cuda") == "cuda:0"
    assert resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(ModelLoadError, match="2 CUDA GPU"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype("auto", "cuda:0") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_dtype("auto", "cuda:0") is torch.float16
    monkeypatch.setattr(models_mod, "flash_attn_usable", lambda: True)
    assert resolve_attention("auto", "cuda:0", torch.bfloat16) == "flash_attention_2"
    assert resolve_attention("auto", "cuda:0", torch.float32) == "sdpa"
    assert resolve_attention("auto", "cpu", torch.bfloat16) == "sdpa"
    monkeypatch.setattr(models_mod, "flash_attn_usable", lambda: False)
    assert resolve_attention("auto", "cuda:0", torch.bfloat16) == "sdpa"
    with pytest.raises(ModelLoadError, match="flash-attn"):
        resolve_attention("flash_attention_2", "cuda:0", torch.bfloat16)


# ------------------------------------------------------------------------------------------------ load


def test_load_demo_model(demo, demo_model_dir):
    from peft import PeftModel

    assert demo.is_demo and demo.device == "cpu" and demo.dtype is torch.float32 and demo.attention == "sdpa"
    assert demo.model_path == Path(demo_model_dir).resolve() and demo.commit is None
    assert type(demo.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert not isinstance(demo.model, PeftModel) and not demo.model.training
    assert next(demo.model.parameters()).dtype is torch.float32
    assert demo.provenance() == {"source": str(Path(demo_model_dir).resolve()), "revision": None, "commit": None,
                                 "adapter": None, "adapter_commit": None, "quantization": "none",
                                 "dtype": "float32", "attention": "sdpa", "device": "cpu", "demo": True}
    assert "(demo)" in demo.id_string() and "float32" in demo.id_string()


def test_progress_stages_and_cancel_between_stages(demo_model_dir, tmp_path):
    stages = []
    load_model(ModelSpec(source=str(demo_model_dir)), progress=lambda s, f: stages.append((s, f)))
    assert list(dict.fromkeys(s for s, _ in stages)) == ["resolve", "processor", "weights", "ready"]
    assert [f for _, f in stages] == sorted(f for _, f in stages) and stages[-1][1] == 1.0

    adapter = _make_adapter(demo_model_dir, tmp_path / "lora")[0]
    spec = ModelSpec(source=str(demo_model_dir), adapter=str(adapter))
    calls = []
    assert load_model(spec, cancel=lambda: calls.append(1) and False).adapter_path == adapter
    total = len(calls)  # 3 stage checks, one per weight-loading step, 1 before the adapter
    assert total > 10
    # 1: before resolving, 2: processor, 3: weights (before the loop), 4: first tensor, total: adapter
    for stop_at, where in [(1, "resolving"), (2, "processor"), (3, "weights"), (4, "weights"),
                           (total - 3, "weights"), (total, "adapter")]:
        calls = []

        def cancel():
            calls.append(1)
            return len(calls) >= stop_at

        seen = []
        with pytest.raises(LoadCancelled, match=where):
            load_model(spec, cancel=cancel, progress=lambda s, f: seen.append(s))
        assert len(calls) == stop_at
        assert "ready" not in seen


def test_cancel_during_the_weights_loop_stops_it_midway(demo_model_dir, monkeypatch):
    """A 7B load takes minutes: cancel must act inside transformers' tensor loop, not only after it."""
    from transformers import core_model_loading as cml

    original = cml.tqdm
    seen = []
    fractions = []

    def cancel():
        seen.append(1)
        return len(seen) > 3 + 5  # 3 stage checks, then 5 tensors

    with pytest.raises(LoadCancelled, match="loading the weights"):
        load_model(ModelSpec(source=str(demo_model_dir)), cancel=cancel,
                   progress=lambda s, f: fractions.append((s, f)))
    assert cml.tqdm is original  # the hook is removed again
    assert len(seen) == 9
    weights = [f for s, f in fractions if s == "weights"]
    assert weights and all(0.1 <= f < 0.9 for f in weights)


def test_loading_never_needs_torchvision_or_qwen_vl_utils(demo_model_dir, monkeypatch):
    for mod in (models_mod, sys.modules["repic_desktop.captioning.model_manager"]):
        tree = ast.parse(Path(mod.__file__).read_text(encoding="utf-8"))
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not imported & {"qwen_vl_utils", "torchvision"}
    monkeypatch.setitem(sys.modules, "qwen_vl_utils", None)  # importing it now raises ImportError
    monkeypatch.setitem(sys.modules, "torchvision", None)
    loaded = load_model(ModelSpec(source=str(demo_model_dir), max_pixels=112 * 112))
    out = loaded.processor(text=[_prompt(loaded)], images=[Image.new("RGB", (300, 200))], return_tensors="pt")
    loaded.check_grid(out["image_grid_thw"])


# ---------------------------------------------------------------------------------------- not available


def test_hub_id_not_in_cache_is_one_clear_sentence(tmp_path, demo_model_dir):
    with pytest.raises(ModelNotAvailable) as err:
        load_model(ModelSpec(source="Yeongtak/RePIC_Qwen2.5VL_7B", cache_dir=str(tmp_path / "empty-cache")))
    msg = str(err.value)
    assert "repic model download Yeongtak/RePIC_Qwen2.5VL_7B" in msg and "local" in msg
    assert "\n" not in msg and msg.count(". ") == 0
    with pytest.raises(ModelNotAvailable, match="does not exist"):
        load_model(ModelSpec(source=str(tmp_path / "no" / "such" / "folder")))
    with pytest.raises(ModelNotAvailable, match="adapter org/lora is not downloaded yet"):
        load_model(ModelSpec(source=str(demo_model_dir), adapter="org/lora", cache_dir=str(tmp_path / "c")))


def test_bad_folders_are_refused(tmp_path, demo_model_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(ModelSpec(source=str(empty)))

    adapter_only = tmp_path / "adapter-only"
    adapter_only.mkdir()
    (adapter_only / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="is a LoRA adapter"):
        load_model(ModelSpec(source=str(adapter_only)))

    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="bert model"):
        load_model(ModelSpec(source=str(other)))

    pickled = tmp_path / "pickled"
    shutil.copytree(demo_model_dir, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="only loads safetensors"):
        load_model(ModelSpec(source=str(pickled)))

    bin_adapter = tmp_path / "bin-adapter"
    bin_adapter.mkdir()
    (bin_adapter / "adapter_config.json").write_text("{}")
    (bin_adapter / "adapter_model.bin").write_bytes(b"\x80")
    with pytest.raises(ModelLoadError, match="adapter_model.safetensors"):
        load_model(ModelSpec(source=str(demo_model_dir), adapter=str(bin_adapter)))
    with pytest.raises(ModelLoadError, match="not a LoRA adapter"):
        load_model(ModelSpec(source=str(demo_model_dir), adapter=str(empty)))


# ---------------------------------------------------------------------------------------------- pixels


def test_pixel_limits_set_on_the_image_processor(demo):
    size = demo.processor.image_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (3136, 1024 * 28 * 28)
    # Not smuggled in through the tokenizer's init kwargs (which would override the image processor on
    # every call and be written to tokenizer_config.json on save).
    assert not {"size", "min_pixels", "max_pixels"} & set(demo.processor.tokenizer.init_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. the FutureWarning about per-call min_pixels/max_pixels
        demo.processor(text=[_prompt(demo)], images=[Image.new("RGB", (64, 64))], return_tensors="pt")


def test_checkpoint_limits_are_overridden(demo_model_dir, tmp_path):
    """A checkpoint configured like Qwen2.5-VL-7B-Instruct (max 12.8 MP), saved with stray limit kwargs."""
    d = tmp_path / "qwen-like"
    shutil.copytree(demo_model_dir, d)
    proc_cfg = json.loads((d / "processor_config.json").read_text())
    ip = proc_cfg["image_processor"]
    ip.pop("size", None)
    ip.update(min_pixels=3136, max_pixels=12845056)
    (d / "processor_config.json").write_text(json.dumps(proc_cfg))
    tok_cfg = json.loads((d / "tokenizer_config.json").read_text())
    tok_cfg["max_pixels"] = 12845056
    (d / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    loaded = load_model(ModelSpec(source=str(d)))
    out = loaded.processor(text=[_prompt(loaded)], images=[Image.new("RGB", (2000, 1500))], return_tensors="pt")
    loaded.check_grid(out["image_grid_thw"])
    (t, h, w), = out["image_grid_thw"].tolist()
    assert 0.8 * DEFAULT_MAX_PIXELS < t * h * w * 196 <= DEFAULT_MAX_PIXELS


def test_load_refuses_a_processor_that_ignores_the_limits(demo_model_dir, monkeypatch):
    monkeypatch.setattr(models_mod, "apply_pixel_limits", lambda *a, **k: None)  # pretend they were ignored
    # The demo's own limit is 224*224 px; asking for less must be caught at load time.
    with pytest.raises(PixelLimitError, match="ignored max_pixels"):
        load_model(ModelSpec(source=str(demo_model_dir), max_pixels=56 * 56))
    with pytest.raises(PixelLimitError, match="ignored min_pixels"):
        load_model(ModelSpec(source=str(demo_model_dir), min_pixels=112 * 112, max_pixels=224 * 224))


def test_big_image_stays_within_max_pixels(demo):
    out = demo.processor(text=[_prompt(demo)], images=[Image.new("RGB", (2000, 1500), (40, 90, 160))],
                         return_tensors="pt")
    (t, h, w), = out["image_grid_thw"].tolist()
    assert t * h * w * 14 * 14 <= DEFAULT_MAX_PIXELS
    assert t * h * w * 14 * 14 > DEFAULT_MAX_PIXELS * 0.8  # resized down to the cap, not far below it
    assert (h * 14) % 28 == 0 and (w * 14) % 28 == 0 and w > h  # multiples of 28 px, aspect kept
    demo.check_grid(out["image_grid_thw"])
    # Tiny images are scaled up to min_pixels.
    out = demo.processor(text=[_prompt(demo)], images=[Image.new("RGB", (20, 20))], return_tensors="pt")
    (t, h, w), = out["image_grid_thw"].tolist()
    assert t * h * w * 14 * 14 >= DEFAULT_MIN_PIXELS


def test_custom_limits_and_check_grid(demo_model_dir):
    loaded = load_model(ModelSpec(source=str(demo_model_dir), min_pixels=28 * 28, max_pixels=112 * 112))
    imgs = [Image.new("RGB", (2000, 1500)), Image.new("RGB", (640, 480))]
    out = loaded.processor(text=[_prompt(loaded, 2)], images=imgs, return_tensors="pt")
    assert all(t * h * w <= 112 * 112 // 196 for t, h, w in out["image_grid_thw"].tolist())
    loaded.check_grid(out["image_grid_thw"])

    check_grid([[1, 8, 8]], 112 * 112)  # exactly 64 patches: fine
    check_grid(torch.tensor([[1, 4, 4], [1, 8, 8]]), 112 * 112)
    with pytest.raises(PixelLimitError, match="Image 2"):
        check_grid(torch.tensor([[1, 4, 4], [1, 8, 10]]), 112 * 112)
    # A processor that ignores the limit (simulated by raising it behind the loader's back) is caught.
    loaded.processor.image_processor.size = {"shortest_edge": 3136, "longest_edge": 4096 * 28 * 28}
    out = loaded.processor(text=[_prompt(loaded)], images=[imgs[0]], return_tensors="pt")
    with pytest.raises(PixelLimitError, match="ignored max_pixels"):
        loaded.check_grid(out["image_grid_thw"])


# ------------------------------------------------------------------------------------------ generation


@pytest.fixture(scope="module")
def sampling_checkpoint(demo_model_dir, tmp_path_factory):
    """A copy of the demo model whose generation_config.json looks like Qwen2.5-VL-7B-Instruct's."""
    d = tmp_path_factory.mktemp("gen") / "demo-gen"
    shutil.copytree(demo_model_dir, d)
    cfg_path = d / "generation_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(do_sample=True, temperature=0.1, top_p=0.001, top_k=1, repetition_penalty=1.05)
    cfg_path.write_text(json.dumps(cfg))
    return d


def test_generation_config_is_greedy_with_checkpoint_extras(sampling_checkpoint, demo):
    loaded = load_model(ModelSpec(source=str(sampling_checkpoint)))
    gen = loaded.generation_config
    assert gen.repetition_penalty == 1.05  # the checkpoint's extra is honoured
    assert gen.do_sample is False and gen.num_beams == 1 and gen.max_new_tokens == 1024
    assert gen.temperature is None and gen.top_p is None and gen.top_k is None
    assert gen.eos_token_id == demo.generation_config.eos_token_id  # [<|im_end|>, <|endoftext|>]
    assert demo.generation_config.repetition_penalty in (None, 1.0)
    kw = generation_kwargs(loaded, max_new_tokens=7)
    assert set(kw) == {"generation_config"} and kw["generation_config"].max_new_tokens == 7
    assert loaded.generation_config.max_new_tokens == 1024  # the loaded one is not mutated
    assert generation_kwargs(loaded)["generation_config"].max_new_tokens == 1024
    with pytest.raises(ValueError):
        generation_kwargs(loaded, max_new_tokens=0)


def test_repetition_penalty_is_applied_and_decoding_is_greedy(sampling_checkpoint, caplog):
    loaded = load_model(ModelSpec(source=str(sampling_checkpoint)))
    ids = _text_ids(loaded)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        out = loaded.model.generate(**inputs, **generation_kwargs(loaded, max_new_tokens=6),
                                    return_dict_in_generate=True, output_scores=True, output_logits=True)
    noise = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [m for m in noise if any(k in m for k in ("temperature", "top_p", "top_k", "do_sample"))], noise
    # Step 1: for every token already in the prompt, processed score = raw logit penalised by 1.05.
    raw, score = out.logits[0][0], out.scores[0][0]
    seen = ids[0].unique()
    expected = torch.where(raw[seen] > 0, raw[seen] / 1.05, raw[seen] * 1.05)
    torch.testing.assert_close(score[seen], expected)
    unseen = torch.ones_like(raw, dtype=torch.bool)
    unseen[seen] = False
    torch.testing.assert_close(score[unseen], raw[unseen])
    # Greedy: each new token is the argmax of its processed scores, and runs repeat exactly.
    new = out.sequences[0, ids.shape[1]:]
    assert new.tolist() == [int(s[0].argmax()) for s in out.scores][:len(new)]
    again = loaded.model.generate(**inputs, **generation_kwargs(loaded, max_new_tokens=6))
    assert again[0].tolist() == out.sequences[0].tolist()


def test_generate_with_images_end_to_end(demo):
    imgs = [Image.new("RGB", (64, 48), (200, 30, 30)), Image.new("RGB", (48, 64), (30, 200, 30))]
    inputs = demo.processor(text=[_prompt(demo, 2)], images=imgs, return_tensors="pt")
    demo.check_grid(inputs["image_grid_thw"])
    out = demo.model.generate(**inputs, **demo.generation_kwargs(max_new_tokens=4))
    assert out.shape[1] <= inputs["input_ids"].shape[1] + 4


# -------------------------------------------------------------------------------------------- quantized


def test_quantization_refused_without_cuda(demo_model_dir, monkeypatch):
    monkeypatch.setattr(models_mod, "_cuda_available", lambda: False)
    for quant, words in (("4bit", "4-bit quantization needs an NVIDIA GPU"),
                         ("8bit", "8-bit quantization needs an NVIDIA GPU")):
        with pytest.raises(QuantizationUnavailable) as err:
            load_model(ModelSpec(source=str(demo_model_dir), quantization=quant))
        assert str(err.value).startswith(words) and "none" in str(err.value)


@pytest.mark.parametrize("quant, layer_type", [("4bit", "Linear4bit"), ("8bit", "Linear8bitLt")])
def test_quantized_load_keeps_vision_tower_and_lm_head_unquantized(demo_model_dir, quant, layer_type):
    loaded = load_model(ModelSpec(source=str(demo_model_dir), quantization=quant), allow_cpu_quantization=True)
    model = loaded.model
    quantized = quantized_module_names(model)
    lm_linears = [n for n, m in model.named_modules()
                  if n.startswith("model.language_model.") and isinstance(m, torch.nn.Linear)]
    assert quantized and sorted(quantized) == sorted(lm_linears)  # every LM linear, nothing else
    assert not [n for n in quantized if n.startswith("model.visual") or n.startswith("lm_head")]
    assert type(model.model.language_model.layers[0].self_attn.q_proj).__name__ == layer_type
    assert type(model.lm_head) is torch.nn.Linear
    visual_types = {type(m).__name__ for n, m in model.named_modules() if n.startswith("model.visual")}
    assert "Linear" in visual_types and not visual_types & {"Linear4bit", "Linear8bitLt"}
    if quant == "4bit":
        cfg = model.config.quantization_config
        assert cfg.bnb_4bit_quant_type == "nf4" and cfg.bnb_4bit_use_double_quant
        assert cfg.llm_int8_skip_modules == ["model.visual", "lm_head"]
    assert loaded.provenance()["quantization"] == quant
    out = loaded.processor(text=[_prompt(loaded)], images=[Image.new("RGB", (64, 64))], return_tensors="pt")
    seq = model.generate(**out, **loaded.generation_kwargs(max_new_tokens=3))
    assert seq.shape[1] > out["input_ids"].shape[1]


# ---------------------------------------------------------------------------------------------- adapter


def _make_adapter(demo_model_dir, out_dir: Path):
    """A LoRA on the LM's q/v projections with non-zero B (so it changes outputs); saved, plus the model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(demo_model_dir, dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=LORA_REGEX))
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    peft_model.eval()
    peft_model.save_pretrained(out_dir)
    return out_dir, peft_model


def test_adapter_is_applied_unmerged(demo_model_dir, demo, tmp_path):
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    adapter_dir, in_memory = _make_adapter(demo_model_dir, tmp_path / "my-lora")
    assert (adapter_dir / "adapter_model.safetensors").exists()
    loaded = load_model(ModelSpec(source=str(demo_model_dir), adapter=str(adapter_dir)))
    assert isinstance(loaded.model, PeftModel) and loaded.adapter_path == adapter_dir.resolve()
    lora_layers = {n: m for n, m in loaded.model.named_modules() if isinstance(m, LoraLayer)}
    assert len(lora_layers) == 4  # 2 layers x (q_proj, v_proj), none in the vision tower
    assert not any("visual" in n for n in lora_layers)
    assert not any(m.merged for m in lora_layers.values())  # applied, not merged into the weights
    assert all(m.lora_A for m in lora_layers.values())

    ids = _text_ids(loaded)
    adapted = _logits(loaded.model, ids)
    torch.testing.assert_close(adapted, _logits(in_memory, ids))
    assert not torch.allclose(adapted, _logits(demo.model, ids), atol=1e-3)
    prov = loaded.provenance()
    assert prov["adapter"] == str(adapter_dir.resolve())
    assert "adapter" in loaded.id_string()
    assert loaded.generation_config.do_sample is False
    ids = _text_ids(loaded)
    out = loaded.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                **loaded.generation_kwargs(max_new_tokens=3))
    assert out.shape[1] > ids.shape[1]

    # The same adapter as a hub id, found in the local cache (offline).
    from tests.helpers.hub_cache import fake_hub_repo

    cache = tmp_path / "hub"
    fake_hub_repo(cache, "me/my-lora", adapter_dir, "b" * 40)
    from_hub = load_model(ModelSpec(source=str(demo_model_dir), adapter="me/my-lora", cache_dir=str(cache)))
    torch.testing.assert_close(_logits(from_hub.model, ids), _logits(in_memory, ids))
    assert from_hub.provenance()["adapter"] == "me/my-lora" and from_hub.provenance()["adapter_commit"] == "b" * 40


def test_unload_drops_the_model(demo_model_dir):
    import gc
    import weakref

    loaded = load_model(ModelSpec(source=str(demo_model_dir)))
    ref = weakref.ref(loaded.model)
    unload(loaded)
    gc.collect()
    assert loaded.model is None and loaded.processor is None and ref() is None
    unload(None)  # harmless

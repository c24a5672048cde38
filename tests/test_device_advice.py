"""Before a caption job: no GPU, an old driver or too little GPU memory for the chosen precision is
said with what to do instead (captioning/device.py), in the CLI and in the GUI's caption dialog."""
from __future__ import annotations

import shutil

import pytest

from repic_desktop.captioning.device import (DEFAULT_WEIGHTS_BYTES, GiB, Compute, GpuInfo, advice_for_spec,
                                             caption_advice, compute_from_probe, needed_bytes)
from repic_desktop.captioning.models import ModelSpec
from repic_desktop.cli import main

CPU_BUILD = Compute("2.13.0+cpu", None, False, (), None)
CUDA_NO_DRIVER = Compute("2.13.0", "13.0", False, (), None)
OLD_DRIVER = Compute("2.13.0", "13.0", False, (), "535.104")
CPU_BUILD_ON_GPU = Compute("2.13.0+cpu", None, False, (), "580.65")


def gpu(gb: float, name="RTX 3060"):
    return Compute("2.13.0", "13.0", True, (GpuInfo(name, int(gb * GiB)),), "580.65")


def test_demo_model_runs_anywhere():
    for c in (CPU_BUILD, OLD_DRIVER, gpu(2), Compute(None)):
        assert caption_advice(c, is_demo=True, quantization="4bit", device="cuda").level == "ok"


def test_no_gpu_warns_with_the_alternatives_and_the_reason():
    a = caption_advice(CPU_BUILD, is_demo=False)
    assert a.level == "warn"
    t = a.text()
    assert "CPU-only build" in t and "minutes per photo" in t and "32 GB of memory" in t
    assert "server" in t and "demo model" in t
    assert "No NVIDIA GPU was found" in caption_advice(CUDA_NO_DRIVER, is_demo=False).text()
    # a GPU that this PyTorch cannot use: the installer's switch, or the driver
    assert "--torch cuda" in caption_advice(CPU_BUILD_ON_GPU, is_demo=False).text()
    t = caption_advice(OLD_DRIVER, is_demo=False).text()
    assert "driver 535.104" in t and "CUDA 13.0" in t and "update the driver" in t


def test_quantization_or_cuda_without_a_gpu_stops():
    a = caption_advice(OLD_DRIVER, is_demo=False, quantization="4bit")
    assert a.level == "stop" and a.text().startswith("4-bit loading needs an NVIDIA GPU")
    assert "quantization to none" in a.text() and "demo model" in a.text()
    a = caption_advice(CPU_BUILD, is_demo=False, device="cuda:0")
    assert a.level == "stop" and "cuda:0 was asked for" in a.text()
    assert caption_advice(Compute(None), is_demo=False).level == "stop"


@pytest.mark.parametrize("vram, quant, level, offers", [
    (24, "none", "ok", ()),
    (12, "none", "stop", ("4-bit", "8-bit")),     # bf16 weights alone (15.4 GiB) do not fit
    (16, "none", "warn", ("4-bit", "8-bit")),     # the weights fit, the rest of the job may not
    (12, "8bit", "ok", ()),
    (8, "8bit", "stop", ("4-bit",)),
    (8, "4bit", "ok", ()),
    (4, "4bit", "stop", ()),                      # nothing smaller to offer: a server or the demo
])
def test_gpu_memory_against_the_precision(vram, quant, level, offers):
    a = caption_advice(gpu(vram), is_demo=False, quantization=quant)
    assert a.level == level, a.text()
    for o in offers:
        assert f"load it in {o}" in a.text()
    if level != "ok":
        assert f"has {vram:.1f} GB" in a.text() or f"has {vram} GB" in a.text()
        assert "server" in a.text() and "demo model" in a.text()
        for o in {"4-bit", "8-bit"} - set(offers):
            assert f"load it in {o}" not in a.text()


def test_measured_weights_beat_the_7b_default():
    small = 2 * GiB   # a 1B model
    assert caption_advice(gpu(4), is_demo=False, weights_bytes=small).level == "ok"
    assert needed_bytes(DEFAULT_WEIGHTS_BYTES, "4bit") < needed_bytes(DEFAULT_WEIGHTS_BYTES, "8bit") \
        < needed_bytes(DEFAULT_WEIGHTS_BYTES, "none")


def test_the_chosen_gpu_is_the_one_measured():
    two = Compute("2.13.0", "13.0", True, (GpuInfo("big", 80 * GiB), GpuInfo("small", 6 * GiB)), "580")
    assert caption_advice(two, is_demo=False, device="cuda:0").level == "ok"
    assert caption_advice(two, is_demo=False, device="cuda:1").level == "stop"
    assert caption_advice(two, is_demo=False, device="cpu").level == "warn"


def test_gui_probe_dict_converts():
    assert compute_from_probe(None) is None
    c = compute_from_probe({"cuda": True, "torch": "2.13.0", "torch_cuda": "13.0", "driver": "580",
                            "devices": [{"index": 0, "name": "RTX 4060", "total_gb": 8.6}]})
    assert c.cuda_usable and c.gpus[0].name == "RTX 4060" and 7.9 * GiB < c.gpus[0].total_bytes < 8.1 * GiB


@pytest.fixture
def real_looking_model(demo_model_dir, tmp_path):
    """The demo model without its marker: to the app, an ordinary (non-demo) model folder."""
    d = tmp_path / "model"
    shutil.copytree(demo_model_dir, d)
    (d / "repic_demo_model.json").unlink()
    return d


def test_advice_for_spec_reads_the_folder(demo_model_dir, real_looking_model, tmp_path):
    assert advice_for_spec(ModelSpec(source=str(demo_model_dir)), CPU_BUILD).level == "ok"
    # measured: the tiny folder fits any GPU, where the 7B default would not
    assert advice_for_spec(ModelSpec(source=str(real_looking_model)), gpu(2)).level == "ok"
    assert advice_for_spec(ModelSpec(source=str(real_looking_model)), CPU_BUILD).level == "warn"
    # not downloaded: the loader's own message says what to do
    assert advice_for_spec(ModelSpec(source=str(tmp_path / "absent")), CPU_BUILD).level == "ok"


@pytest.fixture
def one_photo(tmp_path):
    from PIL import Image

    album = tmp_path / "album"
    album.mkdir()
    Image.new("RGB", (64, 48), (120, 30, 30)).save(album / "a.jpg")
    lib = ["--library", str(tmp_path / "lib.sqlite")]
    assert main([*lib, "import", str(album)]) == 0
    return lib


def test_cli_stops_before_loading_and_creates_no_job(one_photo, real_looking_model, capsys, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: 4-bit is possible here")
    capsys.readouterr()
    code = main([*one_photo, "caption", "--all", "--model", str(real_looking_model), "--quant", "4bit"])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.startswith("repic: error: 4-bit loading needs an NVIDIA GPU") and "demo model" in err
    assert main([*one_photo, "jobs", "list"]) == 0
    assert "no jobs" in capsys.readouterr().out


def test_cli_warns_on_the_cpu_then_captions(one_photo, real_looking_model, demo_model_dir, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    capsys.readouterr()
    code = main([*one_photo, "caption", "--all", "--model", str(real_looking_model), "--max-new-tokens", "3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "repic: warning: " in err and "runs on the CPU" in err and "demo model" in err
    # the demo model: nothing to warn about
    code = main([*one_photo, "caption", "--all", "--force", "--model", str(demo_model_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "warning" not in err

"""GRPO end to end on the tiny demo model: train 3 steps -> adapter saved (safetensors + manifest) ->
registered -> loaded unmerged by the caption engine -> greedy output differs from the base; resume;
the JSON progress stream of a real `python -m trainer` process (cancelled by SIGTERM); LoRA never in
the vision tower; adapter commands (activate refuses flagged, export, fp32 merge, remove)."""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from repic_desktop.core.library import Library
from tests.helpers.trainer_library import make_library

TINY = dict(num_generations=2, grad_accum=1, max_completion_length=16, eval_max_new_tokens=12, lora_r=8,
            lora_alpha=16, learning_rate=5e-2, max_pixels=56 * 56, device="cpu", eval_batch_size=4)


def letter_reward(completions, **_):
    """Stands in for RePIC's rewards, which the random demo model never earns (all-zero rewards give
    zero advantages and an adapter that never moves): a varying score makes the update non-zero."""
    from trainer.rewards import completion_text

    return [sum(ch in "aeiou" for ch in completion_text(c)) / max(1, len(completion_text(c))) for c in completions]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread while these tests run: the models are tiny, and on the shared 2-core machine
    two spinning OpenMP threads slow down up to 10x whenever another process takes a core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def trained(tmp_path_factory, demo_model_dir):
    """One 3-step run shared by the tests below (checkpoints at steps 2 and 3)."""
    import torch

    from trainer.train import Events, TrainConfig, train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # session-scoped: the autouse fixture has not run yet

    root = tmp_path_factory.mktemp("grpo")
    lib_path = make_library(root)
    stream = io.StringIO()
    cfg = TrainConfig(base=str(demo_model_dir), out=str(root / "run"), name="fam", max_steps=3, save_steps=2, **TINY)
    with Library(lib_path) as lib:
        result = train(cfg, lib, Events(True, stream), reward_functions=[letter_reward])
    torch.set_num_threads(threads)
    return {"root": root, "lib": lib_path, "result": result, "events": _events(stream.getvalue()), "cfg": cfg}


def test_adapter_saved_registered_with_manifest(trained):
    res = trained["result"]
    path = Path(res["path"])
    assert (path / "adapter_model.safetensors").exists() and (path / "adapter_config.json").exists()
    assert not list(path.glob("*.bin"))
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["base_model"] == trained["cfg"].base
    assert manifest["concepts"] == ["Anya", "Bond", "Cleo"]
    assert manifest["data"]["train"] > 0 and manifest["data"]["heldout"] >= 3
    assert manifest["hyperparameters"]["lora_r"] == 8 and manifest["hyperparameters"]["beta"] == 0.04
    assert manifest["metrics"]["steps"] == 3
    hp = manifest["hyperparameters"]
    assert hp["per_device_batch"] == 2 and hp["max_per_cell"] is None and hp["min_photos"] == 3
    assert hp["save_steps"] == 2 and hp["loss_type"] == "grpo" and hp["scale_rewards"] == "group"
    rc = json.loads((path.parent / "run_config.json").read_text())
    assert rc["name"] == "fam" and rc["config"]["lora_r"] == 8 and rc["config"]["max_steps"] == 3
    assert rc["heldout_photo_ids"] == sorted(h["photo_id"] for h in [{"photo_id": i} for i in rc["heldout_photo_ids"]])
    assert len(rc["heldout_photo_ids"]) == manifest["data"]["heldout"] and rc["train_samples"] == manifest["data"]["train"]
    assert set(manifest["metrics"]["before"]) == {"precision", "recall", "f1", "n"}
    # the random model names nobody before or after: not an improvement, so flagged
    assert manifest["improved"] is (manifest["metrics"]["after"]["f1"] > manifest["metrics"]["before"]["f1"])
    assert manifest["flagged"] is (not manifest["improved"])
    with Library(trained["lib"]) as lib:
        a = lib.adapters.get("fam")
        assert a.path == str(path) and a.base_model == trained["cfg"].base and a.manifest["flagged"] == res["flagged"]


def test_event_stream_schema(trained):
    ev = trained["events"]
    kinds = [e["event"] for e in ev]
    assert kinds[0] == "status" and "dataset" in kinds and kinds[-1] != "done"  # train() returns the payload
    ds = next(e for e in ev if e["event"] == "dataset")["summary"]
    assert set(ds) == {"tasks", "concepts", "train", "heldout", "warnings", "photos"}  # photos: per concept
    evals = [e for e in ev if e["event"] == "eval"]
    assert [e["phase"] for e in evals] == ["before", "after"]
    steps = [e for e in ev if e["event"] == "step"]
    assert [s["step"] for s in steps] == [1, 2, 3]
    for s in steps:
        assert set(s) == {"event", "step", "max_steps", "epoch", "loss", "reward", "rewards", "kl",
                          "completion_length", "eta_s"}
        assert s["max_steps"] == 3 and set(s["rewards"]) == {"ict", "oct", "vlt"}
        assert isinstance(s["reward"], float) and 0.0 <= s["reward"] <= 1.0


def test_lora_only_in_language_model(trained):
    from safetensors import safe_open

    with safe_open(str(Path(trained["result"]["path"]) / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
        nonzero_b = [k for k in keys if "lora_B" in k and f.get_tensor(k).abs().sum() > 0]
    assert keys and not [k for k in keys if "visual" in k]
    assert any("language_model" in k for k in keys)
    assert nonzero_b, "training did not move the adapter"


def test_engine_loads_adapter_unmerged_and_output_differs(trained, demo_model_dir):
    from peft import PeftModel

    from repic_desktop.captioning.engine import CaptionEngine, CaptionRequest
    from repic_desktop.captioning.models import ModelSpec, load_model
    from trainer.train import check_vision_untouched, lora_modules

    with Library(trained["lib"]) as lib:
        from trainer.dataset import build_dataset

        prompt = build_dataset(lib, seed=5).heldout[0].prompt
    outs = []
    for adapter in (None, trained["result"]["path"]):
        loaded = load_model(ModelSpec(source=str(demo_model_dir), adapter=adapter, device="cpu",
                                      max_pixels=56 * 56))
        if adapter:
            assert isinstance(loaded.model, PeftModel)  # applied, not merged
            assert lora_modules(loaded.model) and not [n for n in lora_modules(loaded.model) if "visual" in n]
            check_vision_untouched(loaded.model)
        engine = CaptionEngine.from_loaded(loaded, max_new_tokens=12, batch_size=1)
        outs.append(engine.caption([CaptionRequest(0, prompt)])[0].caption)
    assert outs[0] is not None and outs[1] is not None
    assert outs[0] != outs[1]


def test_resume_continues_from_checkpoint(trained, tmp_path):
    from trainer.train import Events, TrainConfig, train

    run = tmp_path / "run"
    shutil.copytree(trained["root"] / "run", run)
    shutil.rmtree(run / "checkpoints" / "checkpoint-3", ignore_errors=True)  # as if stopped after step 2
    lib_copy = tmp_path / "lib.sqlite"
    shutil.copy2(trained["lib"], lib_copy)
    stream = io.StringIO()
    cfg = TrainConfig(**{**trained["cfg"].__dict__, "out": str(run), "max_steps": 4, "resume": True})
    with Library(lib_copy) as lib:
        lib.adapters.remove("fam")  # registered at the original run's folder, not this copy's
        res = train(cfg, lib, Events(True, stream), reward_functions=[letter_reward])
        assert lib.adapters.get("fam").manifest["metrics"]["steps"] == 4
    steps = [e["step"] for e in _events(stream.getvalue()) if e["event"] == "step"]
    assert steps == [3, 4]  # steps 1-2 came from the checkpoint
    assert res["path"] == str((run / "adapter").resolve())
    with Library(lib_copy) as lib:
        cfg2 = TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "none"), "resume": True})
        from trainer.train import TrainError

        with pytest.raises(TrainError, match="nothing to resume"):
            train(cfg2, lib, Events(True, io.StringIO()))


def test_quant_4bit_on_cpu_is_a_clear_error(trained, tmp_path):
    from trainer.train import Events, TrainConfig, TrainError, train

    lib_copy = tmp_path / "lib.sqlite"
    shutil.copy2(trained["lib"], lib_copy)
    with Library(lib_copy) as lib:
        cfg = TrainConfig(**{**trained["cfg"].__dict__, "name": "q", "out": str(tmp_path / "q"), "quant": "4bit"})
        with pytest.raises(TrainError, match="4-bit .*needs an NVIDIA GPU"):
            train(cfg, lib, Events(True, io.StringIO()))


def test_cli_json_progress_and_cancel(trained, demo_model_dir, tmp_path):
    """A real `python -m trainer --json-progress`: every stdout line is one JSON event; SIGTERM after
    the first step stops at the next step with a checkpoint, an error event marked cancelled, exit 130."""
    lib_copy = tmp_path / "lib.sqlite"
    shutil.copy2(trained["lib"], lib_copy)
    cmd = [sys.executable, "-m", "trainer", "--library", str(lib_copy), "--base", str(demo_model_dir),
           "--out", str(tmp_path / "run"), "--name", "cli", "--max-steps", "40", "--num-generations", "2",
           "--grad-accum", "1", "--max-completion-length", "8", "--max-pixels", str(56 * 56), "--lora-r", "4",
           "--lora-alpha", "8", "--save-steps", "1000", "--skip-eval", "--device", "cpu", "--json-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=Path(__file__).resolve().parents[1])
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if json.loads(line)["event"] == "step":
                proc.send_signal(signal.SIGTERM)
                break
        lines.extend(proc.stdout)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read()
    events = [json.loads(line) for line in lines]  # every line parses, nothing else on stdout
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["status", "dataset"], stderr[-2000:]
    assert "step" in kinds and kinds[-1] == "error"
    last = events[-1]
    assert last["cancelled"] is True and "cancelled" in last["message"] and last["step"] < 40
    assert proc.returncode == 130
    assert last["checkpoint"] and Path(last["checkpoint"]).name == f"checkpoint-{last['step']}"
    with Library(lib_copy) as lib:
        assert [a.name for a in lib.adapters.all()] == ["fam"]  # a cancelled run registers nothing


def test_adapter_commands(trained, isolated_env, tmp_path, demo_model_dir):
    from repic_desktop.core.settings import Settings
    from trainer.__main__ import main

    lib_copy = tmp_path / "lib.sqlite"
    shutil.copy2(trained["lib"], lib_copy)
    lib_arg = ["--library", str(lib_copy)]
    path = trained["result"]["path"]
    assert trained["result"]["flagged"]  # the demo run cannot improve; that is what the refusal guards
    assert main(["adapters", *lib_arg, "activate", "fam"]) == 1
    with Library(lib_copy) as lib:
        assert Settings.load().active_adapter(lib) is None
    assert main(["adapters", *lib_arg, "activate", "fam", "--force"]) == 0
    s = Settings.load()
    with Library(lib_copy) as lib:
        assert s.active_adapter(lib) == path and s.model.source == str(demo_model_dir)

    assert main(["adapters", *lib_arg, "export", "fam", str(tmp_path / "exp")]) == 0
    assert (tmp_path / "exp" / "adapter_model.safetensors").exists() and (tmp_path / "exp" / "manifest.json").exists()

    assert main(["adapters", *lib_arg, "merge", "fam", str(tmp_path / "merged")]) == 0
    merged = tmp_path / "merged"
    assert list(merged.glob("*.safetensors")) and not list(merged.glob("*.bin"))
    import torch
    from safetensors import safe_open

    with safe_open(str(next(merged.glob("*.safetensors"))), "pt") as f:
        assert all(f.get_tensor(k).dtype == torch.float32 for k in list(f.keys())[:5])
    from repic_desktop.captioning.models import ModelSpec, load_model

    from repic_desktop.captioning.engine import CaptionEngine, CaptionRequest
    from trainer.dataset import build_dataset

    with Library(lib_copy) as lib:
        prompt = build_dataset(lib, seed=5).heldout[0].prompt
    outs = []
    for spec in (ModelSpec(source=str(merged), device="cpu", max_pixels=56 * 56),
                 ModelSpec(source=str(demo_model_dir), adapter=path, device="cpu", max_pixels=56 * 56)):
        engine = CaptionEngine.from_loaded(load_model(spec), max_new_tokens=12, batch_size=1)
        outs.append(engine.caption([CaptionRequest(0, prompt)])[0].caption)
    assert outs[0] and outs[0] == outs[1]  # the fp32 merge keeps the adapter's greedy output
    from repic_desktop.captioning.models import ModelLoadError

    for lora in (path, str(tmp_path / "exp")):  # the adapter, or an exported copy, on its own merge: refused
        with pytest.raises(ModelLoadError, match="already merged into"):
            load_model(ModelSpec(source=str(merged), adapter=lora, device="cpu", max_pixels=56 * 56))

    assert main(["adapters", *lib_arg, "remove", "fam"]) == 0
    with Library(lib_copy) as lib:
        assert Settings.load().active_adapter(lib) is None  # removing the active adapter deactivates it
        assert lib.adapters.all() == []
    assert Path(path).exists()  # files kept unless --delete-files


def test_resolve_adapter_source(trained, tmp_path):
    from repic_desktop.captioning.models import ModelLoadError, resolve_adapter_source

    path = trained["result"]["path"]
    with Library(trained["lib"]) as lib:
        assert resolve_adapter_source("fam", lib) == path
        assert resolve_adapter_source(path, lib) == str(Path(path).resolve())
        assert resolve_adapter_source("owner/some-lora", lib) == "owner/some-lora"
        assert resolve_adapter_source(None, lib) is None
        with pytest.raises(ModelLoadError, match="neither an adapter folder nor"):
            resolve_adapter_source("nobody", lib)
    with pytest.raises(ModelLoadError, match="not an adapter folder"):
        resolve_adapter_source("fam")  # without a library a bare name means nothing


def test_vision_guard_catches_lora_in_the_vit(demo_model_dir):
    """A plain name list (gate/up/down_proj) also matches the ViT's MLP: the guard must refuse it,
    and the trainer's own target regex must not."""
    import re

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from trainer.train import LORA_TARGETS, TrainError, check_vision_untouched

    model = AutoModelForImageTextToText.from_pretrained(demo_model_dir, dtype=torch.float32)
    names = [n for n, _ in model.named_modules()]
    assert any(re.fullmatch(LORA_TARGETS, n) for n in names)
    assert not any(re.fullmatch(LORA_TARGETS, n) for n in names if "visual" in n)
    bad = get_peft_model(model, LoraConfig(r=4, target_modules=["gate_proj", "up_proj", "down_proj"]))
    with pytest.raises(TrainError, match="vision tower"):
        check_vision_untouched(bad)


def test_qlora_4bit_path_runs(trained, demo_model_dir, tmp_path):
    """The QLoRA branch (NF4 base + prepare_model_for_kbit_training). bitsandbytes runs 4-bit on a
    CPU, slowly; the CLI refuses that, tests opt in to exercise the code path."""
    from safetensors import safe_open

    from trainer.train import Events, TrainConfig, train

    lib_copy = tmp_path / "lib.sqlite"
    shutil.copy2(trained["lib"], lib_copy)
    cfg = TrainConfig(**{**trained["cfg"].__dict__, "name": "q4", "out": str(tmp_path / "q4"), "quant": "4bit",
                         "allow_cpu_quantization": True, "skip_eval": True, "max_steps": 1})
    with Library(lib_copy) as lib:
        res = train(cfg, lib, Events(True, io.StringIO()), reward_functions=[letter_reward])
        assert lib.adapters.get("q4").manifest["hyperparameters"]["quant"] == "4bit"
    assert res["flagged"]  # no evaluation, no claim of improvement
    with safe_open(str(Path(res["path"]) / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and not [k for k in keys if "visual" in k]


def test_repic_caption_uses_a_registered_adapter_by_name(trained, demo_model_dir, tmp_path, capsys):
    """The issue's last mile: `repic caption --adapter NAME` finds the adapter repic-train registered."""
    import shutil

    from repic_desktop.cli import main as repic

    lib_copy = tmp_path / "lib.sqlite"
    shutil.copy(trained["lib"], lib_copy)
    args = ["--library", str(lib_copy), "caption", "1", "--force", "--model", str(demo_model_dir),
            "--max-new-tokens", "6", "--max-pixels", str(56 * 56), "--json"]
    capsys.readouterr()
    assert repic([*args, "--adapter", "fam"]) == 0
    tuned = json.loads(capsys.readouterr().out)
    assert tuned["provenance"]["adapter"] == trained["result"]["path"] and "error" not in tuned
    assert repic(args) == 0
    base = json.loads(capsys.readouterr().out)
    assert base["provenance"]["adapter"] is None and base["caption"] != tuned["caption"]
    assert repic([*args, "--adapter", "nobody"]) == 1
    assert "neither an adapter folder nor" in capsys.readouterr().err


def test_merge_refuses_an_adapter_without_safetensors(tmp_path, library):
    """A registered folder holding only a pickled adapter_model.bin is never loaded (it could run code)."""
    from trainer import adapters as ad

    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.bin").write_bytes(b"not loaded")
    library.adapters.register("old", folder, base_model="Qwen/Qwen2.5-VL-7B-Instruct")
    with pytest.raises(ad.AdapterError, match="only safetensors"):
        ad.merge(library, "old", str(tmp_path / "merged"))
    assert not (tmp_path / "merged").exists()


# ---- review fixes: resume and cancellation at every stage

class _CancelAt:
    """Events that set the cancel flag when a given status message is emitted (a signal at that stage)."""

    def __init__(self, flag, prefix):
        from trainer.train import Events

        self.inner, self.flag, self.prefix = Events(True, io.StringIO()), flag, prefix
        self.json_mode = True

    def emit(self, event, **data):
        self.inner.emit(event, **data)

    def status(self, message):
        self.inner.status(message)
        if self.prefix and message.startswith(self.prefix):
            self.flag.set = True

    def events(self):
        return _events(self.inner.stream.getvalue())


def _resume_copy(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained["root"] / "run", run)
    shutil.rmtree(run / "adapter")
    lib_copy = tmp_path / "lib.sqlite"
    shutil.copy2(trained["lib"], lib_copy)
    with Library(lib_copy) as lib:
        lib.adapters.remove("fam")
    return run, lib_copy


@pytest.mark.parametrize("stage,skip_eval", [("Scoring the trained adapter", False), ("Saving the adapter", True),
                                             ("Registering", True), (None, True)])
def test_resume_of_a_finished_run_and_cancel_at_every_late_stage(trained, tmp_path, stage, skip_eval):
    """The checkpoint already holds step 3 of 3: resuming trains no extra step. A cancel during the
    after-scoring, before saving or before registering ends cancelled with nothing registered."""
    from trainer.train import CancelFlag, TrainConfig, train

    run, lib_copy = _resume_copy(trained, tmp_path)
    flag = CancelFlag()
    events = _CancelAt(flag, stage)
    cfg = TrainConfig(base=trained["cfg"].base, out=str(run), resume=True, skip_eval=skip_eval, device="cpu",
                      eval_batch_size=1, explicit={"base", "out", "resume", "skip_eval", "device"})
    with Library(lib_copy) as lib:
        res = train(cfg, lib, events, cancel_flag=flag, reward_functions=[letter_reward])
        names = [a.name for a in lib.adapters.all()]
    ev = events.events()
    assert not [e for e in ev if e["event"] == "step"]  # no extra step
    if stage is None:
        assert names == ["fam"] and res["path"] == str((run / "adapter").resolve())
        assert json.loads((run / "adapter" / "manifest.json").read_text())["metrics"]["steps"] == 3
    else:
        assert res["cancelled"] and res["step"] == 3 and Path(res["checkpoint"]).name == "checkpoint-3"
        assert names == []
        if stage.startswith("Scoring"):
            assert not [e for e in ev if e["event"] == "eval" and e["phase"] == "after"]


def test_cancel_right_after_loading_stops_before_scoring(trained, tmp_path):
    from trainer.train import CancelFlag, TrainConfig, train

    lib_copy = tmp_path / "lib.sqlite"
    shutil.copy2(trained["lib"], lib_copy)
    flag = CancelFlag()
    events = _CancelAt(flag, "Loading the base model")
    cfg = TrainConfig(**{**trained["cfg"].__dict__, "name": "c", "out": str(tmp_path / "c")})
    with Library(lib_copy) as lib:
        res = train(cfg, lib, events, cancel_flag=flag, reward_functions=[letter_reward])
        assert [a.name for a in lib.adapters.all()] == ["fam"]
    assert res["cancelled"] and res["step"] == 0 and res["checkpoint"] is None
    msgs = [e.get("message", "") for e in events.events()]
    assert not [m for m in msgs if m.startswith(("Scoring", "Preparing", "Training"))]


def test_resume_takes_the_runs_settings_and_refuses_conflicts(trained, tmp_path, capsys):
    from trainer.__main__ import main

    run, lib_copy = _resume_copy(trained, tmp_path)
    base = ["--library", str(lib_copy), "--base", str(trained["cfg"].base), "--out", str(run), "--resume",
            "--json-progress"]
    capsys.readouterr()
    real = sys.stdout  # JSON mode points sys.stdout at stderr for the rest of the process
    try:
        assert main([*base, "--lora-r", "4"]) == 1
        last = _events(capsys.readouterr().out)[-1]
        assert last["event"] == "error" and "--lora-r" in last["message"] and "conflicts" in last["message"]
        sys.stdout = real
        assert main([*base, "--name", "other"]) == 1
        assert "--name" in _events(capsys.readouterr().out)[-1]["message"]
    finally:
        sys.stdout = real


def test_resume_never_replaces_another_registered_adapter(trained, tmp_path):
    from trainer.train import Events, TrainConfig, TrainError, train

    run = tmp_path / "other"
    shutil.copytree(trained["root"] / "run", run)
    (run / "run_config.json").unlink()  # even a run without its config
    lib_copy = tmp_path / "lib.sqlite"
    shutil.copy2(trained["lib"], lib_copy)
    cfg = TrainConfig(**{**trained["cfg"].__dict__, "out": str(run), "resume": True})
    with Library(lib_copy) as lib:
        with pytest.raises(TrainError, match="already an adapter called 'fam'.*not this run's folder"):
            train(cfg, lib, Events(True, io.StringIO()), reward_functions=[letter_reward])
        assert lib.adapters.get("fam").path == trained["result"]["path"]


def test_merge_into_an_existing_file_is_a_one_line_error(trained, tmp_path, capsys):
    from trainer.__main__ import main

    dest = tmp_path / "model.safetensors"
    dest.write_text("mine")
    assert main(["adapters", "--library", str(trained["lib"]), "merge", "fam", str(dest)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("repic-train: error:") and "\n" not in err and "Traceback" not in err
    assert dest.read_text() == "mine"


def test_training_with_the_users_defaults_on_photos_of_mixed_sizes(tmp_path, demo_model_dir, isolated_env):
    """issue 14: `repic-train --concepts A,B --max-steps 3 --num-generations 2` crashed in get_rope_index
    ("shape mismatch") whenever gradient accumulation was 2 (the default) and the batch held photos of
    different sizes: TRL laid right-padded image-token types over left-padded prompts. Everything here is
    the default a user gets (gradient accumulation, pixel limits, held-out split) except the step count and
    the completion length, which only make it fast."""
    from repic_desktop.cli import main as repic
    from tests.helpers.mixed_photos import make_mixed_size_photos
    from trainer.__main__ import main as repic_train

    photos = tmp_path / "photos"
    make_mixed_size_photos(photos)
    lib = ["--library", str(tmp_path / "lib.sqlite")]
    assert repic([*lib, "import", str(photos)]) == 0
    assert repic([*lib, "concept", "add", "Anya", "--kind", "person", "--ref", "1"]) == 0
    assert repic([*lib, "concept", "add", "Bond", "--kind", "pet", "--ref", "2"]) == 0
    for pid in (3, 4, 5, 6, 7):
        assert repic([*lib, "photo", "tag", str(pid), "Anya"]) == 0
    for pid in (6, 7, 8, 9, 10, 11, 12):
        assert repic([*lib, "photo", "tag", str(pid), "Bond"]) == 0
    code = repic_train([*lib, "--base", str(demo_model_dir), "--concepts", "Anya,Bond", "--max-steps", "2",
                        "--num-generations", "2", "--device", "cpu", "--max-completion-length", "16",
                        "--out", str(tmp_path / "run"), "--name", "mixed"])
    assert code == 0
    with Library(tmp_path / "lib.sqlite") as l2:
        assert l2.adapters.get("mixed") is not None

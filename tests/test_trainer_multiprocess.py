"""`repic-train --processes 2` for real, on the CPU (gloo) with the demo model: `accelerate launch`
starts two ranks that train together, and the run still makes one adapter, one manifest, one registered
row and one stream of progress events; SIGTERM to the launching process (the GUI's Cancel) stops both
ranks at the same step with a checkpoint; SIGKILL of it (the GUI's "Stop Now") leaves no rank running.
Plus the launch plan and TRL's vLLM options without starting anything."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from repic_desktop.core.library import Library
from tests.helpers.trainer_library import make_library

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--num-generations", "2", "--grad-accum", "1", "--max-completion-length", "8", "--max-pixels", str(56 * 56),
        "--lora-r", "4", "--lora-alpha", "8", "--eval-max-new-tokens", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def mp_library(tmp_path_factory):
    return make_library(tmp_path_factory.mktemp("mp"))


def _start(lib: Path, demo: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "trainer", "--library", str(lib), "--base", str(demo), "--processes", "2",
           *TINY, *extra]  # --json-progress, where given, is in `extra`
    # one thread per rank: two ranks on the shared 2-core machine
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _descendants(proc: subprocess.Popen) -> list:
    import psutil

    return psutil.Process(proc.pid).children(recursive=True)


def _all_gone(procs, timeout: float = 15.0) -> list[int]:
    """Pids among `procs` still running after `timeout` s (a zombie has stopped running)."""
    import psutil

    end = time.monotonic() + timeout
    while True:
        alive = []
        for p in procs:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p.pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > end:
            return alive
        time.sleep(0.2)


def test_two_processes_make_one_adapter_and_one_progress_stream(tmp_path, mp_library, demo_model_dir):
    lib = tmp_path / "lib.sqlite"
    shutil.copy2(mp_library, lib)
    t0 = time.monotonic()
    # default --out and --name: the name holds the time, so both ranks must take rank 0's
    proc = _start(lib, demo_model_dir, "--max-steps", "2", "--save-steps", "1", "--json-progress")
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, err[-3000:]
    events = [json.loads(line) for line in out.splitlines()]  # every stdout line is one JSON event
    kinds = [e["event"] for e in events]
    assert kinds[0] == "status" and "2 training processes" in events[0]["message"]
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2]  # once each, not once per rank
    statuses = [e["message"] for e in events if e["event"] == "status"]
    assert len(statuses) == len(set(statuses)), statuses
    assert kinds.count("dataset") == 1 and kinds.count("done") == 1 and kinds[-1] == "done"
    assert [e["phase"] for e in events if e["event"] == "eval"] == ["before", "after"]

    done = events[-1]
    adapters = lib.parent / "lib-files" / "adapters"
    assert [p.name for p in adapters.iterdir()] == [done["adapter"]]  # one run folder
    run = adapters / done["adapter"]
    outside_checkpoints = [p for p in run.rglob("*") if "checkpoints" not in p.relative_to(run).parts]
    assert [p.name for p in outside_checkpoints if p.name == "adapter_model.safetensors"] == [
        "adapter_model.safetensors"]
    assert [p.relative_to(run).as_posix() for p in outside_checkpoints if p.name == "manifest.json"] == [
        "adapter/manifest.json"]
    manifest = json.loads((run / "adapter" / "manifest.json").read_text())
    # the group of 2 generations is split between the 2 ranks: 1 each, and 1 prompt per step as with 1
    assert manifest["hyperparameters"]["processes"] == 2 and manifest["hyperparameters"]["per_device_batch"] == 1
    with Library(lib) as library:
        assert [a.name for a in library.adapters.all()] == [done["adapter"]]
    # both ranks trained: each saved its random state into the (single) checkpoint
    assert sorted(p.name for p in (run / "checkpoints" / "checkpoint-2").glob("rng_state_*.pth")) == [
        "rng_state_0.pth", "rng_state_1.pth"]
    print(f"2-process run: {seconds:.1f} s")


def _run_until_first_step(proc: subprocess.Popen) -> tuple[list[str], list]:
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if json.loads(line)["event"] == "step":
            return lines, _descendants(proc)
    raise AssertionError("no step event: " + proc.stderr.read()[-3000:])


def test_sigterm_to_the_launcher_cancels_every_rank_at_one_step(tmp_path, mp_library, demo_model_dir):
    lib = tmp_path / "lib.sqlite"
    shutil.copy2(mp_library, lib)
    proc = _start(lib, demo_model_dir, "--max-steps", "40", "--save-steps", "1000", "--skip-eval",
                  "--out", str(tmp_path / "run"), "--name", "cancel", "--json-progress")
    try:
        lines, ranks = _run_until_first_step(proc)
        proc.send_signal(signal.SIGTERM)
        lines.extend(proc.stdout)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read()
    assert len(ranks) >= 3, ranks  # the accelerate launcher and its two ranks
    events = [json.loads(line) for line in lines]
    last = events[-1]
    assert proc.returncode == 130, stderr[-3000:]
    assert last["event"] == "error" and last["cancelled"] is True and last["step"] < 40
    assert [e["event"] for e in events].count("error") == 1
    assert Path(last["checkpoint"]).name == f"checkpoint-{last['step']}"
    assert sorted(p.name for p in Path(last["checkpoint"]).glob("rng_state_*.pth")) == [
        "rng_state_0.pth", "rng_state_1.pth"]  # both ranks stopped at that step and saved it
    assert _all_gone(ranks, timeout=5) == []
    assert not (tmp_path / "run" / "adapter").exists()
    with Library(lib) as library:
        assert library.adapters.all() == []


def test_killing_the_launcher_ends_every_rank(tmp_path, mp_library, demo_model_dir):
    """Without --json-progress the ranks write straight to the inherited stderr, which stays open after
    the kill: no broken pipe ends them, only their watch on the launching process does (with JSON the
    next event would hit the dead parent's pipe, but that may be a long GPU step later)."""
    lib = tmp_path / "lib.sqlite"
    shutil.copy2(mp_library, lib)
    # far more steps than the wait below: ranks left running would still be training at its end
    proc = _start(lib, demo_model_dir, "--max-steps", "100000", "--save-steps", "100000", "--skip-eval",
                  "--out", str(tmp_path / "run"), "--name", "killed")
    seen, ranks = [], []
    try:
        for line in proc.stderr:
            seen.append(line)
            if "step 1/100000 " in line:  # after tqdm's bar, which ends in a carriage return
                break
        else:
            raise AssertionError("no step line: " + "".join(seen)[-3000:])
        ranks = _descendants(proc)
        proc.kill()  # what QProcess.kill() does: nothing is forwarded, the ranks must notice by themselves
        proc.wait(timeout=30)
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
        assert len(ranks) >= 3, ranks
        assert _all_gone(ranks) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in ranks:  # when the test fails: leave nothing training
            try:
                p.kill()
            except Exception:  # noqa: BLE001 - already gone
                pass


# ---- without starting processes ---------------------------------------------------------------------

def test_default_per_device_batch_splits_the_group():
    from trainer.launch import default_per_device_batch

    assert default_per_device_batch(8, 1) == 8      # one process: the whole group
    assert default_per_device_batch(8, 8) == 1      # RePIC on 8 GPUs
    assert default_per_device_batch(8, 2) == 4
    assert default_per_device_batch(8, 3) == 8      # no even split: a whole group per process


def test_launch_commands_use_the_shipped_configs():
    from trainer.launch import CONFIGS, launch_command

    argv = ["--base", "M", "--processes", "4"]
    cpu = launch_command(2, argv, gpu=False, bf16=False, distributed="ddp", port=1234)
    assert cpu[1:3] == ["-m", "accelerate.commands.launch"] and cpu[-6:] == ["-m", "trainer", *argv]
    assert "--multi_gpu" in cpu and "--config_file" not in cpu
    assert cpu[cpu.index("--num_processes") + 1] == "2" and cpu[cpu.index("--main_process_port") + 1] == "1234"
    ddp = launch_command(4, argv, gpu=True, bf16=True, distributed="ddp", port=1)
    assert ddp[ddp.index("--config_file") + 1] == str(CONFIGS / "accelerate_ddp.yaml")
    assert ddp[ddp.index("--mixed_precision") + 1] == "bf16"
    z2 = launch_command(4, argv, gpu=True, bf16=True, distributed="zero2", port=1)
    assert Path(z2[z2.index("--config_file") + 1]).is_file()
    assert Path(z2[z2.index("--deepspeed_config_file") + 1]) == CONFIGS / "deepspeed_zero2.json"


def test_launch_plan_refuses_what_cannot_work(monkeypatch):
    import torch

    from trainer.launch import LaunchError, plan

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert plan(2, "cpu", "ddp") == {"gpu": False, "bf16": False}
    assert plan(2, "auto", "ddp")["gpu"] is False
    with pytest.raises(LaunchError, match="one GPU"):
        plan(2, "cuda:1", "ddp")
    with pytest.raises(LaunchError, match="no usable CUDA"):
        plan(2, "cuda", "ddp")
    with pytest.raises(LaunchError, match="needs CUDA"):
        plan(2, "cpu", "zero2")


def test_processes_must_match_the_launchers(monkeypatch, capsys):
    from trainer.__main__ import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["--base", "M", "--processes", "3", "--json-progress"]) == 1
    event = json.loads(capsys.readouterr().out)
    assert event["event"] == "error" and "--processes 3" in event["message"]


def test_vllm_options_reach_trls_grpo_config(tmp_path):
    """The names are the installed TRL's (a rename there fails here, not on a user's GPU machine)."""
    from trl import GRPOConfig

    from trainer.train import TrainConfig, grpo_arguments

    cfg = TrainConfig(base="M", vllm="server", vllm_server_url="http://gpu7:8000", processes=2)
    args = GRPOConfig(**grpo_arguments(cfg, tmp_path, on_cuda=False, bf16=False, quiet=True))
    assert args.use_vllm is True and args.vllm_mode == "server" and args.vllm_server_base_url == "http://gpu7:8000"
    assert args.per_device_train_batch_size == 4  # 8 generations over 2 processes
    plain = GRPOConfig(**grpo_arguments(TrainConfig(base="M"), tmp_path, on_cuda=False, bf16=False, quiet=True))
    assert plain.use_vllm is False and plain.per_device_train_batch_size == 8

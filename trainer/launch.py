"""`repic-train --processes N`: one training run over N processes, started through `accelerate launch`.

The process the user (or the GUI's QProcess) started stays the parent of the whole run and is the only
one it needs to talk to:

* it runs `python -m accelerate.commands.launch ... -m trainer <the same arguments>` in a new session,
  so a terminal's Ctrl-C reaches only this process, which decides what the ranks get;
* cancel (SIGTERM or SIGINT) is sent as SIGTERM straight to every rank, each of which stops after the
  current step (the ranks agree on the step, see train.py) and rank 0 saves the checkpoint and reports.
  The launcher (torch's elastic agent) is not signalled: on a signal it gives the ranks 30 s before it
  kills them, less than one 7B GRPO step may take. A second signal kills every rank at once;
* each rank watches this process (REPIC_TRAIN_LAUNCHER_PID) and exits at once when it is gone, so
  killing it (the GUI's "Stop Now", SIGKILL) cannot leave ranks training on their own;
* with --json-progress the ranks' stdout comes through here: JSON lines are passed on (only rank 0
  writes events), anything else goes to stderr, and the exit code follows rank 0's last event (0 done,
  1 error, 130 cancelled), not the launcher's (which reports a cancelled rank as a failure).

CPUs: accelerate's `--cpu` launcher starts one process (more need MPI), so CPU runs use its multi-GPU
launcher (torchrun) and the trainer's use_cpu makes the ranks use gloo. GPUs: trainer/configs'
accelerate_ddp.yaml (DDP) or accelerate_zero2.yaml + deepspeed_zero2.json (`--distributed zero2`).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).resolve().parent / "configs"
LAUNCHER_PID_ENV = "REPIC_TRAIN_LAUNCHER_PID"
LAUNCHER_START_ENV = "REPIC_TRAIN_LAUNCHER_START"
EXIT_ERROR = 1
EXIT_CANCELLED = 130
EXIT_ORPHANED = 137  # the launcher was killed: the rank ends as if killed too
WATCH_INTERVAL_S = 0.5


class LaunchError(RuntimeError):
    """The run cannot be launched; the message is for the user."""


def world_size() -> int:
    """Processes in this run (1 outside `accelerate launch`)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def under_launcher() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def default_per_device_batch(num_generations: int, processes: int) -> int:
    """One prompt's group spread over the processes when it divides evenly (8 generations on 8 GPUs:
    1 each, RePIC's setting), so the prompts per optimizer step stay `grad_accum` whatever the process
    count; otherwise a whole group per process."""
    if processes > 1 and num_generations % processes == 0:
        return num_generations // processes
    return num_generations


def free_port() -> int:
    """A free local port for the ranks' rendezvous (29500, torchrun's default, may be taken by another run)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plan(processes: int, device: str, distributed: str) -> dict[str, Any]:
    """Where the ranks run: {"gpu": bool, "bf16": bool}. Raises LaunchError with what to change."""
    import torch

    cuda = torch.cuda.is_available()
    if device.startswith("cuda:"):
        raise LaunchError(f"--device {device} names one GPU; with --processes {processes} each process takes "
                          "its own GPU: use --device cuda (or auto)")
    if device == "cuda" and not cuda:
        raise LaunchError("--device cuda: no usable CUDA GPU here")
    gpu = cuda and device != "cpu"
    if gpu and torch.cuda.device_count() < processes:
        raise LaunchError(f"--processes {processes} needs {processes} GPUs, and {torch.cuda.device_count()} "
                          "are visible (CUDA_VISIBLE_DEVICES)")
    if distributed == "zero2":
        if not gpu:
            raise LaunchError("--distributed zero2 (DeepSpeed) needs CUDA GPUs: use --distributed ddp on CPUs")
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise LaunchError("--distributed zero2 needs DeepSpeed: `pip install deepspeed`, or use --distributed ddp")
    return {"gpu": gpu, "bf16": gpu and torch.cuda.is_bf16_supported()}


def launch_command(processes: int, argv: list[str], *, gpu: bool, bf16: bool, distributed: str,
                   port: int) -> list[str]:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
           "--num_machines", "1", "--main_process_port", str(port), "--dynamo_backend", "no",
           "--mixed_precision", "bf16" if bf16 else "no"]
    if not gpu:
        # --gpu_ids all: a user's default accelerate config naming one GPU must not stop a CPU run
        cmd += ["--multi_gpu", "--gpu_ids", "all"]
    elif distributed == "zero2":
        # the yaml's deepspeed_config_file is relative to the repository; this works from any folder
        cmd += ["--config_file", str(CONFIGS / "accelerate_zero2.yaml"),
                "--deepspeed_config_file", str(CONFIGS / "deepspeed_zero2.json")]
    else:
        cmd += ["--config_file", str(CONFIGS / "accelerate_ddp.yaml")]
    return cmd + ["-m", "trainer", *argv]


def _launch_env(processes: int, gpu: bool, cpu_threads: int | None) -> dict[str, str]:
    import psutil

    env = dict(os.environ)
    env[LAUNCHER_PID_ENV] = str(os.getpid())
    env[LAUNCHER_START_ENV] = repr(psutil.Process().create_time())
    env.setdefault("PYTHONUNBUFFERED", "1")
    if not gpu and cpu_threads is None and not env.get("OMP_NUM_THREADS", "").strip():
        # torchrun would give every rank 1 thread; share the cores but one between them instead
        from repic_desktop.captioning.cpu_threads import usable_cores

        env["OMP_NUM_THREADS"] = str(max(1, (usable_cores() - 1) // processes))
    return env


class Launch:
    """The running launcher and its ranks, and what the signals asked for."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.signals = 0
        self.signalled: set[int] = set()
        self.final: dict[str, Any] | None = None  # rank 0's last "done"/"error" event
        self._previous: dict[int, Any] = {}

    # -- signals
    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass

    def restore(self) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        self.signals += 1
        if self.signals == 1:
            self.forward()
        else:
            self.kill_all()

    def ranks(self) -> list:
        """The ranks: the launcher's children (torchrun runs inside it and starts them directly)."""
        import psutil

        if self.proc is None:
            return []
        try:
            return psutil.Process(self.proc.pid).children()
        except psutil.Error:
            return []

    def forward(self) -> None:
        """SIGTERM to every rank not signalled yet (ranks still starting get it when they appear)."""
        import psutil

        for child in self.ranks():
            if child.pid in self.signalled:
                continue
            self.signalled.add(child.pid)
            try:
                child.send_signal(signal.SIGTERM)
            except psutil.Error:
                pass

    def kill_all(self) -> None:
        import psutil

        for child in self.ranks():
            try:
                child.kill()
            except psutil.Error:
                pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    # -- output
    def pump(self, src, stream) -> None:
        """Rank output -> JSON lines to `stream`, anything else to stderr; remembers the last final event."""
        for raw in iter(src.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if isinstance(event, dict) and "event" in event:
                stream.write(line if line.endswith("\n") else line + "\n")
                stream.flush()
                if event["event"] in ("done", "error"):
                    self.final = event
            else:
                sys.stderr.write(line)
                sys.stderr.flush()

    def wait(self) -> int:
        assert self.proc is not None
        while True:
            try:
                return self.proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if self.signals == 1:
                    self.forward()


def run(argv: list[str], *, processes: int, device: str, distributed: str, cpu_threads: int | None,
        events, json_mode: bool, stream) -> int:
    """Launch the run over `processes` processes and wait for it; returns the exit code."""
    try:
        where = plan(processes, device, distributed)
    except LaunchError as exc:
        events.emit("error", message=str(exc))
        return EXIT_ERROR
    cmd = launch_command(processes, argv, gpu=where["gpu"], bf16=where["bf16"], distributed=distributed,
                         port=free_port())
    launch = Launch()
    launch.install()  # before the start: a cancel while accelerate is starting must not be lost
    reader = None
    try:
        events.status(f"Starting {processes} training processes on "
                      + ("GPUs" + (" (DeepSpeed ZeRO-2)" if distributed == "zero2" else "") if where["gpu"]
                         else "the CPU"))
        popen_kw: dict[str, Any] = {"start_new_session": True} if os.name == "posix" else \
            {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        launch.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE if json_mode else None,
                                       env=_launch_env(processes, where["gpu"], cpu_threads), **popen_kw)
        if launch.signals == 1:
            launch.forward()
        if json_mode:
            reader = threading.Thread(target=launch.pump, args=(launch.proc.stdout, stream), daemon=True)
            reader.start()
        code = launch.wait()
        if reader is not None:
            reader.join(timeout=10)
    finally:
        launch.restore()
        if launch.proc is not None and launch.proc.poll() is None:  # an exception here: leave nothing behind
            launch.kill_all()
    final = launch.final
    if final is not None:
        if final["event"] == "done":
            return 0
        return EXIT_CANCELLED if final.get("cancelled") else EXIT_ERROR
    if json_mode or code != 0:
        # rank 0 ended without reporting (killed, crashed, or cancelled before it could start)
        if launch.signals:
            how = "stopped at once" if launch.signals > 1 else "cancelled before training started"
            events.emit("error", message=f"cancelled ({how}); the last saved checkpoint is kept",
                        cancelled=True)
            return EXIT_CANCELLED
        if code != 0:
            events.emit("error", message=f"training failed: the training processes ended with exit code {code} "
                                         "(the log above says why)")
            return EXIT_ERROR
    return EXIT_CANCELLED if launch.signals else code


def watch_launcher() -> None:
    """In a rank started by `run`: exit at once when the launching `repic-train` is gone (killed), so no
    rank trains on without it. The start time guards against a reused pid."""
    pid = os.environ.get(LAUNCHER_PID_ENV)
    if not pid:
        return
    import psutil

    try:
        parent = psutil.Process(int(pid))
        start = float(os.environ.get(LAUNCHER_START_ENV) or parent.create_time())
        alive = abs(parent.create_time() - start) < 0.01
    except (psutil.Error, ValueError):
        alive = False
    if not alive:
        os._exit(EXIT_ORPHANED)

    def watch() -> None:
        while True:
            time.sleep(WATCH_INTERVAL_S)
            try:
                gone = not parent.is_running() or parent.status() == psutil.STATUS_ZOMBIE
            except psutil.Error:
                gone = True
            if gone:
                os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="repic-launcher-watch", daemon=True).start()

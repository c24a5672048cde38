"""`repic serve` as a real process on 127.0.0.1 for tests: a free port, start and wait until healthy."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"repic serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError("repic serve did not start")


def start_server(model_dir, port: int, tmp: Path, *, key: str | None = None,
                 adapters: dict[str, Path] | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", REPIC_CONFIG_DIR=str(tmp / "server-config"),
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "repic_desktop", "serve", "--model", str(model_dir), "--device", "cpu",
           "--port", str(port)]
    if key:
        env["REPIC_TEST_SERVER_KEY"] = key
        cmd += ["--api-key-env", "REPIC_TEST_SERVER_KEY"]
    for name, folder in (adapters or {}).items():
        cmd += ["--adapter", f"{name}={folder}"]
    log = tmp / f"serve-{port}.log"
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log)
    except Exception:
        proc.kill()
        raise
    return proc

"""Server benchmark (not a test): `repic serve` on the demo model over loopback.

Only ratios travel (these machines are shared and noisy); both sides of a ratio run in the same process
run on the same photos, alternating, and the best of `--repeats` is kept.

    python bench/server_bench.py                  # ~2 minutes on 2 cores
    python bench/server_bench.py --photos 8 --repeats 1

Measured:
 (a) N requests in flight vs 1 (throughput ratio): the remote backend with in_flight=N against
     `repic serve --batch-size N` (the server folds concurrent requests into engine batches).
 (b) remote vs local at N=1 (overhead ratio, goal <= 1.15x): the remote backend (in_flight 1) vs the
     local CaptionEngine (batch 1) on the same photos; the server's engine is the same code, so the
     difference is HTTP, PNG encode/decode and JSON. Captions compared.
The server runs with one torch thread and the local engine too, so neither side gets more cores.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, port: int, batch: int, log: Path) -> subprocess.Popen:
    import httpx

    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "repic_desktop", "serve", "--model", str(model_dir), "--device",
                             "cpu", "--port", str(port), "--batch-size", str(batch)],
                            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"repic serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit("repic serve did not start")


def photos(folder: Path, n: int):
    """n query photos of varied sizes sharing one concept with one reference (RePIC's eval layout)."""
    import random

    from PIL import Image

    from repic_desktop.captioning.prompt import CaptionPrompt, ImageRef, PromptConcept

    rng = random.Random(0)
    ref = folder / "ref.png"
    Image.effect_noise((160, 160), 40).convert("RGB").save(ref)
    concept = PromptConcept("Anya", "A girl with pink hair.", (ImageRef(str(ref)),))
    out = []
    for i in range(n):
        p = folder / f"q{i}.png"
        Image.effect_noise((rng.randrange(150, 400), rng.randrange(150, 300)), 30 + i).convert("RGB").save(p)
        out.append(CaptionPrompt((concept,), ImageRef(str(p))))
    return out


def timed(fn) -> tuple[float, list]:
    t0 = time.perf_counter()
    res = fn()
    return time.perf_counter() - t0, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=16)
    ap.add_argument("--in-flight", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--max-pixels", type=int, default=64 * 28 * 28)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from repic_desktop.captioning.demo_model import build_demo_model
    from repic_desktop.captioning.engine import CaptionEngine, CaptionRequest
    from repic_desktop.captioning.models import ModelSpec, load_model
    from repic_desktop.captioning.remote import RemoteBackend, RemoteOptions

    tmp = Path(tempfile.mkdtemp(prefix="server-bench-"))
    model_dir = tmp / "demo"
    build_demo_model(model_dir)
    prompts = photos(tmp, args.photos)
    requests = [CaptionRequest(i, p) for i, p in enumerate(prompts)]
    loaded = load_model(ModelSpec(source=str(model_dir), device="cpu", max_pixels=args.max_pixels))

    def local():
        eng = CaptionEngine.from_loaded(loaded, batch_size=1, max_new_tokens=args.new_tokens,
                                        min_new_tokens=args.new_tokens)
        return eng.caption(requests)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(model_dir, port, args.in_flight, tmp / "serve.log")
    try:
        def remote(n: int):
            def run():
                b = RemoteBackend(RemoteOptions(servers=[url], in_flight=n), max_new_tokens=args.new_tokens,
                                  min_new_tokens=args.new_tokens, max_pixels=args.max_pixels, repetition_penalty=1.0)
                try:
                    return sorted(b.caption(requests), key=lambda r: r.key)
                finally:
                    b.close()
            return run

        remote(1)()  # warm-up: first requests pay imports and allocator growth on the server
        local()
        best = {"local": 1e9, "remote1": 1e9, "remoteN": 1e9}
        caps = {}
        for _ in range(args.repeats):
            for name, fn in (("local", local), ("remote1", remote(1)), ("remoteN", remote(args.in_flight))):
                sec, res = timed(fn)
                best[name] = min(best[name], sec)
                caps[name] = [r.caption for r in sorted(res, key=lambda r: r.key)]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    n = args.photos
    print(f"{n} photos, {args.new_tokens} new tokens each, max_pixels {args.max_pixels}, demo model, loopback")
    print(f"local engine, batch 1:            {best['local']:.2f} s  ({n / best['local'] * 3600:.0f} photos/h)")
    print(f"remote, 1 in flight:              {best['remote1']:.2f} s  ({n / best['remote1'] * 3600:.0f} photos/h)")
    print(f"remote, {args.in_flight} in flight (server batch {args.in_flight}): {best['remoteN']:.2f} s  "
          f"({n / best['remoteN'] * 3600:.0f} photos/h)")
    print(f"(a) throughput, {args.in_flight} in flight vs 1: {best['remote1'] / best['remoteN']:.2f}x")
    print(f"(b) remote vs local at N=1 (overhead): {best['remote1'] / best['local']:.3f}x (goal <= 1.15x)")
    print(f"captions: remote(1) == local: {caps['remote1'] == caps['local']}; "
          f"remote({args.in_flight}) == local: {caps['remoteN'] == caps['local']}")


if __name__ == "__main__":
    main()

"""Caption engine benchmark (not a test): overhead, reference reuse and batching on a CPU-sized model.

Every number is printed next to a baseline measured in the same run on the same inputs, because these
machines are shared and noisy: only ratios travel. Other processes' CPU time during each measured section
is read from /proc (system busy time minus this process's utime+stime) and printed; a section that ran
contended is measured again and the less contended run is kept.

    python bench/caption_bench.py                    # ~3-5 minutes on 2 cores
    python bench/caption_bench.py --photos 8 --quick # smoke run

Model: a random Qwen2.5-VL, bigger than the demo model so compute dominates (text 512 x 4 layers, heads 8 /
kv 4, intermediate 1024; vision 256 x 4 layers, out 512), with the demo model's tokenizer and processor.
Photos: N photos sharing 2 concepts (one reference each), RePIC's eval layout.

Measured:
 (i)   engine, reuse off, batch 1  vs  bare `model.generate` on identical (pre-built) inputs  -> overhead
 (ii)  engine as users run it (reuse on, batch B)  vs  a faithful copy of RePIC's per-photo loop
       (apply_chat_template -> fetch_image per image -> processor(text, images) -> generate, batch 1,
       no caching) at 32 and 128 forced new tokens (min_new_tokens = max_new_tokens); captions compared
 (iii) peak RSS
 (iv)  --processes: the same comparison as whole processes, as a user meets it: `repic caption` on a library
       of the photos vs RePIC's script (bench/repic_loop_process.py), each from process start to exit,
       alternating; fixed costs (imports, model load, job setup) split out where the process reports them
Goals: (i) <= 1.10x, (ii) >= 1.5x.

OMP_WAIT_POLICY defaults to PASSIVE here (set it to ACTIVE to override): with spinning OpenMP threads a
process that takes one of the cores slows torch ~10x, with passive waiting only proportionally. Passive
waiting is ~25% slower for everyone, the ratios are the same.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import re
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# OpenMP threads that spin while waiting collapse (10x) when another process takes a core; passive
# waiting keeps a contended run merely slow. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from repic_desktop.captioning.demo_model import build_demo_model  # noqa: E402
from repic_desktop.captioning.engine import CaptionEngine, CaptionRequest  # noqa: E402
from repic_desktop.captioning.processor import load_processor  # noqa: E402
from repic_desktop.captioning.prompt import (  # noqa: E402
    QUERY_PREFIX,
    CaptionPrompt,
    ImageRef,
    PromptConcept,
    fetch_image,
)

CLK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


# ---- contention accounting ----------------------------------------------------------------------

def _system_busy() -> float:
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    v = [int(x) for x in parts]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return (sum(v[:8]) - idle) / CLK


def _self_cpu() -> float:
    with open("/proc/self/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    # utime, stime (all threads) and cutime, cstime (finished children: the whole-process runs)
    return (int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])) / CLK


class Section:
    def __enter__(self):
        self.sys0, self.self0, self.t0 = _system_busy(), _self_cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.own = _self_cpu() - self.self0
        self.others = max(0.0, _system_busy() - self.sys0 - self.own)
        self.contention = self.others / max(1e-9, self.wall * NCPU)  # share of the machine others used
        return False


THRESHOLD = 0.10  # others using more than 10% of the machine during a section = contended
DEADLINE = [float("inf")]  # past it: no more waiting for quiet or repeats (keeps the bench bounded)


def _over() -> bool:
    return time.perf_counter() > DEADLINE[0]


def wait_for_quiet(max_wait: float = 15.0, window: float = 0.5) -> float:
    """Wait (up to max_wait s) until other processes use < THRESHOLD of the machine; returns the wait."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_wait and not _over():
        with Section() as s:
            time.sleep(window)
        if s.contention < THRESHOLD:
            break
    return time.perf_counter() - t0


def measure(fn, label: str, retries: int = 1):
    """Run fn() in a Section; if others used > THRESHOLD of the machine, wait for quiet and run again,
    keeping the least contended run."""
    best = None
    for attempt in range(1 + retries):
        waited = wait_for_quiet()
        with Section() as s:
            out = fn()
        print(f"  [{label}: {s.wall:.2f}s wall, own CPU {s.own:.1f}s, others {s.others:.2f} CPU-s = "
              f"{100 * s.contention:.1f}% of machine{' (repeat)' if attempt else ''}"
              f"{f', waited {waited:.0f}s for quiet' if waited > 1 else ''}]", flush=True)
        if best is None or s.contention < best[0].contention:
            best = (s, out)
        if s.contention <= THRESHOLD or _over():
            break
    return best


def paired(chunks, run_a, run_b, label_a: str, label_b: str, retries: int = 1):
    """A and B on the same chunks, alternately (A,B then B,A: drift cancels). A chunk pair during which
    others used > THRESHOLD of the machine is redone after waiting for quiet (the quieter pair is kept).
    run_b must be idempotent per chunk when redone (the engine's cache makes a redo slightly cheaper;
    a redo is reported). Returns (wall_a, wall_b, outs_a, outs_b, worst contention, redone chunks)."""
    wa = wb = 0.0
    outs_a, outs_b = [], []
    worst, redone = 0.0, 0
    for k, chunk in enumerate(chunks):
        best = None
        for attempt in range(1 + retries):
            wait_for_quiet()
            order = [("a", run_a), ("b", run_b)] if k % 2 == 0 else [("b", run_b), ("a", run_a)]
            res = {}
            for name, fn in order:
                with Section() as s:
                    out = fn(chunk)
                res[name] = (s, out)
            cont = max(res["a"][0].contention, res["b"][0].contention)
            if best is None or cont < best[0]:
                best = (cont, res)
            if cont <= THRESHOLD or _over():
                break
            redone += 1
        cont, res = best
        wa += res["a"][0].wall
        wb += res["b"][0].wall
        outs_a.extend(res["a"][1])
        outs_b.extend(res["b"][1])
        worst = max(worst, cont)
    print(f"  [{label_a}: {wa:.2f}s, {label_b}: {wb:.2f}s; worst chunk contention {100 * worst:.1f}%, "
          f"{redone} chunk pair(s) redone]", flush=True)
    return wa, wb, outs_a, outs_b, worst, redone


# ---- model and photos --------------------------------------------------------------------------

def build_bench_model(out: Path, seed: int = 0):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    build_demo_model(out)  # tokenizer, processor, generation_config, marker
    cfg = json.loads((out / "config.json").read_text())
    text = cfg.get("text_config", {})
    ids = {k: cfg[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": text["vocab_size"], "hidden_size": 512, "intermediate_size": 1024,
            "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 4,
            "max_position_embeddings": 8192,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [8, 12, 12]},
            "bos_token_id": text.get("bos_token_id"), "eos_token_id": text.get("eos_token_id"),
            "pad_token_id": text.get("pad_token_id"),
        },
        vision_config={
            "depth": 4, "hidden_size": 256, "intermediate_size": 688, "num_heads": 4, "out_hidden_size": 512,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
            "fullatt_block_indexes": [1, 3], "tokens_per_second": 2,
        },
        tie_word_embeddings=False, **ids,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.save_pretrained(out)  # overwrites weights + config; generation_config stays the demo's
    return out


def make_photos(root: Path, n: int, seed: int = 0) -> list[str]:
    rnd = random.Random(seed)
    paths = []
    for i in range(n + 2):
        w, h = rnd.randint(360, 640), rnd.randint(300, 560)
        im = Image.new("RGB", (w, h), tuple(rnd.randint(0, 255) for _ in range(3)))
        for _ in range(60):
            x, y, s = rnd.randint(0, w - 1), rnd.randint(0, h - 1), rnd.randint(8, 60)
            im.paste(tuple(rnd.randint(0, 255) for _ in range(3)), (x, y, x + s, y + s))
        p = root / f"p{i:03d}.jpg"
        im.save(p, quality=90)
        paths.append(str(p))
    return paths


# ---- RePIC's own loop, faithfully (caption_eval_multi_2.py, qwen_vl_utils replaced by fetch_image) ----

def repic_loop(model, processor, prompts: list[CaptionPrompt], new_tokens: int) -> list[str]:
    out = []
    for prompt in prompts:
        content = []
        for i, c in enumerate(prompt.concepts, start=1):
            for r in c.references:
                content.append({"type": "image", "image": r.path})
            content.append({"type": "text", "text": f"{i}. Name: <{c.name}>, Info: {c.info}"})
        content.append({"type": "image", "image": prompt.query.path})
        content.append({"type": "text", "text": QUERY_PREFIX + prompt.request})
        message = [{"role": "system", "content": prompt.system}, {"role": "user", "content": content}]
        text = processor.apply_chat_template(message, tokenize=False, add_generation_prompt=True)
        image_inputs = [fetch_image(ImageRef(x["image"])) for x in content if x["type"] == "image"]
        inputs = processor(text=[text], images=image_inputs, padding=True, return_tensors="pt")
        generated_ids = model.generate(**inputs, use_cache=True, max_new_tokens=new_tokens,
                                       min_new_tokens=new_tokens, do_sample=False)
        trimmed = [o[len(i):] for i, o in zip(inputs.input_ids, generated_ids)]
        out.append(processor.batch_decode(trimmed, skip_special_tokens=True, clean_up_tokenization_spaces=False)[0])
    return out


# ---- whole processes: `repic caption` vs RePIC's script --------------------------------------------

def _repic(lib: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "repic_desktop", "--library", str(lib), *args], env=env,
                          capture_output=True, text=True, check=True)


def bench_processes(mdir: Path, tmp: Path, prompts: list[CaptionPrompt], maxp: int, new_tokens: int,
                    rounds: int) -> tuple[float, float, bool, float]:
    """(RePIC script s, `repic caption` s, same captions, worst contention), the times the median of `rounds`
    alternating runs."""
    env = dict(os.environ, REPIC_CONFIG_DIR=str(tmp / "config"), HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    album = tmp / "album"
    album.mkdir()
    for p in prompts:  # the library holds the photos to caption; references are files added to concepts
        os.link(p.query.path, album / Path(p.query.path).name)
    lib = tmp / "lib" / "library.sqlite"
    _repic(lib, "import", str(album), "--quiet", env=env)
    for c in prompts[0].concepts:
        kind = "pet" if c.name == "Bond" else "person"
        _repic(lib, "concept", "add", c.name, "--kind", kind, "--info", c.info, "--ref", c.references[0].path, env=env)
    job = {"photos": [str(album / Path(p.query.path).name) for p in prompts], "max_pixels": maxp,
           "new_tokens": new_tokens, "system": prompts[0].system, "request": prompts[0].request,
           "concepts": [{"name": c.name, "info": c.info, "ref": c.references[0].path} for c in prompts[0].concepts]}
    (tmp / "job.json").write_text(json.dumps(job))
    loop_script = Path(__file__).with_name("repic_loop_process.py")
    caption_args = ["caption", "--all", "--force", "--quiet", "--model", str(mdir), "--max-pixels", str(maxp),
                    "--max-new-tokens", str(new_tokens), "--min-new-tokens", str(new_tokens)]
    for c in prompts[0].concepts:
        caption_args += ["--concept", c.name]

    def run_repic_script():
        out = subprocess.run([sys.executable, str(loop_script), str(mdir), str(tmp / "job.json")], env=env,
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def run_repic_caption():
        err = _repic(lib, *caption_args, env=env).stderr
        job_s = float(re.findall(r"\(([\d.]+) s\)", err)[-1])
        con = sqlite3.connect(lib)
        try:
            rows = con.execute("SELECT p.path, c.text FROM photos p JOIN captions c ON c.id = p.current_caption_id")
            return {"job": job_s, "captions": dict(rows.fetchall())}
        finally:
            con.close()

    a_walls, b_walls, a_info, b_info, worst = [], [], [], [], 0.0
    for r in range(rounds):
        order = [("a", run_repic_script), ("b", run_repic_caption)]
        for name, fn in (order if r % 2 == 0 else order[::-1]):
            wait_for_quiet()
            with Section() as s:
                info = fn()
            print(f"  [{'RePIC script' if name == 'a' else 'repic caption'}: {s.wall:.2f}s wall, others "
                  f"{100 * s.contention:.1f}% of machine]", flush=True)
            (a_walls if name == "a" else b_walls).append(s.wall)
            worst = max(worst, s.contention)
            (a_info if name == "a" else b_info).append(info)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    wa, wb = med(a_walls), med(b_walls)
    ia = a_info[a_walls.index(wa)]
    ib = b_info[b_walls.index(wb)]
    print(f"  RePIC script: imports {ia['import']:.2f}s, model+processor load {ia['load']:.2f}s, loop {ia['loop']:.2f}s, "
          f"rest (interpreter start and exit) {wa - ia['import'] - ia['load'] - ia['loop']:.2f}s")
    print(f"  repic caption: job (engine + commits) {ib['job']:.2f}s, everything else (start, imports, model "
          f"load, job setup, exit) {wb - ib['job']:.2f}s")
    return wa, wb, ia["captions"] == ib["captions"], worst


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=20)
    ap.add_argument("--max-pixels", type=int, default=336 * 336)
    ap.add_argument("--batch-sizes", default="1,2,4,8")
    ap.add_argument("--quick", action="store_true", help="skip the 128-token section and the batch sweep")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--processes", type=int, default=3, metavar="ROUNDS",
                    help="whole-process rounds of `repic caption` vs RePIC's script (0: skip)")
    ap.add_argument("--only-processes", action="store_true", help="only the whole-process comparison")
    ap.add_argument("--budget", type=float, default=270.0,
                    help="seconds after which contended sections are no longer repeated")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t_all = time.perf_counter()
    DEADLINE[0] = t_all + args.budget
    tmp = Path(tempfile.mkdtemp(prefix="caption-bench-"))
    mdir = build_bench_model(tmp / "model")
    photos = make_photos(tmp, args.photos)
    maxp = args.max_pixels

    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(mdir, dtype=torch.float32).eval()
    proc = load_processor(mdir)
    # RePIC's processor: AutoProcessor.from_pretrained(path, max_pixels=...) (min: the checkpoint's 3136)
    repic_proc = load_processor(mdir, max_pixels=maxp)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.1f}M params, torch threads {torch.get_num_threads()} "
          f"(OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), {NCPU} CPUs, "
          f"max_pixels {maxp} (<= {maxp // 784} visual tokens/image), {args.photos} photos, 2 concepts")

    anya = PromptConcept("Anya", "A young girl with pink hair and big green eyes.", (ImageRef(photos[0]),))
    bond = PromptConcept("Bond", "A white dog wearing a black bow tie.", (ImageRef(photos[1]),))
    prompts = [CaptionPrompt((anya, bond), ImageRef(p)) for p in photos[2:]]
    requests = [CaptionRequest(i, p) for i, p in enumerate(prompts)]

    def eng(**kw):
        kw.setdefault("max_pixels", maxp)
        return CaptionEngine(model, proc, **kw)

    NT = 32
    if args.processes:
        print(f"(iv) whole processes, {len(prompts)} photos, {NT} forced new tokens, {args.processes} rounds, "
              "alternating")
        pa, pb, psame, pcont = bench_processes(mdir, tmp, prompts, maxp, NT, args.processes)
        process_row = ("(iv) RePIC script / `repic caption`, processes", pa, pb, pa / pb, "", psame, pcont)
        if args.only_processes:
            print(f"{process_row[0]}: {pa:.2f}s / {pb:.2f}s = {pa / pb:.2f}x, same captions {psame}")
            return 0

    # warm-up (first-call allocations, lazy imports)
    eng(batch_size=1, max_new_tokens=4).caption(requests[:1])
    repic_loop(model, repic_proc, prompts[:1], 4)

    rows = []

    # (i) overhead: engine (reuse off, batch 1) vs bare generate on identical, pre-built inputs
    n_i = min(len(prompts), 8)
    from repic_desktop.captioning.prompt import render

    built = {}
    for i, p in enumerate(prompts[:n_i]):
        imgs = [fetch_image(r) for r in p.images()]
        built[i] = repic_proc(text=[render(p)], images=imgs, return_tensors="pt")

    def bare(chunk):
        outs = []
        for i in chunk:
            b = built[i]
            o = model.generate(**b, max_new_tokens=NT, min_new_tokens=NT, do_sample=False)
            outs.append(proc.batch_decode(o[:, b["input_ids"].shape[1]:], skip_special_tokens=True,
                                          clean_up_tokenization_spaces=False)[0])
        return outs

    def engine_off(chunk):
        e = eng(batch_size=1, reuse_references=False, max_new_tokens=NT, min_new_tokens=NT)
        return [r.caption for r in e.caption([requests[i] for i in chunk])]

    def engine_off_noprefetch(chunk):
        e = eng(batch_size=1, reuse_references=False, prefetch=False, max_new_tokens=NT, min_new_tokens=NT)
        return [r.caption for r in e.caption([requests[i] for i in chunk])]

    print(f"(i) overhead, {n_i} photos, {NT} new tokens, chunks of 4 photos, alternating")
    wa, wb, oa, ob, cont, _ = paired(_chunks(list(range(n_i)), 4), engine_off, bare,
                                     "engine reuse off b1", "bare generate")
    rows.append(("(i) engine reuse-off b1 / bare generate", wa, wb, wa / wb, "<= 1.10", oa == ob, cont))
    wa, wb, oa, ob, cont, _ = paired(_chunks(list(range(n_i)), 4), engine_off_noprefetch, bare,
                                     "engine reuse off b1, no prefetch", "bare generate")
    rows.append(("     same, prefetch thread off", wa, wb, wa / wb, "", oa == ob, cont))

    # batch-size sweep (reuse on) at 32 tokens: informs the engine's default batch size
    default_bs = inspect.signature(CaptionEngine).parameters["batch_size"].default
    if not args.quick and not _over():
        print(f"batch sweep, reuse on, {len(requests)} photos, {NT} new tokens")
        sweep = {}
        for bs in [int(x) for x in args.batch_sizes.split(",")]:
            s, _ = measure(lambda: eng(batch_size=bs, max_new_tokens=NT, min_new_tokens=NT).caption(requests),
                           f"engine reuse on, batch {bs}")
            sweep[bs] = s.wall
        print("  sweep: " + ", ".join(f"b{k}: {v:.2f}s ({len(requests) / v:.2f} photos/s)" for k, v in sweep.items())
              + f"; engine default batch {default_bs}")

    # (ii) engine as users run it (defaults: reuse on, default batch size) vs RePIC's loop, on chunks of
    # 2 batches, alternating; one engine for the whole run (its reference cache lives for the run)
    chunk = 2 * default_bs
    for NT2 in ([32] if args.quick else [32, 128]):
        print(f"(ii) {len(requests)} photos, {NT2} forced new tokens, chunks of {chunk} photos, alternating")
        e = eng(max_new_tokens=NT2, min_new_tokens=NT2)
        wa, wb, oa, ob, cont, _ = paired(
            _chunks(list(range(len(requests))), chunk),
            lambda c: repic_loop(model, repic_proc, [prompts[i] for i in c], NT2),
            lambda c: [r.caption for r in e.caption([requests[i] for i in c])],
            "RePIC loop", f"engine as users run it (reuse on, batch {default_bs})")
        st = e.stats
        print(f"  engine stats: vision cache hits {st.vision_cache_hits} misses {st.vision_cache_misses}, "
              f"prepare {st.prepare_seconds:.2f}s, vision {st.vision_seconds:.2f}s, generate {st.generate_seconds:.2f}s")
        rows.append((f"(ii) RePIC loop / engine b{default_bs} @{NT2} tok", wa, wb, wa / wb, ">= 1.5", oa == ob, cont))
        print(f"  RePIC loop: {wa / len(requests):.2f} s per caption")
        if NT2 != 32:
            continue
        # where the gain comes from (paired against the RePIC loop too): reuse alone, batching alone
        for label, kw in [("reuse on, batch 1", dict(batch_size=1)),
                          (f"reuse off, batch {default_bs}", dict(reuse_references=False))]:
            ev = eng(max_new_tokens=NT2, min_new_tokens=NT2, **kw)
            va, vb, voa, vob, vcont, _ = paired(
                _chunks(list(range(len(requests))), chunk),
                lambda c: repic_loop(model, repic_proc, [prompts[i] for i in c], NT2),
                lambda c, ev=ev: [r.caption for r in ev.caption([requests[i] for i in c])],
                "RePIC loop", f"engine {label}")
            rows.append((f"     RePIC loop / engine {label}", va, vb, va / vb, "", voa == vob, vcont))

    if args.processes:
        rows.append(process_row)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(f"{'measurement':44s} {'A s':>7s} {'B s':>7s} {'A/B':>6s} {'goal':>7s} {'same text':>9s} {'contention':>10s}")
    for name, a, b, r, goal, same, cont in rows:
        print(f"{name:44s} {a:7.2f} {b:7.2f} {r:6.2f} {goal:>7s} {str(same):>9s} {100 * cont:9.1f}%")
    print(f"(iii) peak RSS {rss_mb:.0f} MB (model {n_params * 4 / 2**20:.0f} MB fp32); "
          f"total bench time {time.perf_counter() - t_all:.0f}s")
    print("every row is a paired measurement (same photos, alternating order); contention: worst chunk pair"
          + ("; (iv): median of alternating whole-process runs" if args.processes else ""))
    return 0


def _chunks(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


if __name__ == "__main__":
    sys.exit(main())

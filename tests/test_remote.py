"""Captioning on a server: `repic serve` started as a real process on 127.0.0.1 with the demo model,
the remote backend and the CLI talking to it over HTTP (nothing of the protocol is mocked)."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from repic_desktop.cli import main
from tests.helpers.repic_server import free_port, start_server

KEY = "test-key-3f9c"


def make_adapter(demo_model_dir, out_dir: Path) -> Path:
    """A LoRA on the demo model's q/v projections with non-zero B, so it changes the captions."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(demo_model_dir, dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8,
                                                 target_modules=r".*language_model.*\.(q_proj|v_proj)"))
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    peft_model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def adapter_dir(demo_model_dir, tmp_path_factory):
    return make_adapter(demo_model_dir, tmp_path_factory.mktemp("adapter") / "family")


@pytest.fixture(scope="module")
def server(demo_model_dir, adapter_dir, tmp_path_factory):
    """`repic serve` with the demo model, the same model + an adapter served as "family", and an API key."""
    tmp = tmp_path_factory.mktemp("server")
    port = free_port()
    proc = start_server(demo_model_dir, port, tmp, key=KEY, adapters={"family": adapter_dir})
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def album(tmp_path, isolated_env, monkeypatch):
    """A library with 4 photos of different sizes (one larger than the pixel limit used below, so the
    client's second resize matters) and one concept with a reference photo, tagged on two photos."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    d = tmp_path / "album"
    d.mkdir()
    Image.new("RGB", (96, 64), (200, 30, 30)).save(d / "a.jpg")
    Image.new("RGB", (120, 64), (30, 200, 30)).save(d / "b.jpg")
    Image.effect_noise((300, 200), 60).convert("RGB").save(d / "noise.png")
    Image.new("RGB", (112, 64), (30, 30, 200)).save(d / "blue.jpg")
    ref = tmp_path / "anya.jpg"
    Image.new("RGB", (60, 60), (250, 180, 200)).save(ref)
    lib = ["--library", str(tmp_path / "lib.sqlite")]
    assert main([*lib, "import", str(d), "--json"]) == 0
    assert main([*lib, "concept", "add", "Anya", "--kind", "person", "--info", "A girl.", "--ref", str(ref)]) == 0
    for name in ("a.jpg", "noise.png"):
        assert main([*lib, "photo", "tag", str(d / name), "Anya"]) == 0
    return {"lib": lib, "path": tmp_path / "lib.sqlite", "dir": d}


def caption_lines(capsys, *argv) -> tuple[int, list[dict], str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def test_remote_captions_equal_local_ones_and_no_key_is_stored(server, demo_model_dir, album, capsys, monkeypatch):
    monkeypatch.setenv("REPIC_API_KEY", KEY)
    common = [*album["lib"], "caption", "--all", "--force", "--model", str(demo_model_dir), "--max-pixels", "12544",
              "--json"]
    code, local, _ = caption_lines(capsys, *common, "--device", "cpu")
    assert code == 0 and len(local) == 4
    code, remote, _ = caption_lines(capsys, *common, "--server", server)
    assert code == 0 and len(remote) == 4
    by_photo = {r["photo"]: r for r in remote}
    for lo in local:
        re_ = by_photo[lo["photo"]]
        assert re_["caption"] == lo["caption"]
        assert re_["provenance"]["prompt_tokens"] == lo["provenance"]["prompt_tokens"]  # same image sizes
    assert len({r["caption"] for r in local}) > 1  # the photos do give different captions
    prov = remote[0]["provenance"]
    assert prov["backend"] == "remote" and prov["server"] == server
    assert prov["served_model"] == str(demo_model_dir) and prov["source"] == str(demo_model_dir)
    assert local[0]["provenance"]["backend"] == "local"
    raw = album["path"].read_bytes() + b"".join(p.read_bytes() for p in album["path"].parent.glob("lib.sqlite*"))
    assert KEY.encode() not in raw


def test_adapter_served_by_name_matches_local_adapter_and_is_in_provenance(server, demo_model_dir, adapter_dir,
                                                                          album, capsys, monkeypatch):
    monkeypatch.setenv("REPIC_API_KEY", KEY)
    common = [*album["lib"], "caption", "--all", "--force", "--model", str(demo_model_dir), "--max-pixels", "12544",
              "--json"]
    code, local, _ = caption_lines(capsys, *common, "--device", "cpu", "--adapter", str(adapter_dir))
    assert code == 0 and len(local) == 4
    code, plain, _ = caption_lines(capsys, *common, "--server", server)
    code, remote, _ = caption_lines(capsys, *common, "--server", server, "--served-model", "family")
    assert code == 0 and len(remote) == 4
    by_photo = {r["photo"]: r["caption"] for r in remote}
    assert all(by_photo[lo["photo"]] == lo["caption"] for lo in local)
    assert [r["caption"] for r in remote] != [r["caption"] for r in plain]  # the adapter changes captions
    prov = remote[0]["provenance"]
    assert prov["served_model"] == "family" and prov["adapter"] == "family" and prov["source"] == str(demo_model_dir)
    with sqlite3.connect(album["path"]) as conn:
        assert conn.execute("SELECT adapter_id FROM captions WHERE id = ?", (remote[0]["caption_id"],)).fetchone() == \
            ("family",)


def test_wrong_key_is_one_line_error_and_leaves_no_job(server, demo_model_dir, album, capsys, monkeypatch):
    monkeypatch.setenv("REPIC_API_KEY", "wrong")
    code, _, err = caption_lines(capsys, *album["lib"], "caption", "--all", "--model", str(demo_model_dir),
                                 "--server", server)
    assert code == 1
    assert err.count("\n") == 1 and "refused the API key (HTTP 401)" in err
    code, jobs, _ = caption_lines(capsys, *album["lib"], "jobs", "list", "--json")
    assert jobs == [[]]


def test_two_servers_one_dead_job_finishes(server, demo_model_dir, album, capsys, monkeypatch):
    monkeypatch.setenv("REPIC_API_KEY", KEY)
    dead = f"http://127.0.0.1:{free_port()}"
    code, out, _ = caption_lines(capsys, *album["lib"], "caption", "--all", "--model", str(demo_model_dir),
                                 "--server", dead, "--server", server, "--json")
    assert code == 0 and len(out) == 4 and all(r["caption"] and r["provenance"]["server"] == server for r in out)


def test_server_test_command_checks_the_prompt(server, demo_model_dir, capsys, monkeypatch, isolated_env):
    monkeypatch.setenv("REPIC_API_KEY", KEY)
    capsys.readouterr()
    assert main(["server", "test", server, "--model", str(demo_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "API key: accepted" in out and "prompt check: same prompt as RePIC" in out


def test_request_bodies_hold_only_vllm_chat_fields(demo_model_dir, tmp_path):
    from repic_desktop.captioning.remote import (SENT_FIELDS, VLLM_CHAT_REQUEST_FIELDS, RemoteBackend, RemoteOptions,
                                                 sample_prompt)

    backend = RemoteBackend(RemoteOptions(servers=["http://127.0.0.1:9"], served_model="m"), max_new_tokens=64,
                            min_new_tokens=3, repetition_penalty=1.05)
    try:
        body = backend.body(sample_prompt(tmp_path))
    finally:
        backend.close()
    assert set(body) == set(SENT_FIELDS) and set(body) <= VLLM_CHAT_REQUEST_FIELDS
    assert body["temperature"] == 0 and body["repetition_penalty"] == 1.05 and body["max_tokens"] == 64
    system, user = body["messages"]
    assert system["role"] == "system" and system["content"].startswith("You are a captioning assistant.")
    kinds = [p["type"] for p in user["content"]]
    assert kinds == ["image_url", "text", "image_url", "text"]  # reference, its line, query, request
    assert user["content"][1]["text"] == "1. Name: <Anya>, Info: A girl with pink hair."
    assert all(p["image_url"]["url"].startswith("data:image/png;base64,") for p in user["content"] if "image_url" in p)


def test_official_openai_client_talks_to_repic_serve(server, demo_model_dir, tmp_path):
    import openai

    from repic_desktop.captioning.remote import encode_image, sample_prompt

    client = openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in client.models.list()] == [str(demo_model_dir), "family"]
    prompt = sample_prompt(tmp_path)
    ref, query = (encode_image(r) for r in prompt.images())
    reply = client.chat.completions.create(
        model=str(demo_model_dir), temperature=0, max_tokens=8,
        messages=[{"role": "system", "content": "You are a captioning assistant."},
                  {"role": "user", "content": [{"type": "image_url", "image_url": {"url": ref}},
                                               {"type": "text", "text": "1. Name: <Anya>, Info: A girl."},
                                               {"type": "image_url", "image_url": {"url": query}},
                                               {"type": "text", "text": "This is the query image. Caption it."}]}])
    assert isinstance(reply.choices[0].message.content, str) and reply.usage.completion_tokens >= 1
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server + "/v1", api_key="nope", max_retries=0).models.list()


def test_a_server_refusing_many_images_gets_one_sentence(server, tmp_path, monkeypatch):
    from repic_desktop.captioning.engine import CaptionRequest
    from repic_desktop.captioning.prompt import CaptionPrompt, PromptConcept
    from repic_desktop.captioning.remote import RemoteBackend, RemoteOptions, ServerConfigError, sample_prompt

    monkeypatch.setenv("REPIC_API_KEY", KEY)
    base = sample_prompt(tmp_path)
    many = CaptionPrompt(tuple(PromptConcept(f"P{i}", "x", base.concepts[0].references * 4) for i in range(4)),
                         base.query)  # 17 images; repic serve takes 16, like vLLM's --limit-mm-per-prompt
    backend = RemoteBackend(RemoteOptions(servers=[server], served_model="family"), max_new_tokens=4)
    try:
        with pytest.raises(ServerConfigError, match="refuses prompts with 17 images.*--limit-mm-per-prompt"):
            backend.caption([CaptionRequest(1, many)])
    finally:
        backend.close()


def test_plain_http_elsewhere_needs_opt_in_and_credentials_are_stripped():
    from repic_desktop.captioning.remote import RemoteError, ServerAddress

    with pytest.raises(RemoteError, match="unencrypted"):
        ServerAddress.parse("http://gpu-box.lan:8000")
    a = ServerAddress.parse("http://user:pw@gpu-box.lan:8000/v1/", allow_http=True)
    assert a.url == "http://gpu-box.lan:8000" and a.api == "http://gpu-box.lan:8000/v1" and "pw" not in repr(a)
    assert ServerAddress.parse("localhost:8000").url == "http://localhost:8000"
    assert ServerAddress.parse("gpu.example.org").url == "https://gpu.example.org"


def test_killed_server_pauses_the_job_and_resume_finishes_it(demo_model_dir, album, tmp_path):
    """The server dies after the first caption and stays down: the job pauses with the reason. Resumed
    with the server back, it loses the server again after one caption, but this time the server
    returns within the backend's patience: the run waits and finishes by itself. Every photo ends with
    exactly one caption of this job."""
    import threading

    from repic_desktop.captioning.backends import remote_backend_for_job
    from repic_desktop.captioning.jobs import job_params, run_caption_job
    from repic_desktop.captioning.models import ModelSpec
    from repic_desktop.core.jobs import JobStore
    from repic_desktop.core.library import Library

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(demo_model_dir, port, tmp_path)
    try:
        with Library(album["path"]) as lib:
            store = JobStore(lib)
            spec = ModelSpec(source=str(demo_model_dir), max_pixels=12544)
            import dataclasses

            params = job_params(model=dataclasses.asdict(spec), concepts=None, request="Give a caption of the image.",
                                system_preset="repic", max_refs=1, batch_size=1, max_pixels=12544, max_new_tokens=8,
                                backend={"kind": "remote", "servers": [url], "served_model": None, "in_flight": 1})
            photos = [p.id for p in lib.photos.list()]
            job = store.create(photos, params)

            def kill_after_first(outcome):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

            backend = remote_backend_for_job(params, patience=1.5)
            backend.connect()
            summary = run_caption_job(lib, job.id, backend, model_provenance=backend.provenance(),
                                      on_outcome=kill_after_first)
            backend.close()
            assert summary.done == 1 and summary.remaining == 3
            assert "no server has answered" in summary.stopped and url in summary.stopped
            paused = store.get(job.id)
            assert paused.status == "paused" and "no server has answered" in paused.error

            holder = {"proc": start_server(demo_model_dir, port, tmp_path)}

            def kill_and_restart(outcome):
                if "restarting" not in holder:
                    holder["restarting"] = threading.Thread(
                        target=lambda: holder.update(proc=start_server(demo_model_dir, port, tmp_path)))
                    holder["proc"].kill()
                    holder["proc"].wait()
                    holder["restarting"].start()

            backend = remote_backend_for_job(params, patience=120)
            try:
                summary = run_caption_job(lib, job.id, backend, model_provenance=backend.provenance(),
                                          on_outcome=kill_and_restart)
            finally:
                backend.close()
                holder["restarting"].join()
                proc = holder["proc"]
            assert summary.done == 3 and summary.remaining == 0 and summary.stopped is None
            assert store.get(job.id).status == "done"
        conn = sqlite3.connect(album["path"])
        rows = conn.execute("SELECT photo_id, COUNT(*) FROM captions GROUP BY photo_id").fetchall()
        conn.close()
        assert sorted(rows) == sorted((pid, 1) for pid in photos)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def test_unknown_model_and_unreachable_host_are_one_sentence(server, demo_model_dir, album, capsys, monkeypatch):
    monkeypatch.setenv("REPIC_API_KEY", KEY)
    base = [*album["lib"], "caption", "--all", "--model", str(demo_model_dir)]
    code, _, err = caption_lines(capsys, *base, "--server", server, "--served-model", "nope")
    assert code == 1 and err.count("\n") == 1
    assert f"{server} serves no model named 'nope' (it serves: {demo_model_dir}, family)" in err
    dead = f"http://127.0.0.1:{free_port()}"
    code, _, err = caption_lines(capsys, *base, "--server", dead)
    assert code == 1 and err.count("\n") == 1
    assert f"no server answered: {dead}: the connection was refused or the host is unreachable" in err


class _Flaky:
    """A real HTTP server in front of `repic serve` that answers the first chat requests with 503 (then
    429) before passing requests through: what a busy or restarting vLLM does."""

    def __init__(self, upstream: str, failures: list[int]):
        import http.server
        import threading

        import httpx

        flaky = self
        self.failures = list(failures)
        self.seen: list[int] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _reply(self, status: int, body: bytes, headers=()) -> None:
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if method == "POST" and self.path.endswith("/chat/completions") and flaky.failures:
                    status = flaky.failures.pop(0)
                    flaky.seen.append(status)
                    self._reply(status, b'{"error": {"message": "busy"}}', [("Retry-After", "0")])
                    return
                r = httpx.request(method, upstream + self.path, content=body or None, timeout=60,
                                  headers={"Authorization": self.headers.get("Authorization", ""),
                                           "Content-Type": "application/json"})
                flaky.seen.append(r.status_code)
                self._reply(r.status_code, r.content, [("Content-Type", "application/json")])

            def do_GET(self):
                self._forward("GET")

            def do_POST(self):
                self._forward("POST")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_busy_server_503_and_429_are_retried(server, demo_model_dir, album, capsys, monkeypatch):
    monkeypatch.setenv("REPIC_API_KEY", KEY)
    flaky = _Flaky(server, [503, 503, 429])
    try:
        code, out, _ = caption_lines(capsys, *album["lib"], "caption", "--all", "--model", str(demo_model_dir),
                                     "--server", flaky.url, "--in-flight", "1", "--json")
    finally:
        flaky.close()
    assert code == 0 and len(out) == 4 and all(r["caption"] for r in out)
    assert flaky.seen == [200, 503, 503, 429, 200, 200, 200, 200]  # models list, 3 refusals, 4 captions

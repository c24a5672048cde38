"""Model files: offline-friendly downloads, the Hugging Face cache listing, hub ids resolved from the cache
without network, and the `repic model` commands.  HF_HUB_OFFLINE=1 is set by conftest.py.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from repic_desktop.captioning import model_manager as mm
from repic_desktop.captioning.model_manager import (
    DownloadError,
    ModelNotAvailable,
    OfflineError,
    download_model,
    list_models,
    progress_tqdm_class,
    resolve_local,
    snapshot_complete,
)
from repic_desktop.cli import main
from tests.helpers.hub_cache import fake_hub_repo
from tests.helpers.cli_run import run

COMMIT_A = "a" * 40
COMMIT_B = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hub_cache(demo_model_dir, tmp_path_factory):
    """A cache with the demo model (2 revisions), a LoRA adapter and an unrelated (bert) repo."""
    cache = tmp_path_factory.mktemp("hub-cache")
    fake_hub_repo(cache, "org/demo-vl", demo_model_dir, COMMIT_A, refs=("main",))
    time.sleep(0.01)
    fake_hub_repo(cache, "org/demo-vl", demo_model_dir, COMMIT_B, refs=("v2",))
    adapter = tmp_path_factory.mktemp("adapter-src")
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"not really")
    fake_hub_repo(cache, "org/my-lora", adapter, COMMIT_A)
    bert = tmp_path_factory.mktemp("bert-src")
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (bert / "model.safetensors").write_bytes(b"x" * 10)
    fake_hub_repo(cache, "org/some-bert", bert, COMMIT_A)
    return cache


# -------------------------------------------------------------------------------------------- download


def test_download_offline_fails_fast_with_one_sentence(tmp_path):
    start = time.monotonic()
    with pytest.raises(OfflineError) as err:
        download_model("Yeongtak/RePIC_Qwen2.5VL_7B", cache_dir=tmp_path)
    assert time.monotonic() - start < 2
    msg = str(err.value)
    assert "offline" in msg and "HF_HUB_OFFLINE" in msg and "\n" not in msg
    assert not any(tmp_path.iterdir())  # nothing was written


def test_download_rejects_bad_ids(tmp_path):
    for bad in ["not a repo id", "../../etc", "just-a-name", "a/b/c"]:
        with pytest.raises(DownloadError, match="not a Hugging Face model id"):
            download_model(bad, cache_dir=tmp_path)


def test_download_maps_hub_errors_without_network(monkeypatch, tmp_path):
    """Online paths, with snapshot_download stubbed (no network here): friendly errors, patterns, result."""
    import huggingface_hub
    from huggingface_hub import errors as hf_errors

    monkeypatch.setattr(mm, "hub_offline", lambda: False)
    calls = []

    def fake_snapshot(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        raise hf_errors.LocalEntryNotFoundError("connection refused")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    with pytest.raises(OfflineError, match="Cannot reach the Hugging Face Hub"):
        download_model("org/model", revision="v1", cache_dir=tmp_path)
    repo_id, kwargs = calls[0]
    assert repo_id == "org/model" and kwargs["revision"] == "v1" and kwargs["cache_dir"] == str(tmp_path)
    assert "*.safetensors" in kwargs["allow_patterns"] and "*.json" in kwargs["allow_patterns"]
    assert not any(p.endswith((".bin", ".py", ".pt", ".pth", ".ckpt")) for p in kwargs["allow_patterns"])

    good = tmp_path / "snap"
    good.mkdir()
    (good / "model.safetensors").write_bytes(b"")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: str(good))
    assert download_model("org/model") == good
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: str(pickled))
    with pytest.raises(DownloadError, match="only loads safetensors"):
        download_model("org/model")


def test_progress_callback_class():
    seen = []
    cls = progress_tqdm_class(lambda desc, done, total: seen.append((desc, done, total)))
    bar = cls(total=100, desc="Downloading bytes", name="ignored")
    bar.update(40)
    bar.update(60)
    bar.close()
    assert seen[0] == ("Downloading bytes", 0, 100) and seen[-1] == ("Downloading bytes", 100, 100)
    broken = progress_tqdm_class(lambda *a: 1 / 0)(total=1)
    broken.update(1)  # a failing callback does not break the download
    broken.close()


# ------------------------------------------------------------------------------------------------- list


def test_list_models_on_empty_or_missing_cache(tmp_path):
    assert list_models(tmp_path / "does-not-exist") == []
    (tmp_path / "empty").mkdir()
    assert list_models(tmp_path / "empty") == []


def test_list_models_finds_qwen_models_and_adapters(hub_cache):
    models = list_models(hub_cache)
    assert [(m.repo_id, m.kind) for m in models] == [("org/demo-vl", "model"), ("org/my-lora", "adapter")]
    demo = models[0]
    assert demo.model_type == "qwen2_5_vl" and demo.size_on_disk > 100_000
    assert {r.commit for r in demo.revisions} == {COMMIT_A, COMMIT_B}
    assert {r.commit: r.refs for r in demo.revisions} == {COMMIT_A: ["main"], COMMIT_B: ["v2"]}
    assert all(r.complete for r in demo.revisions)
    assert json.loads(json.dumps(demo.as_dict()))["revisions"][0]["commit"] in (COMMIT_A, COMMIT_B)
    everything = list_models(hub_cache, all_models=True)
    assert [m.repo_id for m in everything] == ["org/demo-vl", "org/my-lora", "org/some-bert"]
    assert everything[2].kind == "other" and everything[2].model_type == "bert"


def test_snapshot_complete_checks_shards(tmp_path):
    d = tmp_path / "sharded"
    d.mkdir()
    (d / "config.json").write_text("{}")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    (d / "model-00001-of-00002.safetensors").write_bytes(b"")
    assert not snapshot_complete(d)
    (d / "model-00002-of-00002.safetensors").write_bytes(b"")
    assert snapshot_complete(d)


# ---------------------------------------------------------------------------------- resolve and load


def test_resolve_hub_id_from_cache_offline(hub_cache, demo_model_dir):
    path, commit = resolve_local("org/demo-vl", cache_dir=hub_cache)
    assert commit == COMMIT_A and path == hub_cache / "models--org--demo-vl" / "snapshots" / COMMIT_A
    assert resolve_local("org/demo-vl", revision="v2", cache_dir=hub_cache)[1] == COMMIT_B
    assert resolve_local("org/demo-vl", revision=COMMIT_B, cache_dir=hub_cache)[1] == COMMIT_B
    with pytest.raises(ModelNotAvailable, match=r"revision v3\) is not downloaded yet"):
        resolve_local("org/demo-vl", revision="v3", cache_dir=hub_cache)
    with pytest.raises(ModelNotAvailable, match="repic model download org/other"):
        resolve_local("org/other", cache_dir=hub_cache)
    assert resolve_local(str(demo_model_dir)) == (Path(demo_model_dir).resolve(), None)


def test_interrupted_download_is_reported_and_unneeded_files_are_ignored(tmp_path, demo_model_dir):
    """huggingface_hub 2.x checks a cached snapshot against its cached file listing (``trees/<commit>.json``),
    filtered by allow_patterns: files the app never downloads (README, *.bin, *.py) must not count as missing."""
    from huggingface_hub._tree_cache import TreeCacheEntry, write_tree_cache

    cache = tmp_path / "cache"
    snap = fake_hub_repo(cache, "org/partial", demo_model_dir, COMMIT_A)
    listing = {p.name: TreeCacheEntry(size=1, blob_id="0" * 40) for p in snap.iterdir()}
    listing.update({n: TreeCacheEntry(size=1, blob_id="0" * 40)
                    for n in ("README.md", "pytorch_model.bin", "modeling_custom.py", ".gitattributes")})
    repo = cache / "models--org--partial"
    write_tree_cache(str(repo), COMMIT_A, listing)
    assert resolve_local("org/partial", cache_dir=cache)[1] == COMMIT_A  # complete as far as the app cares
    (snap / "model.safetensors").unlink()  # as if the download stopped before the weights
    with pytest.raises(ModelNotAvailable, match="incomplete: run `repic model download org/partial` again"):
        resolve_local("org/partial", cache_dir=cache)


def test_load_model_from_hub_cache_offline(hub_cache):
    from repic_desktop.captioning.models import ModelSpec, load_model

    loaded = load_model(ModelSpec(source="org/demo-vl", cache_dir=str(hub_cache)))
    assert loaded.commit == COMMIT_A and loaded.is_demo
    prov = loaded.provenance()
    assert prov["source"] == "org/demo-vl" and prov["commit"] == COMMIT_A and prov["revision"] is None
    assert f"({COMMIT_A[:12]})" in loaded.id_string()
    pinned = load_model(ModelSpec(source="org/demo-vl", revision="v2", cache_dir=str(hub_cache)))
    assert pinned.commit == COMMIT_B and pinned.provenance()["revision"] == "v2"


# -------------------------------------------------------------------------------------------------- CLI


def test_cli_model_set_and_status(isolated_env, capsys, tmp_path, monkeypatch):
    code, out, err = run(capsys, "model", "set")
    assert code == 1 and err.startswith("repic: error: nothing to change") and err.count("\n") == 1
    lora = tmp_path / "lora"
    lora.mkdir()
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "model", "set", "--source", "org/model", "--revision", "abc", "--adapter", "lora",
                         "--quant", "4bit", "--device", "cuda:1", "--cache-dir", "/hf", "--json")
    assert code == 0, err
    m = json.loads(out)["model"]
    assert m == {"source": "org/model", "revision": "abc", "adapter": str(lora), "quantization": "4bit",
                 "device": "cuda:1", "cache_dir": "/hf"}  # an existing adapter folder is stored absolute
    code, out, _ = run(capsys, "status", "--json")
    assert json.loads(out)["model"]["adapter"] == str(lora)
    code, out, err = run(capsys, "model", "set", "--adapter", "none", "--revision", "none", "--cache-dir", "none")
    assert code == 0 and "adapter:      -" in out
    from repic_desktop.core.settings import Settings

    s = Settings.load().model
    assert (s.adapter, s.revision, s.cache_dir, s.source, s.quantization) == (None, None, None, "org/model", "4bit")
    code, out, err = run(capsys, "model", "set", "--device", "tpu")
    assert code == 1 and "device must be" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["model", "set", "--quant", "3bit"])
    assert exit_info.value.code == 2
    capsys.readouterr()


def test_cli_model_list(isolated_env, capsys, hub_cache, tmp_path):
    code, out, err = run(capsys, "model", "list", "--cache-dir", str(tmp_path / "empty"))
    assert code == 0 and "no models downloaded yet" in out
    code, out, err = run(capsys, "model", "list", "--cache-dir", str(hub_cache), "--json")
    rows = json.loads(out)
    assert [r["repo_id"] for r in rows] == ["org/demo-vl", "org/my-lora"] and not any(r["default"] for r in rows)
    run(capsys, "model", "set", "--source", "org/demo-vl", "--cache-dir", str(hub_cache))
    code, out, err = run(capsys, "model", "list")  # cache dir from the settings
    lines = out.splitlines()
    assert lines[0].startswith("* org/demo-vl") and "main" in lines[0] and "v2" in lines[0]
    code, out, err = run(capsys, "model", "list", "--all", "--json")
    assert [r["repo_id"] for r in json.loads(out)][-1] == "org/some-bert"


def test_cli_model_download_offline_and_set_default(isolated_env, capsys, monkeypatch, tmp_path, demo_model_dir):
    code, out, err = run(capsys, "model", "download")  # default id from the settings
    assert code == 1 and out == ""
    assert err.startswith("repic: error: Cannot download Yeongtak/RePIC_Qwen2.5VL_7B: offline mode is on")
    assert err.count("\n") == 1 and "Traceback" not in err
    code, out, err = run(capsys, "model", "download", str(demo_model_dir))
    assert code == 1 and "is a local folder" in err

    got = {}

    def fake_download(repo_id, revision=None, cache_dir=None, progress=None):
        got.update(repo_id=repo_id, revision=revision, cache_dir=cache_dir)
        return Path(tmp_path / "models--org--x" / "snapshots" / COMMIT_A)

    monkeypatch.setattr(mm, "download_model", fake_download)
    code, out, err = run(capsys, "model", "download", "org/x", "--revision", "v1", "--cache-dir", "/c",
                         "--set-default", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["commit"] == COMMIT_A and data["set_default"] is True
    assert got == {"repo_id": "org/x", "revision": "v1", "cache_dir": "/c"}
    from repic_desktop.core.settings import Settings

    s = Settings.load().model
    assert (s.source, s.revision, s.cache_dir) == ("org/x", "v1", "/c")
    code, out, err = run(capsys, "model", "download")  # now defaults to org/x in /c
    assert got == {"repo_id": "org/x", "revision": None, "cache_dir": "/c"} and "ready" in out
    assert Settings.load().model.revision == "v1"  # no --set-default: settings untouched


# ---------------------------------------------------------------------------------- suggestion matchers


def _matcher_folder(root: Path, model_type: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"model_type": model_type}))
    (root / "model.safetensors").write_bytes(b"weights")
    return root


def test_snapshot_kind_recognises_matcher_models(tmp_path):
    assert mm.snapshot_kind(_matcher_folder(tmp_path / "c", "clip")) == ("clip", "clip")
    assert mm.snapshot_kind(_matcher_folder(tmp_path / "v", "clip_vision_model")) == ("clip", "clip_vision_model")
    assert mm.snapshot_kind(_matcher_folder(tmp_path / "d", "dinov2")) == ("dinov2", "dinov2")
    assert mm.snapshot_kind(_matcher_folder(tmp_path / "o", "owlv2")) == ("detector", "owlv2")
    assert mm.matcher_folder_problem(tmp_path / "o", "detector") == ""
    assert "not CLIP" in mm.matcher_folder_problem(tmp_path / "d", "clip")
    assert "does not exist" in mm.matcher_folder_problem(tmp_path / "nope", "clip")


def test_matcher_download_fetches_only_safetensors_and_configs(monkeypatch, tmp_path):
    import huggingface_hub

    seen = {}
    good = _matcher_folder(tmp_path / "snap", "clip")

    def fake_snapshot(repo_id, **kw):
        seen.update(kw)
        return str(good)

    monkeypatch.setattr(mm, "hub_offline", lambda: False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    assert download_model("openai/clip-x", allow_patterns=mm.MATCHER_ALLOW_PATTERNS) == good
    assert seen["allow_patterns"] == ["*.safetensors", "*.json", "*.txt"]
    import fnmatch

    hub_files = ["model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "config.json",
                 "preprocessor_config.json", "vocab.json", "merges.txt", "tokenizer.json"]
    kept = [f for f in hub_files if any(fnmatch.fnmatch(f, p) for p in seen["allow_patterns"])]
    assert kept == ["model.safetensors", "config.json", "preprocessor_config.json", "vocab.json", "merges.txt",
                    "tokenizer.json"]


def test_cli_model_download_use_for_sets_the_matcher_folder(isolated_env, capsys, monkeypatch, tmp_path):
    from repic_desktop.core.settings import Settings

    s = Settings.load()
    s.extra.update(batch_size=3, retrieval={"threshold": 0.9})
    s.save()
    snaps = {"openai/clip-vit-large-patch14-336": _matcher_folder(tmp_path / "clip-snap" / COMMIT_A, "clip"),
             "org/owl": _matcher_folder(tmp_path / "owl-snap" / COMMIT_B, "owlv2"),
             "org/bert": _matcher_folder(tmp_path / "bert-snap" / COMMIT_A, "bert")}
    got = []

    def fake_download(repo_id, revision=None, cache_dir=None, progress=None, allow_patterns=None):
        got.append((repo_id, allow_patterns))
        return snaps[repo_id]

    monkeypatch.setattr(mm, "download_model", fake_download)
    code, out, err = run(capsys, "model", "download", "--use-for", "clip", "--json")  # the default CLIP id
    assert code == 0, err
    assert json.loads(out)["use_for"] == "clip"
    assert got[-1] == ("openai/clip-vit-large-patch14-336", mm.MATCHER_ALLOW_PATTERNS)
    code, out, err = run(capsys, "model", "download", "org/owl", "--use-for", "detector")
    assert code == 0 and "OWLv2 detector" in out
    s = Settings.load()
    assert s.extra["retrieval"] == {"threshold": 0.9, "clip_dir": str(snaps["openai/clip-vit-large-patch14-336"]),
                                    "detector_dir": str(snaps["org/owl"])}
    assert s.extra["batch_size"] == 3 and s.model.source == "Yeongtak/RePIC_Qwen2.5VL_7B"  # nothing else touched
    code, out, err = run(capsys, "model", "download", "org/bert", "--use-for", "dinov2")
    assert code == 1 and "cannot be used as DINOv2" in err and "'bert' model" in err
    assert "dino_dir" not in Settings.load().extra["retrieval"]
    code, out, err = run(capsys, "model", "download", "org/owl", "--use-for", "clip", "--set-default")
    assert code == 1 and "--set-default" in err


def test_cli_model_set_matchers_and_list(isolated_env, capsys, tmp_path):
    from repic_desktop.core.settings import Settings

    hub_cache = tmp_path / "hub"  # its own cache: the module's hub_cache stays as other tests expect it
    bert = _matcher_folder(tmp_path / "bert-src", "bert")
    fake_hub_repo(hub_cache, "org/some-bert", bert, COMMIT_A)

    dino = _matcher_folder(tmp_path / "dino", "dinov2")
    code, out, err = run(capsys, "model", "set", "--dinov2", str(dino), "--matcher", "dinov2", "--json")
    assert code == 0, err
    r = json.loads(out)["retrieval"]
    assert r == {"dino_dir": str(dino), "default_matcher": "dinov2"}
    code, out, err = run(capsys, "model", "set", "--clip", str(dino))  # a DINOv2 folder is no CLIP
    assert code == 1 and "not CLIP" in err
    code, out, err = run(capsys, "model", "set", "--clip", "org/not-downloaded")
    assert code == 1 and "--use-for clip" in err and "Traceback" not in err
    # a cached hub id resolves to its snapshot folder (offline); `model list` says who uses it
    clip_src = _matcher_folder(tmp_path / "clip-src", "clip")
    fake_hub_repo(hub_cache, "org/clip-test", clip_src, COMMIT_A)
    code, out, err = run(capsys, "model", "set", "--cache-dir", str(hub_cache), "--clip", "org/clip-test")
    assert code == 0, err
    clip_dir = Settings.load().extra["retrieval"]["clip_dir"]
    assert clip_dir.endswith(COMMIT_A) and "CLIP:" in out
    code, out, err = run(capsys, "model", "list", "--json")
    rows = {row["repo_id"]: row for row in json.loads(out)}
    assert rows["org/clip-test"]["kind"] == "clip" and rows["org/clip-test"]["used_for"] == ["clip"]
    assert list(rows) == ["org/clip-test"]  # bert is no model of ours
    code, out, err = run(capsys, "model", "list")
    assert "[used by clip]" in out
    code, out, err = run(capsys, "model", "set", "--clip", "none", "--dinov2", "none")
    assert code == 0, err
    assert Settings.load().extra["retrieval"] == {"default_matcher": "dinov2"}
    assert "not ready yet" in out  # DINOv2 chosen but its folder was just cleared

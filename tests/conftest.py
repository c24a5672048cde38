"""Test set-up: offline, headless, and never touching the real user's library, settings or caches."""
from __future__ import annotations

import os
import tempfile

# Set before anything imports huggingface_hub / Qt: both read these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_SANDBOX = tempfile.mkdtemp(prefix="repic-tests-home-")
for var, sub in [("XDG_DATA_HOME", "data"), ("XDG_CONFIG_HOME", "config"), ("XDG_CACHE_HOME", "cache"),
                 ("REPIC_CONFIG_DIR", "repic-config"), ("REPIC_CACHE_DIR", "repic-cache"),
                 ("HF_HOME", "hf")]:
    os.environ[var] = os.path.join(_SANDBOX, sub)
os.environ.pop("REPIC_LIBRARY", None)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory):
    """The tiny random Qwen2.5-VL, built once per test session (well under a second)."""
    from repic_desktop.captioning.demo_model import build_demo_model

    d = tmp_path_factory.mktemp("demo-model")
    build_demo_model(d)
    return d


@pytest.fixture
def library(tmp_path):
    from repic_desktop.core.library import Library

    lib = Library(tmp_path / "lib.sqlite")
    yield lib
    lib.close()


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """Per-test settings and library locations (for CLI tests that use the defaults)."""
    monkeypatch.setenv("REPIC_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("REPIC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("REPIC_LIBRARY", raising=False)
    return tmp_path

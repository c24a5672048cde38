"""One CPU thread policy (core/cpu_threads.py) and the demo model's token cap, for every front."""
from __future__ import annotations

import json
import os

import pytest

from repic_desktop.core import cpu_threads
from repic_desktop.captioning.demo_model import DEMO_MAX_NEW_TOKENS


def test_policy_leaves_one_usable_core_free(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # a container on a big host: the affinity set counts
    assert cpu_threads.policy_threads() == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert cpu_threads.policy_threads() == 1
    assert cpu_threads.policy_threads(5) == 5  # --cpu-threads wins
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert cpu_threads.policy_threads() is None  # the user's own OMP_NUM_THREADS wins
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="CPU threads"):
            cpu_threads.policy_threads(bad)


def test_cli_caption_follows_the_policy_and_caps_demo_tokens(tmp_path, demo_model_dir, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    from PIL import Image

    from repic_desktop.cli import main

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    old = torch.get_num_threads()
    torch.set_num_threads(3)  # what torch picks on 3 cores by itself
    try:
        album = tmp_path / "album"
        album.mkdir()
        Image.new("RGB", (64, 48), (200, 30, 30)).save(album / "a.jpg")
        lib = ["--library", str(tmp_path / "l.sqlite")]
        assert main([*lib, "import", str(album), "--json"]) == 0
        capsys.readouterr()
        # No --max-new-tokens: the user's default (1,024, as RePIC) is what the demo model must not produce.
        assert main([*lib, "caption", "--all", "--model", str(demo_model_dir), "--max-pixels", str(112 * 112),
                     "--json"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)
    row = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert row["caption"] and 0 < row["provenance"]["new_tokens"] <= DEMO_MAX_NEW_TOKENS

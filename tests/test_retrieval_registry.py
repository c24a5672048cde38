"""The matcher registry is the one list of matchers: the service, the CLI and the model manager follow it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from repic_desktop.captioning.model_manager import matcher_folder_problem
from repic_desktop.cli.app import build_parser
from repic_desktop.core.settings import Settings
from repic_desktop.retrieval import service
from repic_desktop.retrieval.base import MatcherUnavailable
from repic_desktop.retrieval.registry import DEFAULT_MATCHER, DETECTOR_MODEL, MATCHER_MODELS, MATCHERS


def _choices(argv: list[str], option: str) -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[argv[0]]
    if len(argv) > 1:
        sub = next(a for a in sub._actions if a.dest == "sub").choices[argv[1]]
    return list(next(a for a in sub._actions if option in a.option_strings).choices)


def test_service_and_cli_offer_exactly_the_registry():
    assert [m["id"] for m in service.available_matchers(Settings())] == list(MATCHERS)
    assert _choices(["model", "set"], "--matcher") == list(MATCHERS)
    assert _choices(["model", "download"], "--use-for") == list(MATCHER_MODELS)
    assert DEFAULT_MATCHER in MATCHERS and DETECTOR_MODEL in MATCHER_MODELS.values()
    # every embedder's folder and the detector's have a `repic model set --<use>` option
    parser = build_parser()
    model_set = next(a for a in parser._actions if a.dest == "command").choices["model"]
    model_set = next(a for a in model_set._actions if a.dest == "sub").choices["set"]
    options = {o for a in model_set._actions for o in a.option_strings}
    assert {f"--{use}" for use in MATCHER_MODELS} <= options


def test_missing_folder_names_the_registry_download(tmp_path):
    for info in MATCHERS.values():
        if info.model is None:
            continue
        state = {m["id"]: m for m in service.available_matchers(Settings())}[info.id]
        assert not state["ready"] and f"--use-for {info.model.use}" in state["why"]
    (tmp_path / "config.json").write_text('{"model_type": "owlv2"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert matcher_folder_problem(tmp_path, DETECTOR_MODEL.use) == ""
    assert "not CLIP" in matcher_folder_problem(tmp_path, "clip")


def test_unknown_matcher_lists_the_registry():
    with pytest.raises(MatcherUnavailable, match=", ".join(MATCHERS)):
        service.get_matcher("nope", Settings())


def test_the_registry_is_cheap_to_import():
    code = "import sys, repic_desktop.retrieval.registry; print(sorted({'numpy', 'torch', 'dlib', 'cv2'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

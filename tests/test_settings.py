"""Settings file and platform paths."""
from __future__ import annotations

import json

import pytest

from repic_desktop.core import paths
from repic_desktop.core.settings import DEFAULT_MODEL_SOURCE, Settings, SettingsError


def test_defaults_without_a_file(isolated_env):
    s = Settings.load()
    assert s.model.source == DEFAULT_MODEL_SOURCE and s.model.quantization == "none"
    assert not Settings.path().exists()  # loading never writes


def test_save_load_round_trip_keeps_unknown_keys(isolated_env):
    Settings.path().parent.mkdir(parents=True)
    Settings.path().write_text(json.dumps({"model": {"source": "/models/repic", "future_knob": 3},
                                           "gui": {"theme": "dark"}}))
    s = Settings.load()
    assert s.model.source == "/models/repic"
    s.model.quantization = "4bit"
    s.save()
    raw = json.loads(Settings.path().read_text())
    assert raw["gui"] == {"theme": "dark"} and raw["model"]["quantization"] == "4bit"
    assert [p.name for p in Settings.path().parent.iterdir()] == ["settings.json"]  # no temp file left


@pytest.mark.parametrize("content,match", [("{broken", "cannot read"), ("[1, 2]", "not a JSON object"),
                                           ('{"model": {"quantization": "3bit"}}', "quantization")])
def test_bad_settings_file_gives_a_clear_error(isolated_env, content, match):
    Settings.path().parent.mkdir(parents=True, exist_ok=True)
    Settings.path().write_text(content)
    with pytest.raises(SettingsError, match=match):
        Settings.load()


def test_library_path_precedence(isolated_env, monkeypatch):
    assert paths.resolve_library_path() == paths.data_dir() / "library.sqlite"
    assert str(paths.data_dir()).startswith(str(isolated_env))
    monkeypatch.setenv("REPIC_LIBRARY", "/env/lib.sqlite")
    assert str(paths.resolve_library_path()) == "/env/lib.sqlite"
    assert str(paths.resolve_library_path("/flag/lib.sqlite")) == "/flag/lib.sqlite"


def test_caption_defaults_from_extra(isolated_env):
    from repic_desktop.captioning.models import ModelSpec

    s = Settings()
    assert s.caption_default("batch_size") == 4 and s.caption_default("system_preset") == "repic"
    s.extra.update(batch_size=2, attention="sdpa", max_pixels=112 * 112)
    assert s.caption_default("batch_size") == 2
    spec = ModelSpec.from_user_settings(s, device="cpu")
    assert (spec.attention, spec.max_pixels, spec.device) == ("sdpa", 112 * 112, "cpu")

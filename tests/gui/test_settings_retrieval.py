"""Settings → Suggestions: matcher readiness with reasons, folders, threshold/top-K, the caption option, and
matcher weights downloaded through the controller (a faked hub download: tests are offline)."""
from __future__ import annotations

import json

import pytest

from repic_desktop.core.settings import Settings

from .test_captioning_flows import WAIT


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("REPIC_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path


def _model_folder(path, model_type):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": model_type}))
    (path / "model.safetensors").write_bytes(b"weights")
    return path


def _status(dlg, matcher_id):
    return next(m for m in dlg.matcher_info if m["id"] == matcher_id)


def test_suggestions_tab_round_trip_and_reasons(qtbot, env, window, make_controller):
    s = Settings()
    s.extra.update(batch_size=5, retrieval={"threshold": 0.85, "future_key": "kept"})
    s.save()
    ctrl = make_controller(env / "lib.sqlite")
    dlg = ctrl.open_settings(window)
    assert dlg.tabs.tabText(dlg.tabs.count() - 1) == "Suggestions"
    assert dlg.threshold.value() == pytest.approx(0.85) and dlg.top_k.value() == 0
    assert not dlg.auto_include.isChecked() and dlg.default_matcher.currentData() == "dlib-faces"
    qtbot.waitUntil(lambda: dlg.matcher_info is not None, timeout=WAIT)
    clip_item = dlg.default_matcher.itemText(dlg.default_matcher.findData("clip"))
    assert clip_item.endswith("not ready") and not _status(dlg, "clip")["ready"]
    assert "CLIP is not downloaded yet" in dlg.matcher_status.text()

    clip = _model_folder(env / "clip", "clip")
    dlg.matcher_dirs["clip"].setText(str(clip))
    qtbot.waitUntil(lambda: _status(dlg, "clip")["ready"], timeout=WAIT)
    assert "whole image + dlib face boxes" in dlg.matcher_status.text()  # no detector: said so, still ready
    dlg.matcher_dirs["detector"].setText(str(env / "no-such-owl"))
    qtbot.waitUntil(lambda: not _status(dlg, "clip")["ready"], timeout=WAIT)
    assert "no-such-owl does not exist" in dlg.matcher_status.text()
    dlg.accept()  # refused inline
    assert dlg.isVisible() and "OWLv2 detector folder" in dlg.error_label.text()

    dlg.matcher_dirs["detector"].setText("")
    dlg.default_matcher.setCurrentIndex(dlg.default_matcher.findData("clip"))
    dlg.threshold.setValue(0.93)
    dlg.top_k.setValue(3)
    dlg.auto_include.setChecked(True)
    with qtbot.waitSignal(dlg.saved, timeout=WAIT):
        dlg.accept()
    saved = Settings.load()
    assert saved.extra["retrieval"] == {"clip_dir": str(clip), "default_matcher": "clip", "threshold": 0.93,
                                        "top_k": 3, "auto_include_suggestions": True, "future_key": "kept"}
    assert saved.extra["batch_size"] == 5

    dlg2 = ctrl.open_settings(window)
    assert dlg2.matcher_dirs["clip"].text() == str(clip) and dlg2.default_matcher.currentData() == "clip"
    assert dlg2.threshold.value() == pytest.approx(0.93) and dlg2.top_k.value() == 3 and dlg2.auto_include.isChecked()
    dlg2.matcher_dirs["clip"].setText("")
    dlg2.threshold.setValue(0.0)  # "the matcher's own"
    with qtbot.waitSignal(dlg2.saved, timeout=WAIT):
        dlg2.accept()
    r = Settings.load().extra["retrieval"]
    assert "clip_dir" not in r and "threshold" not in r and r["top_k"] == 3


def test_matcher_download_fills_the_folder_and_the_settings(qtbot, env, window, make_controller, monkeypatch):
    from repic_desktop.captioning import model_manager as mm

    ctrl = make_controller(env / "lib.sqlite")
    dlg = ctrl.open_settings(window)
    panel = dlg.matcher_downloads["detector"]
    # offline (conftest): the failure is one sentence in the detector's row, not in the model tab's
    with qtbot.waitSignal(ctrl.download_changed, timeout=WAIT,
                          check_params_cb=lambda: ctrl.download["status"] == "failed"):
        panel.button.click()
    assert "offline mode is on" in panel.status.text() and panel.button.isEnabled()
    assert "offline" not in dlg.download.status.text()

    owl = _model_folder(env / "hub" / "snapshots" / ("b" * 40), "owlv2")
    calls = []

    def fake_download(repo_id, revision=None, cache_dir=None, progress=None, allow_patterns=None):
        calls.append((repo_id, allow_patterns))
        progress("Downloading bytes", 5, 10)
        return owl

    monkeypatch.setattr(mm, "download_model", fake_download)
    with qtbot.waitSignal(ctrl.settings_changed, timeout=WAIT):
        panel.button.click()
    assert calls == [("google/owlv2-base-patch16-ensemble", mm.MATCHER_ALLOW_PATTERNS)]
    assert dlg.matcher_dirs["detector"].text() == str(owl)
    assert Settings.load().extra["retrieval"]["detector_dir"] == str(owl)  # saved even if the dialog is cancelled
    assert "Downloaded google/owlv2" in panel.status.text()
    dlg.reject()

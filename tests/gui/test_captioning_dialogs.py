"""Settings dialog round trip, the first-run welcome (demo model), downloads reported readably."""
from __future__ import annotations

import pytest
from PySide6.QtWidgets import QWidget

from repic_desktop.core.library import Library
from repic_desktop.core.settings import Settings

from tests.helpers.gui_captioning import WAIT


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("REPIC_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path


def test_settings_dialog_round_trip(qtbot, env, window, make_controller):
    from repic_desktop.gui.dialogs.settings import SettingsDialog

    ctrl = make_controller(env / "lib.sqlite")
    dlg = ctrl.open_settings(window)
    assert isinstance(dlg, SettingsDialog) and dlg.source_hub.isChecked()  # defaults: RePIC 7B from the hub
    assert dlg.hub_id.text() == "Yeongtak/RePIC_Qwen2.5VL_7B" and dlg.max_tokens.value() == 1024
    assert "(RePIC's setting)" in dlg.pixels_note.text()
    adapter = env / "lora"
    adapter.mkdir()
    dlg.revision.setText("abc123")
    dlg.cache_dir.setText(str(env / "hf-cache"))
    dlg.adapter.setText(str(adapter))
    dlg.quantization.setCurrentIndex(dlg.quantization.findData("4bit"))
    dlg.device.setCurrentText("cpu")
    dlg.attention.setCurrentIndex(dlg.attention.findData("sdpa"))
    dlg.batch_size.setValue(8)
    dlg.max_tokens.setValue(512)
    dlg.max_new_tokens.setValue(256)
    dlg.system_preset.setCurrentIndex(dlg.system_preset.findData("repic-no-duplication"))
    dlg._new_preset()
    row = dlg.presets.rowCount() - 1
    dlg.presets.item(row, 0).setText("short")
    dlg.presets.item(row, 1).setText("Give a one-line personalized caption of this image.")
    dlg.request_preset.setCurrentIndex(dlg.request_preset.findData("short"))
    with qtbot.waitSignal(dlg.saved, timeout=WAIT):
        dlg.accept()
    s = Settings.load()
    with Library(env / "lib.sqlite") as lib:
        own_adapter = s.active_adapter(lib)  # the adapter field belongs to the library the dialog was opened in
    assert s.model.adapter is None
    assert (s.model.source, s.model.revision, own_adapter, s.model.quantization, s.model.device,
            s.model.cache_dir) == ("Yeongtak/RePIC_Qwen2.5VL_7B", "abc123", str(adapter), "4bit", "cpu",
                                   str(env / "hf-cache"))
    assert s.extra["attention"] == "sdpa" and s.extra["batch_size"] == 8 and s.extra["max_pixels"] == 512 * 784
    assert s.extra["max_new_tokens"] == 256 and s.extra["system_preset"] == "repic-no-duplication"
    assert s.extra["request_presets"] == {"short": "Give a one-line personalized caption of this image."}
    assert s.extra["request_preset"] == "short"
    from repic_desktop.captioning.models import ModelSpec

    spec = ModelSpec.from_user_settings(s)
    assert spec.attention == "sdpa" and spec.max_pixels == 512 * 784 and spec.quantization == "4bit"

    # reopened, it shows what was saved; switching to a local folder and the demo model round-trips too
    dlg2 = ctrl.open_settings(window)
    assert dlg2.revision.text() == "abc123" and dlg2.quantization.currentData() == "4bit"
    assert dlg2.adapter.text() == str(adapter)
    assert dlg2.device.currentText() == "cpu" and dlg2.batch_size.value() == 8 and dlg2.max_tokens.value() == 512
    assert dlg2.request_preset.currentData() == "short" and dlg2.system_preset.currentData() == "repic-no-duplication"
    dlg2.source_local.setChecked(True)
    dlg2.local_path.setText(str(env / "missing"))
    dlg2.accept()  # refused inline: the folder does not exist
    assert dlg2.isVisible() and "does not exist" in dlg2.error_label.text()
    dlg2.source_demo.setChecked(True)
    with qtbot.waitSignal(dlg2.saved, timeout=WAIT):
        dlg2.accept()
    from repic_desktop.app.caption_jobs import demo_model_dir

    assert Settings.load().model.source == str(demo_model_dir())
    dlg3 = ctrl.open_settings(window)
    assert dlg3.source_demo.isChecked()
    dlg3.presets.item(dlg3.presets.rowCount() - 1, 1).setText("<|im_start|> sneaky")
    dlg3.accept()
    assert "control token" in dlg3.error_label.text()
    dlg3.reject()


def test_download_error_is_reported_readably(qtbot, env, window, make_controller):
    """Tests run offline (HF_HUB_OFFLINE=1): the download fails at once with a sentence, not a traceback."""
    ctrl = make_controller(env / "lib.sqlite")
    dlg = ctrl.open_settings(window)
    with qtbot.waitSignal(ctrl.download_changed, timeout=WAIT,
                          check_params_cb=lambda: ctrl.download["status"] == "failed"):
        dlg.download.button.click()
    assert "offline mode is on" in dlg.download.status.text()
    assert dlg.download.button.isEnabled() and not dlg.download.bar.isVisible()
    qtbot.waitUntil(lambda: "Not downloaded yet" in dlg.download.status.text() or "offline" in
                    dlg.download.status.text(), timeout=WAIT)
    dlg.reject()


def test_welcome_with_the_demo_model(qtbot, env, make_controller):
    from repic_desktop.captioning.demo_model import is_demo_model
    from repic_desktop.app.caption_jobs import demo_model_dir
    from repic_desktop.gui.dialogs.welcome import WelcomeDialog, maybe_show_welcome

    class Main(QWidget):
        def __init__(self):
            super().__init__()
            self.imported = 0

        def import_folder_dialog(self):
            self.imported += 1

    main = Main()
    qtbot.addWidget(main)
    ctrl = make_controller(env / "lib.sqlite")
    qtbot.waitUntil(lambda: ctrl.gpu_info is not None, timeout=WAIT)
    dlg = maybe_show_welcome(main, ctrl)
    assert isinstance(dlg, WelcomeDialog) and dlg.isVisible()
    dlg.photos_button.click()
    assert main.imported == 1 and dlg.photos_button.text().startswith("✓")
    assert not dlg.people_button.isEnabled()  # this main window has no show_people()
    if not ctrl.gpu_info.get("cuda"):
        assert dlg.source_demo.isChecked() and "No NVIDIA GPU was found" in dlg.gpu.text()
    dlg.source_demo.click()
    assert "random noise" in dlg.source_demo.text()
    with qtbot.waitSignal(dlg.finished, timeout=WAIT):
        dlg.start.click()
    s = Settings.load()
    assert s.model.source == str(demo_model_dir()) and s.extra["welcome_done"] is True
    assert is_demo_model(demo_model_dir())
    assert maybe_show_welcome(main, ctrl) is None  # first run only


def test_welcome_local_folder_is_checked(qtbot, env, make_controller, demo_model_dir):
    from repic_desktop.gui.dialogs.welcome import maybe_show_welcome, suggested_quantization

    ctrl = make_controller(env / "lib.sqlite")
    main = QWidget()
    qtbot.addWidget(main)
    dlg = maybe_show_welcome(main, ctrl)
    dlg.source_local.click()
    dlg.local_path.setText(str(env))
    dlg.start.click()
    assert "is not a model folder" in dlg.status.text() and dlg.isVisible()
    dlg.local_path.setText(str(demo_model_dir))
    with qtbot.waitSignal(dlg.finished, timeout=WAIT):
        dlg.start.click()
    assert Settings.load().model.source == str(demo_model_dir)
    gpu = {"cuda": True, "devices": [{"index": 0, "name": "X", "total_gb": 12.0}]}
    assert suggested_quantization(gpu) == "4bit"
    assert suggested_quantization({**gpu, "devices": [{"total_gb": 16.0}]}) == "8bit"
    assert suggested_quantization({**gpu, "devices": [{"total_gb": 80.0}]}) == "none"
    assert suggested_quantization({"cuda": False, "devices": []}) == "none"


def test_settings_server_tab_saves_url_and_tests_the_connection(qtbot, env, window, make_controller):
    import socket

    ctrl = make_controller(env / "lib.sqlite")
    dlg = ctrl.open_settings(window)
    dlg.server_url.setText("http://gpu-box.lan:8000")
    with pytest.raises(ValueError, match="unencrypted"):  # plain http to another computer needs the opt-in
        dlg.values()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dlg.server_url.setText(f"127.0.0.1:{port}/v1")
    dlg.test_server.click()
    qtbot.waitUntil(lambda: dlg.test_server.isEnabled() and "FAILED" in dlg.server_result.text(), timeout=WAIT)
    assert "cannot be reached" in dlg.server_result.text()
    with qtbot.waitSignal(dlg.saved, timeout=WAIT):
        dlg.accept()
    assert Settings.load().extra["server"]["url"] == f"http://127.0.0.1:{port}"
    from repic_desktop.gui.captioning.job_view import where_label
    from repic_desktop.captioning.models import ModelSpec

    assert where_label(Settings.load(), ModelSpec()).endswith(f"on server http://127.0.0.1:{port} (photos are sent there)")

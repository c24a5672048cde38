"""The caption dialog says, before a job starts, when this machine cannot run the chosen model well
(captioning/device.py's advice): "warn" is shown, "stop" is shown and disables Caption."""
from __future__ import annotations

from PySide6.QtWidgets import QDialogButtonBox

from repic_desktop.captioning.device import GiB, Compute, GpuInfo, caption_advice
from repic_desktop.gui.dialogs.caption import CaptionDialog, ConceptEntry


def _dialog(qtbot):
    dlg = CaptionDialog(None, photo_count=3, concepts=[ConceptEntry("Anya", "person", True)], own_summary="",
                        presets={"default": "Give a personalized caption of this image."}, preset="default",
                        batch_size=1, model_label="RePIC 7B", captioned=0)
    qtbot.addWidget(dlg)
    return dlg


def test_stop_advice_is_shown_and_blocks_caption(qtbot):
    dlg = _dialog(qtbot)
    ok = dlg.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert ok.isEnabled() and dlg.device_note.isHidden()
    small = Compute("2.13.0", "13.0", True, (GpuInfo("GTX 1650", 4 * GiB),), "580")
    dlg.set_device_advice(caption_advice(small, is_demo=False))
    assert not ok.isEnabled()
    assert not dlg.device_note.isHidden() and "GTX 1650 has 4.0 GB" in dlg.device_note.text()
    assert "demo model" in dlg.device_note.text()
    # the model changed in Settings to one that fits: the note goes and Caption is back
    dlg.set_device_advice(caption_advice(small, is_demo=True))
    assert ok.isEnabled() and dlg.device_note.isHidden()


def test_warn_advice_is_shown_and_caption_stays(qtbot):
    dlg = _dialog(qtbot)
    dlg.set_device_advice(caption_advice(Compute("2.13.0+cpu"), is_demo=False))
    assert dlg.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()
    assert "runs on the CPU" in dlg.device_note.text() and not dlg.device_note.isHidden()
    dlg.set_device_advice(None)   # the worker has not probed yet
    assert dlg.device_note.isHidden()

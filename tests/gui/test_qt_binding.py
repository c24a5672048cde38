"""The Qt binding the app runs on must not corrupt None's reference count (PySide6 6.12.0 on Python 3.11
does: every void Qt call drops a reference, and the app aborts after a few minutes of use)."""
from __future__ import annotations

import sys

import pytest

from repic_desktop.gui.app import binding_leaks_refs, check_binding


def test_installed_binding_keeps_none_alive(qapp):
    if sys.version_info >= (3, 12):
        pytest.skip("None is immortal on Python 3.12+")
    assert not binding_leaks_refs(), "this PySide6 drops references to None: install PySide6-Essentials 6.11.2"
    check_binding()  # and so the app starts


def test_a_leaking_binding_is_refused_with_a_clear_message(qapp, monkeypatch):
    import repic_desktop.gui.app as app_mod

    monkeypatch.setattr(app_mod, "binding_leaks_refs", lambda: True)
    with pytest.raises(RuntimeError, match="install PySide6-Essentials 6.11.2"):
        app_mod.check_binding()

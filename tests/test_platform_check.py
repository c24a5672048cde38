"""gui/platform_check.py: the Qt platform plugin's missing system libraries are named, with the line
that installs them, before QApplication starts (Qt itself only says it could not load 'xcb')."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from repic_desktop.gui import platform_check as pc


def test_chosen_platform_follows_qt():
    assert pc.chosen_platform({}) == "xcb"
    assert pc.chosen_platform({"QT_QPA_PLATFORM": "offscreen"}) == "offscreen"
    assert pc.chosen_platform({"QT_QPA_PLATFORM": "wayland;xcb"}) == "wayland"
    assert pc.chosen_platform({"QT_QPA_PLATFORM": "vnc:size=800x600"}) == "vnc"
    assert pc.chosen_platform({"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}) == "wayland"
    assert pc.chosen_platform({"XDG_SESSION_TYPE": "x11", "DISPLAY": ":0"}) == "xcb"


def test_message_names_each_library_and_the_install_line():
    r = pc.PlatformCheck("xcb", None, ["libxcb-cursor.so.0", "libxkbcommon-x11.so.0", "libxcb-icccm.so.4",
                                       "libweird.so.3"])
    m = r.message(available=("apt-get",))
    assert "libxcb-cursor.so.0, libxkbcommon-x11.so.0, libxcb-icccm.so.4, libweird.so.3" in m
    assert "sudo apt install libxcb-cursor0 libxcb-icccm4 libxkbcommon-x11-0" in m
    assert "dnf" not in m and "pacman" not in m
    assert "libweird.so.3: look for the package" in m
    # no known package manager here: all three lines
    lines = r.install_lines(available=())
    assert lines == ["sudo apt install libxcb-cursor0 libxcb-icccm4 libxkbcommon-x11-0",
                     "sudo dnf install libxkbcommon-x11 xcb-util-cursor xcb-util-wm",
                     "sudo pacman -S libxkbcommon-x11 xcb-util-cursor xcb-util-wm"]
    assert pc.PlatformCheck("xcb", None, []).ok


@pytest.mark.skipif(not sys.platform.startswith("linux") or not shutil.which("gcc") or not shutil.which("ldd"),
                    reason="builds a small shared library with gcc and asks ldd about it")
def test_ldd_finds_a_library_that_is_not_installed(tmp_path):
    """A real plugin-like .so linked against a library that is then removed: what a minimal system
    looks like to the dynamic linker (named so that no system has it)."""
    (tmp_path / "stub.c").write_text("int xcb_cursor_stub(void) { return 1; }\n")
    (tmp_path / "plugin.c").write_text("int xcb_cursor_stub(void);\nint plugin(void) { return xcb_cursor_stub(); }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "librepic-absent.so.0"),
                    "-Wl,-soname,librepic-absent.so.0", str(tmp_path / "stub.c")], check=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "libqfake.so"), str(tmp_path / "plugin.c"),
                    "-Wl,--no-as-needed", str(tmp_path / "librepic-absent.so.0")], check=True)
    (tmp_path / "librepic-absent.so.0").unlink()
    assert pc.missing_libraries(tmp_path / "libqfake.so") == ["librepic-absent.so.0"]
    assert pc.missing_libraries(tmp_path / "libqfake.so", ldd=str(tmp_path / "no-ldd")) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's Qt plugins")
def test_this_machines_plugins_are_complete():
    r = pc.check({"QT_QPA_PLATFORM": "offscreen"})
    assert r.plugin is not None and r.plugin.name == "libqoffscreen.so"
    assert r.ok, r.message()


def test_run_gui_stops_before_qapplication_with_the_message(monkeypatch, capsys, tmp_path):
    from repic_desktop.gui import app

    monkeypatch.setattr(pc, "check", lambda env=None: pc.PlatformCheck("xcb", None, ["libxcb-cursor.so.0"]))
    monkeypatch.setattr(app, "make_app", lambda: pytest.fail("QApplication must not be made"))
    assert app.run_gui(tmp_path / "lib.sqlite") == 1
    err = capsys.readouterr().err
    assert err.startswith("repic: error: the desktop app cannot start: Qt's 'xcb' platform plugin needs")
    assert "libxcb-cursor.so.0" in err and "libxcb-cursor0" in err

"""Before QApplication: are the system libraries Qt's platform plugin needs installed?

On a minimal Linux, Qt's xcb plugin cannot load until libxcb-cursor0, libxcb-icccm4,
libxkbcommon-x11-0, … are installed, and Qt then aborts with "Could not load the Qt platform plugin
'xcb'" and names none of them. Asking the dynamic linker (`ldd`) about the plugin file first lets the
app name each missing library and the apt/dnf/pacman line that installs it. Nothing here imports
QtGui (that import itself fails when libGL or libEGL is missing); PySide6's folder is found from
the package's location only.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# soname -> (Debian/Ubuntu, Fedora, Arch) package
PACKAGES: dict[str, tuple[str, str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm", "xcb-util-wm"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image", "xcb-util-image"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util", "xcb-util"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb", "libxcb"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb", "libxcb"),
    "libxcb-xinerama.so.0": ("libxcb-xinerama0", "libxcb", "libxcb"),
    "libxcb-xinput.so.0": ("libxcb-xinput0", "libxcb", "libxcb"),
    "libxcb.so.1": ("libxcb1", "libxcb", "libxcb"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon", "libxkbcommon"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb", "libx11"),
    "libX11.so.6": ("libx11-6", "libX11", "libx11"),
    "libGL.so.1": ("libgl1", "mesa-libGL", "libglvnd"),
    "libEGL.so.1": ("libegl1", "mesa-libEGL", "libglvnd"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl", "libglvnd"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype", "freetype2"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs", "dbus"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2", "glib2"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2", "glib2"),
    "libwayland-client.so.0": ("libwayland-client0", "libwayland-client", "wayland"),
    "libwayland-cursor.so.0": ("libwayland-cursor0", "libwayland-cursor", "wayland"),
    "libwayland-egl.so.1": ("libwayland-egl1", "libwayland-egl", "wayland"),
    "libSM.so.6": ("libsm6", "libSM", "libsm"),
    "libICE.so.6": ("libice6", "libICE", "libice"),
}
MANAGERS = (("apt-get", "sudo apt install"), ("dnf", "sudo dnf install"), ("pacman", "sudo pacman -S"))
# the libraries the xcb plugin needs that a minimal system most often lacks: checked by name when ldd
# is not there to ask
XCB_ESSENTIALS = ("libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-image.so.0", "libxcb-keysyms.so.1",
                  "libxcb-render-util.so.0", "libxkbcommon-x11.so.0", "libxcb-xkb.so.1", "libEGL.so.1")

_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$", re.M)


@dataclass
class PlatformCheck:
    platform: str
    plugin: Path | None
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing

    def install_lines(self, available: tuple[str, ...] | None = None) -> list[str]:
        """One install command per package manager (only this machine's manager when one is found)."""
        if available is None:
            available = tuple(cmd for cmd, _ in MANAGERS if shutil.which(cmd))
        lines = []
        for i, (cmd, prefix) in enumerate(MANAGERS):
            if available and cmd not in available:
                continue
            pkgs = sorted({PACKAGES[m][i] for m in self.missing if m in PACKAGES})
            if pkgs:
                lines.append(f"{prefix} {' '.join(pkgs)}")
        return lines

    def message(self, available: tuple[str, ...] | None = None) -> str:
        names = ", ".join(self.missing)
        text = (f"the desktop app cannot start: Qt's '{self.platform}' platform plugin needs system libraries "
                f"that are not installed: {names}.")
        lines = self.install_lines(available)
        if lines:
            text += "\nInstall them with:\n" + "\n".join(f"    {line}" for line in lines)
        unknown = [m for m in self.missing if m not in PACKAGES]
        if unknown:
            text += "\n(" + ", ".join(unknown) + ": look for the package that provides it in your distribution.)"
        return text


def chosen_platform(env: dict[str, str] | None = None) -> str:
    """The platform plugin Qt will load: QT_QPA_PLATFORM's first choice, else Qt 6's own rule on
    Linux (wayland in a Wayland session, xcb otherwise)."""
    env = os.environ if env is None else env
    value = (env.get("QT_QPA_PLATFORM") or "").strip()
    if value:
        return value.split(";")[0].split(":")[0].strip() or "xcb"
    if env.get("XDG_SESSION_TYPE") == "wayland" and env.get("WAYLAND_DISPLAY"):
        return "wayland"
    return "xcb"


def plugin_file(platform: str) -> Path | None:
    """PySide6/Qt/plugins/platforms/libq<platform>.so, found without importing Qt's GUI modules."""
    try:
        import PySide6  # the package only: its __init__ loads QtCore's libraries, not QtGui's
    except ImportError:
        return None
    base = Path(PySide6.__file__).resolve().parent
    for cand in (base / "Qt" / "plugins" / "platforms", base / "plugins" / "platforms"):
        f = cand / f"libq{platform}.so"
        if f.is_file():
            return f
    return None


def missing_libraries(plugin: Path, *, ldd: str | None = None) -> list[str] | None:
    """The plugin's unresolved shared libraries (direct and indirect) per ldd; None when ldd cannot tell."""
    ldd = ldd or shutil.which("ldd")
    if not ldd:
        return None
    try:
        out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    seen: list[str] = []
    for name in _NOT_FOUND.findall(out):
        if name not in seen:
            seen.append(name)
    return seen


def missing_by_name(names: tuple[str, ...] = XCB_ESSENTIALS) -> list[str]:
    """Without ldd: which of the usual suspects the dynamic linker cannot load."""
    import ctypes

    missing = []
    for n in names:
        try:
            ctypes.CDLL(n)
        except OSError:
            missing.append(n)
    return missing


def check(env: dict[str, str] | None = None) -> PlatformCheck:
    """Linux only (elsewhere Qt's plugins carry what they need): what the chosen plugin lacks."""
    platform = chosen_platform(env)
    if not sys.platform.startswith("linux"):
        return PlatformCheck(platform, None)
    plugin = plugin_file(platform)
    if plugin is None:
        return PlatformCheck(platform, None)   # an unknown name: Qt lists the plugins it has
    missing = missing_libraries(plugin)
    if missing is None:
        missing = missing_by_name() if platform == "xcb" else []
    return PlatformCheck(platform, plugin, missing)

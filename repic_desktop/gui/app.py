"""Starting the app: QApplication set-up (names for QSettings, style, palette, icon) and `run_gui`.

- Style: Fusion everywhere, so the app looks the same on Linux, Windows and macOS, and follows the
  system's dark/light setting: Qt >= 6.5 reports it (QStyleHints.colorScheme) and Fusion switches its
  palette with it, live. REPIC_THEME=dark|light forces one (handy for screenshots and for desktops that
  do not report a scheme).
- `--screenshot OUT.png` renders the window once the library is shown and its first thumbnails are in,
  saves it and exits; start-up prompts (welcome, resume) are skipped so nothing modal blocks it.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from .. import APP_NAME, __version__

ORG_NAME = "RePIC"
ORG_DOMAIN = "repic-desktop.local"
APP_ID = "RePIC Desktop"
log = logging.getLogger(__name__)


def icon_path() -> Path | None:
    """resources/icons/repic-desktop.svg in a checkout; a copy next to the package when installed."""
    here = Path(__file__).resolve()
    for cand in (here.parents[2] / "resources" / "icons" / "repic-desktop.svg",
                 here.parents[1] / "resources" / "icons" / "repic-desktop.svg",
                 Path(sys.prefix) / "share" / "repic-desktop" / "icons" / "repic-desktop.svg"):
        if cand.is_file():
            return cand
    return None


def app_icon():
    from PySide6.QtGui import QIcon

    p = icon_path()
    return QIcon(str(p)) if p else QIcon()


def dark_palette():
    """A dark Fusion palette, for platforms that report dark mode (or REPIC_THEME=dark) without giving
    Fusion a dark palette themselves."""
    from PySide6.QtGui import QColor, QPalette

    p = QPalette()
    R, G = QPalette.ColorRole, QPalette.ColorGroup
    colors = {R.Window: "#2b2b2e", R.WindowText: "#e6e6e6", R.Base: "#1f1f22", R.AlternateBase: "#2a2a2d",
              R.ToolTipBase: "#37373b", R.ToolTipText: "#f0f0f0", R.Text: "#e6e6e6", R.Button: "#333337",
              R.ButtonText: "#e6e6e6", R.BrightText: "#ff6b6b", R.Link: "#7cb7ff", R.Highlight: "#3d7bd9",
              R.HighlightedText: "#ffffff", R.PlaceholderText: "#9a9aa0", R.Light: "#4a4a4f", R.Midlight: "#3c3c40",
              R.Mid: "#5a5a60", R.Dark: "#18181a", R.Shadow: "#000000"}
    for role, c in colors.items():
        p.setColor(role, QColor(c))
    for role in (R.WindowText, R.Text, R.ButtonText):
        p.setColor(G.Disabled, role, QColor("#7a7a80"))
    return p


def _is_dark(palette) -> bool:
    from PySide6.QtGui import QPalette
    return palette.color(QPalette.ColorRole.Window).lightness() < 110


def apply_color_scheme(app, scheme: str | None = None) -> None:
    """Follow the system ('system'), or force 'dark' / 'light'. Without `scheme`: REPIC_THEME, else the
    user's choice in Settings → Appearance (gui/theme.py)."""
    from PySide6.QtCore import Qt

    if not scheme:
        from .theme import saved_theme
        scheme = os.environ.get("REPIC_THEME", "") or saved_theme()
    scheme = scheme.strip().lower()
    app._repic_scheme = scheme
    hints = app.styleHints()
    can_set = hasattr(hints, "setColorScheme")
    if scheme == "dark" and can_set:
        hints.setColorScheme(Qt.ColorScheme.Dark)
    elif scheme == "light" and can_set:
        hints.setColorScheme(Qt.ColorScheme.Light)
    elif can_set:
        hints.unsetColorScheme()
    want_dark = scheme == "dark" or (scheme != "light" and hints.colorScheme() == Qt.ColorScheme.Dark)
    style_palette = app.style().standardPalette()
    if want_dark and not _is_dark(style_palette):
        app.setPalette(dark_palette())        # the platform said dark but Fusion stayed light
    else:
        app.setPalette(style_palette)
    if not getattr(app, "_repic_scheme_hooked", False):
        app._repic_scheme_hooked = True
        # the system switched: follow it, unless the user forced a theme meanwhile
        hints.colorSchemeChanged.connect(
            lambda *_: app._repic_scheme not in ("dark", "light") and apply_color_scheme(app, app._repic_scheme))


# --------------------------------------------------------------------------------------------------
# PySide6 6.12.0 + Python < 3.12: every call of a void Qt method from Python (widget.update(),
# painter.setPen(), ...) drops one reference to None it never took, and every Signal.emit() does the same
# to True. Python 3.12+ makes None/True/False immortal, so there it is harmless; on 3.11 the count
# reaches zero after some thousand signals or a few seconds of scrolling and the interpreter aborts
# ("none_dealloc" / "bool_dealloc"). PySide6 6.11.2 does not have the bug: requirements.txt pins it, and
# the app refuses to start on the broken binding with a message saying so, rather than crash later.
# --------------------------------------------------------------------------------------------------
def binding_leaks_refs() -> bool:
    """True when this PySide6 drops a reference to None on every void Qt call on this Python (the
    6.12.0 bug). None's count is in the thousands, so 100 probe calls cannot free it."""
    if sys.version_info >= (3, 12):
        return False
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(100):
        probe.setObjectName("probe")  # a void method
    return sys.getrefcount(None) < before - 60


def check_binding() -> None:
    """Refuse to start on a binding that would crash the interpreter minutes later."""
    if binding_leaks_refs():
        from PySide6 import __version__ as pyside_version

        raise RuntimeError(
            f"PySide6 {pyside_version} on Python {sys.version.split()[0]} corrupts reference counts and would "
            "crash: install PySide6-Essentials 6.11.2 (pip install -r requirements.txt)")


def configure_app(app) -> None:
    """Names (QSettings location), style, palette, icon. Safe to call on an existing QApplication."""
    from PySide6.QtCore import QCoreApplication

    QCoreApplication.setOrganizationName(ORG_NAME)
    QCoreApplication.setOrganizationDomain(ORG_DOMAIN)
    QCoreApplication.setApplicationName(APP_ID)
    QCoreApplication.setApplicationVersion(__version__)
    app.setApplicationDisplayName(APP_NAME)
    if hasattr(app, "setDesktopFileName"):
        app.setDesktopFileName("repic-desktop")
    app.setStyle("Fusion")
    apply_color_scheme(app)
    app.setWindowIcon(app_icon())


def make_app(argv: list[str] | None = None):
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else [sys.argv[0]])
    configure_app(app)
    return app


def run_gui(library_path: str | os.PathLike | None, screenshot: str | os.PathLike | None = None,
            page: str | None = None) -> int:
    """Open the main window on `library_path` (None: the library last opened in the app, else the
    default) and run the event loop; returns the exit code."""
    if screenshot is not None and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY") \
            and sys.platform.startswith("linux"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")   # a screenshot needs no screen
    from .platform_check import check as check_platform

    # before QApplication: Qt aborts on a missing library without naming it
    platform = check_platform()
    if not platform.ok:
        print(f"repic: error: {platform.message()}", file=sys.stderr)
        return 1
    app = make_app()
    try:
        check_binding()
    except RuntimeError as exc:
        print(f"repic: error: {exc}", file=sys.stderr)
        return 1
    from PySide6.QtCore import QTimer

    from ..core.library import Library, LibraryError
    from .dialogs.errors import install_excepthook, show_error
    from .widgets.log_view import install_qt_message_handler, log_handler
    from .main_window import MainWindow

    from .library_switch import startup_library

    log_handler()
    install_qt_message_handler()
    library_path = startup_library(library_path)
    try:
        library = Library(library_path)
    except LibraryError as exc:
        show_error(None, "Cannot open the library", str(exc))
        print(f"repic: error: {exc}", file=sys.stderr)
        return 1
    win = MainWindow(library, startup_prompts=screenshot is None)
    install_excepthook(lambda: getattr(MainWindow, "latest", win))   # File → Open Library replaces it
    if page:
        win.show_page(page)
    win.show()
    result = {"code": 0}
    if screenshot is not None:
        out = Path(screenshot)

        def shoot() -> None:
            if result.get("shot"):
                return
            result["shot"] = True
            app.processEvents()
            pix = win.grab()
            out.parent.mkdir(parents=True, exist_ok=True)
            if not pix.save(str(out)):
                print(f"repic: error: cannot write {out}", file=sys.stderr)
                result["code"] = 1
            else:
                print(f"saved {out} ({pix.width()}x{pix.height()})")
            win.close()
            app.quit()

        win.ready.connect(lambda: QTimer.singleShot(150, shoot))
        QTimer.singleShot(30_000, shoot)  # never hang a CI job
    code = app.exec()
    library.close()
    return result["code"] if screenshot is not None else code

"""`repic gui`: open the desktop app (a thin front over the same services as the CLI)."""
from __future__ import annotations

import argparse
import os

from ..core import paths
from .common import UserError

PAGES = ("browser", "people", "faces", "personalize", "queue")


def cmd_gui(args: argparse.Namespace) -> int:
    try:
        from ..gui.app import run_gui
    except ImportError as exc:  # PySide6 missing or its system libraries absent
        raise UserError(f"the desktop app cannot start: {exc}. Install the app's requirements "
                        "(PySide6-Essentials) and, on Linux, the Qt xcb libraries (see README).") from None
    # Without --library or REPIC_LIBRARY the app opens the library last opened in it (File → Open Library)
    explicit = getattr(args, "library", None) or os.environ.get("REPIC_LIBRARY")
    return run_gui(paths.resolve_library_path(explicit) if explicit else None, screenshot=args.screenshot,
                   page=args.page)


def add_gui_command(sub, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("gui", parents=[common], help="open the desktop app",
                       description="Open the RePIC Desktop window on the library.")
    s.add_argument("--screenshot", metavar="OUT.png",
                   help="render the window once the library is shown, save it as OUT.png and exit")
    s.add_argument("--page", choices=PAGES, default=None,
                   help="page to show first: the photo browser, people & pets, unknown faces, personalize, "
                        "or the caption queue")
    s.set_defaults(func=cmd_gui)

"""What every `repic` command group shares: the user-error exception (core/errors.py), exit codes, opening
the library."""
from __future__ import annotations

import argparse

from ..core import paths
from ..core.errors import RepicError, UserError  # noqa: F401 (re-exported: the commands raise UserError)
from ..core.library import Library

EXIT_USER_ERROR = 1
EXIT_DAMAGED = 3  # `repic status`: the library file fails SQLite's quick_check


def open_library(args: argparse.Namespace) -> Library:
    return Library(paths.resolve_library_path(args.library))

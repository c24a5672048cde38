"""`repic`, the command line: `main` parses and dispatches; one module per command group."""
from .app import main

__all__ = ["main"]

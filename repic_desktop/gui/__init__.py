"""The desktop app (PySide6). The only package that imports Qt.

Threading rules (docs/ARCHITECTURE.md): the GUI thread runs widgets and item models only. Folder scans,
thumbnails, preview decoding and library queries that can touch many rows run off the GUI thread through
`gui/tasks.py` (`TaskRunner`; the thumbnail pool `widgets/thumbnails.ThumbnailLoader` is built on it),
each task with its own `Library(path)` connection, and report back by queued signals. Model code runs in
the captioning controller's worker thread (`ModelWorker`, a `tasks.CommandThread`).

Importing this package does not import Qt; `repic_desktop.gui.app.run_gui` starts the app.
"""

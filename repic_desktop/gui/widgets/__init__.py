"""Widgets shared by pages: the photo panel, charts, thumbnails, painting helpers."""

"""Dialogs: caption, export (Write to Files), settings, welcome, file pickers, errors and About."""

"""Domain and storage. Nothing here imports Qt or torch (see docs/ARCHITECTURE.md)."""

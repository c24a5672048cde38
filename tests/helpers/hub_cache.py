"""A Hugging Face hub cache built from local folders, in the real layout, for tests that never touch the network."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def fake_hub_repo(cache: Path, repo_id: str, folder: Path, commit: str, refs=("main",)) -> Path:
    """Put ``folder``'s files into ``cache`` in the real hub layout: blobs + snapshot symlinks + refs."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snap / f.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snap

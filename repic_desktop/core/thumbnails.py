"""On-disk thumbnail cache keyed by content hash and size.

Design notes (why, not what):
- Keyed by the photo's content hash, not its path: a moved or renamed photo keeps its thumbnail, an
  edited one (new hash) gets a new one, and identical copies share one.
- Always JPEG (quality 85): a few KB per thumbnail; a 50,000-photo album stays well under a GB. The
  rare transparent image is flattened onto white, as photo browsers show it.
- Files live in 256 sub-folders (the hash's first two hex digits) so no folder grows huge.
- Written atomically: encode to a temp file in the same folder, then os.replace. Two threads or two
  processes making the same thumbnail each write their own temp file; whichever rename lands last
  wins, and a reader never sees a torn file. Within one process, a small fixed set of locks (striped by
  key) also stops two threads from doing the same decode twice. There is no other shared mutable state,
  so one ThumbnailCache can be used from a thread pool.
- No fsync: a thumbnail is a cache. A zero-length file left by a crash is treated as absent.
- The caller passes the content hash it has (from the library); the cache does not re-hash the file.
"""
from __future__ import annotations

import os
import re
import tempfile
import threading
import zlib
from pathlib import Path

from PIL import Image

from . import paths
from .images import UnusableImage, open_oriented

DEFAULT_SIZE = 256
MIN_SIZE, MAX_SIZE = 16, 4096
JPEG_QUALITY = 85
_HASH_RE = re.compile(r"^[0-9a-f]{16,128}$")
_N_LOCKS = 64


class ThumbnailCache:
    def __init__(self, cache_dir: str | os.PathLike | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else paths.thumbnail_dir()
        self._locks = tuple(threading.Lock() for _ in range(_N_LOCKS))

    def path_for(self, content_hash: str, size: int = DEFAULT_SIZE) -> Path:
        """Where the thumbnail of this content at this size lives (whether or not it exists yet)."""
        if not isinstance(content_hash, str) or not _HASH_RE.match(content_hash):
            raise ValueError(f"not a content hash: {content_hash!r}")
        if not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
            raise ValueError(f"thumbnail size must be {MIN_SIZE}-{MAX_SIZE} pixels, not {size!r}")
        return self.cache_dir / content_hash[:2] / f"{content_hash}-{size}.jpg"

    def get(self, content_hash: str, size: int = DEFAULT_SIZE) -> Path | None:
        """The cached thumbnail, or None (never decodes anything)."""
        path = self.path_for(content_hash, size)
        return path if _usable(path) else None

    def get_or_create(self, photo_path: str | os.PathLike | bytes, content_hash: str,
                      size: int = DEFAULT_SIZE) -> Path:
        """The thumbnail file (longer side `size`, EXIF orientation applied), made if missing.

        Raises UnusableImage when the photo cannot be decoded (the reason is user-facing), OSError when
        the cache folder cannot be written."""
        path = self.path_for(content_hash, size)
        if _usable(path):
            return path
        lock = self._locks[zlib.crc32(path.name.encode()) % _N_LOCKS]
        with lock:
            if _usable(path):  # another thread made it while we waited
                return path
            image = open_oriented(photo_path, max_side=size)
            image = _flatten(image)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    image.save(f, "JPEG", quality=JPEG_QUALITY)
                os.replace(tmp, path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        return path

    def remove(self, content_hash: str) -> int:
        """Delete every size of one thumbnail (e.g. after the photo was edited); returns the count."""
        folder = self.path_for(content_hash).parent
        n = 0
        for p in folder.glob(f"{content_hash}-*.jpg"):
            try:
                p.unlink()
                n += 1
            except FileNotFoundError:
                pass
        return n


def _usable(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


__all__ = ["ThumbnailCache", "UnusableImage", "DEFAULT_SIZE"]

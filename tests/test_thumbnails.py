"""core/thumbnails.py: oriented, keyed by content hash, atomic, safe from a thread pool."""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from repic_desktop.core import paths, thumbnails
from repic_desktop.core.images import UnusableImage
from repic_desktop.core.thumbnails import ThumbnailCache
from tests.helpers.corpus import H, W, gray16_png, jpeg_bytes, make_jpegs, rgba_png, write


def sha(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def count_decodes(monkeypatch) -> list:
    calls = []
    real = thumbnails.open_oriented

    def spy(path, max_side=None):
        calls.append(path)
        return real(path, max_side=max_side)
    monkeypatch.setattr(thumbnails, "open_oriented", spy)
    return calls


def test_default_cache_dir_is_the_app_thumbnail_dir():
    assert ThumbnailCache().cache_dir == paths.thumbnail_dir()
    assert str(paths.thumbnail_dir()).startswith(os.environ["REPIC_CACHE_DIR"])


def test_orientation_6_photo_gives_a_portrait_thumbnail(tmp_path):
    p = write(tmp_path / "o6.jpg", jpeg_bytes(size=(640, 480), orientation=6))
    cache = ThumbnailCache(tmp_path / "cache")
    t = cache.get_or_create(p, sha(p), size=128)
    with Image.open(t) as im:
        assert im.format == "JPEG" and im.size == (96, 128)
        assert im.getexif().get(0x0112) is None  # pixels are already upright
    small = cache.get_or_create(p, sha(p), size=1024)  # never upscaled
    with Image.open(small) as im:
        assert im.size == (480, 640)


def test_keyed_by_hash_and_size_and_made_once(tmp_path, monkeypatch):
    a = write(tmp_path / "a.jpg", jpeg_bytes())
    b = write(tmp_path / "copy of a.jpg", jpeg_bytes())
    cache = ThumbnailCache(tmp_path / "cache")
    h = sha(a)
    assert cache.path_for(h, 64) == tmp_path / "cache" / h[:2] / f"{h}-64.jpg"
    assert cache.get(h, 64) is None
    calls = count_decodes(monkeypatch)
    t1 = cache.get_or_create(a, h, 64)
    t2 = cache.get_or_create(b, h, 64)  # same content: same thumbnail, not decoded again
    assert t1 == t2 == cache.path_for(h, 64) == cache.get(h, 64) and len(calls) == 1
    cache.get_or_create(a, h, 32)
    assert len(calls) == 2
    assert cache.remove(h) == 2 and cache.get(h, 64) is None


def test_bad_files_raise_unusable_and_leave_nothing(tmp_path):
    cache = ThumbnailCache(tmp_path / "cache")
    bad = write(tmp_path / "bad.jpg", jpeg_bytes()[:300])
    with pytest.raises(UnusableImage, match="truncated JPEG"):
        cache.get_or_create(bad, sha(bad))
    text = write(tmp_path / "text.jpg", b"hello there\n")
    with pytest.raises(UnusableImage, match="not an image"):
        cache.get_or_create(text, sha(text))
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_hash_and_size_are_validated(tmp_path):
    cache = ThumbnailCache(tmp_path / "cache")
    for bad in ("../../etc/passwd", "", "ABC", "zz" * 32):
        with pytest.raises(ValueError):
            cache.path_for(bad, 256)
    with pytest.raises(ValueError):
        cache.path_for("ab" * 32, 0)


def test_alpha_and_16_bit_images(tmp_path):
    cache = ThumbnailCache(tmp_path / "cache")
    rgba = write(tmp_path / "o8.png", rgba_png(orientation=8))
    with Image.open(cache.get_or_create(rgba, sha(rgba), 256)) as im:
        assert im.mode == "RGB" and im.size == (H, W)
    g16 = write(tmp_path / "g16.png", gray16_png())
    with Image.open(cache.get_or_create(g16, sha(g16), 256)) as im:
        assert 90 < im.getpixel((W // 2, H // 2))[0] < 170  # not clipped to white


def test_concurrent_creation_is_safe(tmp_path, monkeypatch):
    files = make_jpegs(tmp_path / "photos", 8, size=(200, 150))
    hashes = [sha(f) for f in files]
    cache = ThumbnailCache(tmp_path / "cache")
    calls = count_decodes(monkeypatch)
    jobs = [(f, h) for f, h in zip(files, hashes)] * 6
    with ThreadPoolExecutor(max_workers=12) as pool:
        out = list(pool.map(lambda fh: cache.get_or_create(fh[0], fh[1], 64), jobs))
    assert len(calls) == len(files)  # each thumbnail decoded once although requested six times at once
    for path, h in zip(out, hashes * 6):
        assert path == cache.path_for(h, 64)
        with Image.open(path) as im:
            im.load()
            assert im.size == (64, 48)
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.suffix != ".jpg"]
    assert all(p.is_dir() for p in leftovers)


def test_two_caches_on_one_folder_race_without_torn_files(tmp_path):
    """Two processes share the cache folder: separate ThumbnailCache objects have separate locks, so
    both may write; the rename makes the result whole either way."""
    (f,) = make_jpegs(tmp_path / "photos", 1, size=(300, 200))
    h = sha(f)
    caches = [ThumbnailCache(tmp_path / "cache") for _ in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        out = list(pool.map(lambda c: c.get_or_create(f, h, 64), caches))
    assert len(set(out)) == 1
    with Image.open(out[0]) as im:
        im.load()
    assert [p.name for p in out[0].parent.iterdir()] == [out[0].name]


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    (f,) = make_jpegs(tmp_path / "photos", 1)
    cache = ThumbnailCache(tmp_path / "cache")

    def boom(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(thumbnails.os, "replace", boom)
    with pytest.raises(OSError):
        cache.get_or_create(f, sha(f), 64)
    monkeypatch.undo()
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    empty = cache.path_for(sha(f), 64)
    empty.write_bytes(b"")  # what a crash between create and write could leave
    assert cache.get(sha(f), 64) is None
    assert cache.get_or_create(f, sha(f), 64).stat().st_size > 0

"""The limits an image must stay within, and UnusableImage with the reasons built from them.

The limits are read as `limits.NAME` by the other modules, so a test can lower one in one place."""
from __future__ import annotations

from ..errors import RepicError
from .formats import FORMAT_NAMES


# 250 megapixels. The largest single-shot photos are ~100-150 MP (Fujifilm GFX100, Phase One IQ4) and
# large stitched panoramas or 1200-dpi scans of big prints reach ~200 MP; those must import. Decoding
# 250 MP as RGB needs ~750 MB of RAM, which a desktop can still afford once; beyond that a "photo" is far
# more likely a decompression bomb (a tiny file whose header claims gigapixels) than a family picture.
MAX_PIXELS = 250_000_000

# Files up to this size are read into memory once (hash + probe from the same bytes). Larger files are
# hashed in a streaming pass and probed through the open file (only headers and the few ranges the
# truncation checks need are read), so memory stays bounded for big TIFF scans.
MAX_READ_BYTES = 256 * 1024 * 1024
# Above this nothing is a photo we import (a mis-named video or disk image): refused without hashing.
MAX_FILE_BYTES = 4 * 1024 ** 3


# PNG has no reduced decode (no JPEG-style DCT scaling), so a big PNG wanted small (thumbnails, the
# captioner) is decoded in stripes of rows, each reduced as it comes: only the reduced image and one
# stripe are ever held. Smaller PNGs are decoded in full (same pixels, no extra work).
STREAM_DECODE_PIXELS = 32_000_000


# Reasons that depend on access rights or timing rather than on the file's bytes: a rescan retries them
# even when size and mtime did not change (chmod does not change mtime).
TRANSIENT_REASON_PREFIXES = ("permission denied", "cannot read", "file changed while",
                             "broken symbolic link", "not enough memory", "HEIC/HEIF support")


class UnusableImage(RepicError):
    """A file we cannot import; str(exc) is a clear, user-facing reason."""

    @property
    def reason(self) -> str:
        return str(self)


def is_transient_reason(reason: str) -> bool:
    return reason.startswith(TRANSIENT_REASON_PREFIXES)


_TRUNCATED = "truncated {name}: the file ends before the image data does"


def _truncated(fmt: str, detail: str = "") -> UnusableImage:
    msg = _TRUNCATED.format(name=FORMAT_NAMES[fmt])
    return UnusableImage(msg + (f" ({detail})" if detail else ""))


def _bomb(w: int, h: int) -> UnusableImage:
    return UnusableImage(
        f"image is {w}\u00d7{h} = {round(w * h / 1e6)} megapixels, over the {MAX_PIXELS // 1_000_000} "
        f"megapixel safety limit (decompression bomb?)")


def _check_pixels(w: int, h: int) -> None:
    if w <= 0 or h <= 0:
        raise UnusableImage(f"corrupt image: it claims to be {w}\u00d7{h} pixels")
    if w * h > MAX_PIXELS:
        raise _bomb(w, h)


def _os_error(exc: OSError) -> UnusableImage:
    if isinstance(exc, PermissionError):
        return UnusableImage("permission denied")
    if isinstance(exc, IsADirectoryError):
        return UnusableImage("not a regular file (a folder)")
    if isinstance(exc, FileNotFoundError):
        return UnusableImage("cannot read file: it no longer exists")
    return UnusableImage(f"cannot read file: {exc.strerror or exc}")


def _too_big(size: int) -> UnusableImage:
    return UnusableImage(f"file is {size / 1024 ** 3:.1f} GiB, larger than any photo we import "
                         f"(limit {MAX_FILE_BYTES // 1024 ** 3} GiB)")

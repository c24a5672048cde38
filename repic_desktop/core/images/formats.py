"""What a file is: supported extensions, sniffing the format from the content, and saying what a
non-image looks like. Content decides the format, never the extension (except for camera RAWs, many
of which are TIFF inside)."""
from __future__ import annotations

import os
import struct


# Formats we import (lower-case, with the dot). The extension only selects candidates in a folder walk;
# the content decides what the file is.
SUPPORTED_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif",
    ".png",
    ".tif", ".tiff",
    ".webp",
    ".heic", ".heif", ".hif",
    ".bmp", ".dib",
    ".gif",
})

# Camera RAW files: imported through their embedded JPEG preview (core/raw.py); metadata for them goes
# to .xmp sidecars. Several are TIFF inside, which is why the extension decides for these.
RAW_EXTENSIONS = frozenset({
    ".3fr", ".ari", ".arw", ".bay", ".cr2", ".cr3", ".crw", ".dcr", ".dng", ".erf", ".fff", ".iiq",
    ".k25", ".kdc", ".mef", ".mos", ".mrw", ".nef", ".nrw", ".orf", ".ori", ".pef", ".raf", ".raw",
    ".rw2", ".rwl", ".sr2", ".srf", ".srw", ".x3f",
})


FORMAT_NAMES = {"JPEG": "JPEG", "PNG": "PNG", "TIFF": "TIFF", "WEBP": "WebP", "HEIF": "HEIC/HEIF",
                "BMP": "BMP", "GIF": "GIF", "RAW": "camera RAW"}
_SUPPORTED_LIST = "JPEG/PNG/TIFF/WebP/HEIC/BMP/GIF"


_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
_VIDEO_BRANDS = {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"M4V ", b"M4A ",
                 b"qt  ", b"3gp4", b"3gp5", b"3gp6", b"3g2a", b"dash", b"crx "}


def sniff_format(head: bytes) -> str | None:
    """Pillow format name of a supported image from its first 32 bytes, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "HEIF"
    if head.startswith(b"GIF87a") or head.startswith(b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM") and len(head) >= 18 and struct.unpack_from("<I", head, 14)[0] in (
            12, 16, 40, 52, 56, 64, 108, 124):
        return "BMP"
    return None


def _describe_other(head: bytes) -> str:
    """Why a file is not an image we import (its content is not one of ours)."""
    unsupported = None
    if head.startswith(b"8BPS"):
        unsupported = "a Photoshop PSD document"
    elif head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"):
        unsupported = "an AVIF image"
    elif head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        unsupported = "a JPEG XL image"
    elif head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xff\x4f\xff\x51"):
        unsupported = "a JPEG 2000 image"
    elif head.startswith(b"\x00\x00\x01\x00") and len(head) > 6 and head[4] > 0:
        unsupported = "a Windows icon (ICO)"
    elif head.startswith(b"%!PS"):
        unsupported = "a PostScript/EPS file"
    if unsupported:
        return f"unsupported format: the content is {unsupported} (supported: {_SUPPORTED_LIST})"
    looks = _looks_like(head)
    return f"not an image: the content is not {_SUPPORTED_LIST} ({looks})"


def _looks_like(head: bytes) -> str:
    if not head.strip(b"\x00"):
        return "all zero bytes"
    if head.startswith(b"%PDF"):
        return "looks like a PDF document"
    if head.startswith(b"PK\x03\x04"):
        return "looks like a ZIP archive or office document"
    if head[4:8] == b"ftyp" and head[8:12] in _VIDEO_BRANDS:
        return "looks like a video"
    if head.startswith(b"RIFF") and head[8:12] in (b"AVI ", b"WAVE"):
        return "looks like a video" if head[8:12] == b"AVI " else "looks like audio"
    if head.startswith(b"\x00\x05\x16\x07"):
        return "looks like a macOS resource fork (AppleDouble)"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if stripped.startswith((b"<!doctype html", b"<html", b"<head")):
        return "looks like a web page - an interrupted download?"
    if stripped.startswith(b"<?xml") or stripped.startswith(b"<svg"):
        return "looks like XML/SVG"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = head[:exc.start].decode("utf-8") if exc.start > len(head) - 4 else None
    if text is not None and text and sum(c.isprintable() or c in "\t\r\n" for c in text) >= 0.95 * len(text):
        return "looks like text"
    return "unknown binary data"


def is_raw_name(path: str | bytes | os.PathLike) -> bool:
    """A camera RAW file by its extension (the content of many RAWs is TIFF, so content cannot decide)."""
    name = os.fsdecode(os.fspath(path))
    return os.path.splitext(name)[1].lower() in RAW_EXTENSIONS

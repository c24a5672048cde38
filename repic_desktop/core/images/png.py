"""PNG chunks without Pillow: the chunk walk, an eXIf chunk after the image data (read without
decoding pixels), and reopening a PNG without the text chunks Pillow refuses to inflate."""
from __future__ import annotations

import bisect
import io
import struct
from typing import BinaryIO

from PIL import (
    Image,
    PngImagePlugin,
)
from .files import Buf


def _png_chunks(data: Buf):
    """(type, data offset, length) of each chunk that starts inside the file (headers only are read)."""
    n, pos = len(data), 8
    while pos + 8 <= n:
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        yield ctype, pos + 8, length
        if ctype == b"IEND":
            return
        pos += 12 + length


def _png_late_exif(data: Buf) -> bytes | None:
    """An eXIf chunk after the image data. Pillow's PngImageFile.getexif() decodes every pixel to reach
    it (a 248 MP PNG took ~1 GB at import just to learn its orientation); the chunk walk reads headers."""
    for ctype, start, length in _png_chunks(data):
        if ctype == b"eXIf" and length <= 1 << 20 and start + length <= len(data):
            return b"Exif\x00\x00" + bytes(data[start:start + length])
    return None


# Pillow refuses a PNG whose text chunks inflate beyond PngImagePlugin.MAX_TEXT_CHUNK (1 MB each) or
# MAX_TEXT_MEMORY (64 MB in all) with these ValueErrors. The limits are right (a small zTXt chunk can
# inflate to gigabytes) but the file is not corrupt: we reopen it through a view without its text
# chunks (metadata is read by exiv2/exiftool, not from Pillow's text), so Pillow's process-wide limits
# stay as they are.
_PNG_TEXT_LIMIT_ERRORS = ("Decompressed data too large for PngImagePlugin.MAX_TEXT_CHUNK",
                          "Too much memory used in text chunks")
_PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")


def _is_png_text_limit(exc: BaseException) -> bool:
    return isinstance(exc, ValueError) and str(exc).startswith(_PNG_TEXT_LIMIT_ERRORS)


class _SkipChunks(io.RawIOBase):
    """A read-only view of a PNG with some chunks left out (the file itself is never copied)."""

    def __init__(self, fp: BinaryIO, data: Buf, skip: tuple[bytes, ...]):
        super().__init__()
        self._fp = fp
        segments: list[list[int]] = [[0, 8]]  # [file offset, length]; the signature
        for ctype, start, length in _png_chunks(data):
            begin, size = start - 8, min(length + 12, len(data) - start + 8)
            if ctype in skip:
                continue
            last = segments[-1]
            if last[0] + last[1] == begin:
                last[1] += size
            else:
                segments.append([begin, size])
        self._segments = segments
        self._starts = []
        total = 0
        for _, size in segments:
            self._starts.append(total)
            total += size
        self._size, self._pos = total, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, b) -> int:
        if self._pos >= self._size or not len(b):
            return 0
        i = bisect.bisect_right(self._starts, self._pos) - 1
        begin, size = self._segments[i]
        off = self._pos - self._starts[i]
        self._fp.seek(begin + off)
        got = self._fp.read(min(len(b), size - off))
        b[:len(got)] = got
        self._pos += len(got)
        return len(got)


def _open_png_without_text(fp: BinaryIO, data: Buf, filename: str | bytes) -> Image.Image:
    view = io.BufferedReader(_SkipChunks(fp, data, _PNG_TEXT_CHUNKS), 1 << 16)
    return PngImagePlugin.PngImageFile(view, filename)

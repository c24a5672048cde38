"""Decoding a big PNG at reduced size in stripes of rows, each reduced as it comes: PNG has no reduced
decode (no JPEG-style DCT scaling), so only the reduced image and one stripe are ever held - a 248 MP
panorama costs tens of MB instead of ~1 GB. Smaller PNGs are decoded in full (same pixels, no extra
work); `limits.STREAM_DECODE_PIXELS` decides which."""
from __future__ import annotations

import math
import struct
import zlib

from PIL import (
    Image,
)
from . import limits
from .files import Buf
from .limits import UnusableImage, _truncated
from .pixels import to_rgb_or_rgba


_STRIPE_BYTES = 8 << 20
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Per bytes-per-pixel (the unit PNG's row filters work in): a Pillow (mode, rawmode) whose pixels are
# the unfiltered bytes themselves, so a stripe's last row can seed the next stripe's filters. 16-bit
# RGB(A) has none: its high bytes and low bytes are decoded separately (";16B" and ";16L").
_PNG_IDENTITY = {1: ("L", "L"), 2: ("LA", "LA"), 3: ("RGB", "RGB"), 4: ("RGBA", "RGBA"),
                 6: ("RGB", "RGB;16B"), 8: ("RGBA", "RGBA;16B")}


def _png_stream_factor(im: Image.Image, data: Buf, max_side: int | None, keep_pixels: int | None) -> int:
    """The reduction factor for a streamed decode, or 0 where the PNG is decoded in full."""
    w, h = im.size
    if w * h < limits.STREAM_DECODE_PIXELS or data[28] != 0 or len(im.tile) != 1:  # interlaced: passes span all rows
        return 0
    if max_side:
        factor = max(w, h) // max_side
    elif keep_pixels:
        factor = math.isqrt(w * h // keep_pixels)
    else:
        return 0
    return factor if factor >= 2 else 0


def _stored_blocks(pieces: list[bytes]):
    """The pieces as a zlib stream of stored (uncompressed) deflate blocks, in parts, for Pillow's decoder:
    built at memcpy speed and never joined (zlib.compress(level=0) is several times slower). No final
    block and no Adler-32: the decoder stops at its last row, before zlib would look for them."""
    yield b"\x78\x01"
    for piece in pieces:
        view = memoryview(piece)
        for i in range(0, len(piece), 65535):
            block = view[i:i + 65535]
            yield struct.pack("<BHH", 0, len(block), len(block) ^ 0xFFFF)
            yield block


def _png_decode_rows(mode: str, rawmode: str, width: int, pieces: list[bytes], k: int) -> Image.Image:
    """Unfilter and unpack filtered rows with Pillow's PNG decoder. `pieces` start with the unfiltered
    row above the stripe as a row with filter 0, so the first real row's filter sees it: k+1 rows."""
    img = Image.new(mode, (width, k + 1), None)
    decoder = Image._getdecoder(mode, "zip", rawmode)
    status = err = 0
    try:
        decoder.setimage(img.im, (0, 0, width, k + 1))
        for part in _stored_blocks(pieces):
            status, err = decoder.decode(part)
            if status < 0 or err < 0:
                break
    finally:
        decoder.cleanup()
    if err < 0 or status >= 0:
        raise UnusableImage(f"corrupt PNG file: the image data cannot be decoded (error {err})")
    return img


def _png_stripe_to_common(stripe: Image.Image, png: Image.Image) -> Image.Image:
    """One stripe in a mode Image.reduce handles, the same for every stripe of the image."""
    if stripe.mode in ("RGB", "RGBA", "L", "LA"):
        return stripe
    if stripe.mode == "P":
        stripe.palette = png.palette.copy()
        if "transparency" in png.info:
            stripe.info["transparency"] = png.info["transparency"]
        alpha = "transparency" in png.info or png.palette.mode == "RGBA"
        return stripe.convert("RGBA" if alpha else "RGB")
    if stripe.mode == "1":
        return stripe.convert("L")
    return to_rgb_or_rgba(stripe, "PNG")  # 16-bit grey: the fixed 16-to-8-bit scale PNG always gets


class _FilteredRows:
    """The filtered rows of a PNG, inflated from its IDAT chunks as they are asked for."""

    def __init__(self, png: Image.Image):
        self.inflate = zlib.decompressobj()
        self.src = png.fp  # the file as Pillow parsed it (a view without text chunks, when it needed one)
        self.src.seek(png.tile[0].offset - 8)  # the first IDAT chunk
        self.remaining = 0  # compressed bytes left in the current IDAT chunk

    def read(self, need: int) -> list[bytes]:
        """Exactly `need` bytes of inflated rows, in parts."""
        parts: list[bytes] = []
        got = 0
        while got < need:
            piece = self.inflate.unconsumed_tail or self._compressed()
            try:
                part = self.inflate.decompress(piece, need - got)
            except zlib.error as exc:
                raise UnusableImage(f"corrupt PNG file: {exc}") from exc
            parts.append(part)
            got += len(part)
            if self.inflate.eof and got < need:
                raise _truncated("PNG", "the image data ends early")
        return parts

    def _compressed(self) -> bytes:
        """The next piece (at most 1 MiB) of compressed data, across IDAT chunk boundaries."""
        src = self.src
        while self.remaining == 0:
            header = src.read(8)
            if len(header) < 8 or header[4:] != b"IDAT":
                raise _truncated("PNG", "the image data ends early")
            self.remaining = struct.unpack(">I", header[:4])[0]
            if self.remaining == 0:
                src.read(4)
        take = min(self.remaining, 1 << 20)
        piece = src.read(take)
        if len(piece) < take:
            raise _truncated("PNG")
        self.remaining -= take
        if self.remaining == 0:
            src.read(4)  # CRC
        return piece


def _png_stream_reduced(png: Image.Image, data: Buf, factor: int) -> Image.Image:
    """Decode a non-interlaced PNG at 1/factor size (box filter), holding one stripe of rows at a time."""
    w, h = png.size
    depth, color = data[24], data[25]
    bits = depth * _PNG_CHANNELS[color]
    bpp, rowbytes = max(1, bits // 8), (w * bits + 7) // 8
    id_mode, id_raw = _PNG_IDENTITY[bpp]
    id_width = w if bpp in (6, 8) else rowbytes // bpp
    rawmode = png.tile[0].args if isinstance(png.tile[0].args, str) else png.tile[0].args[0]
    k_max = factor * max(1, _STRIPE_BYTES // (factor * (rowbytes + 1)))
    out: Image.Image | None = None
    rows = _FilteredRows(png)
    prev = bytes(rowbytes)
    y = 0
    while y < h:
        k = min(k_max, h - y)
        parts = [b"\x00", prev] + rows.read(k * (rowbytes + 1))
        img = _png_decode_rows(id_mode, id_raw, id_width, parts, k)
        if bpp in (6, 8):  # the low bytes, to rebuild the exact last row for the next stripe's filters
            lo = _png_decode_rows(id_mode, id_raw[:-1] + "L", id_width, parts, k)
            last = bytearray(rowbytes)
            last[0::2] = img.crop((0, k, w, k + 1)).tobytes("raw", id_mode)
            last[1::2] = lo.crop((0, k, w, k + 1)).tobytes("raw", id_mode)
            del lo
            prev = bytes(last)
        else:
            prev = img.crop((0, k, id_width, k + 1)).tobytes("raw", id_raw)[:rowbytes]
        del parts
        if (png.mode, rawmode) == (id_mode, id_raw) or bpp in (6, 8):
            small = _png_stripe_to_common(img, png).reduce(factor, box=(0, 1, w, k + 1))
        else:
            stripe = Image.frombytes(png.mode, (w, k), img.tobytes("raw", id_raw)[id_width * bpp:], "raw", rawmode)
            small = _png_stripe_to_common(stripe, png).reduce(factor)
            del stripe
        del img
        if out is None:
            out = Image.new(small.mode, (-(-w // factor), -(-h // factor)))
        out.paste(small, (0, y // factor))
        y += k
    assert out is not None
    return out

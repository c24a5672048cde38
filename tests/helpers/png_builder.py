"""Hand-built PNGs for memory and text-chunk tests: huge solid images written without ever holding
their pixels (Pillow would need the whole image in memory to save one), and text chunks of any size."""
from __future__ import annotations

import struct
import zlib


def chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data) & 0xFFFFFFFF)


def solid_png(path, width: int, height: int, color: tuple[int, ...] = (200, 120, 40),
              extra_chunks: bytes = b"") -> None:
    """An 8-bit RGB (or RGBA, with 4 colour values) PNG of one colour, in well under a second at 250 MP.

    After a full flush zlib's state is reset, so the same block of rows compresses to the same bytes
    every time: it is compressed once and repeated; only the Adler-32 needs the whole stream."""
    row = b"\x00" + bytes(color) * width
    rows_per_block = max(1, min(height, (1 << 20) // len(row)))
    block = row * rows_per_block
    comp = zlib.compressobj(9)
    head = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)  # 2-byte zlib header + the block
    body = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    assert head[2:] == body
    full, rest = divmod(height, rows_per_block)
    adler = 1
    for _ in range(full):
        adler = zlib.adler32(block, adler)
    tail = row * rest
    adler = zlib.adler32(tail, adler)
    tail_comp = zlib.compressobj(9)
    last = tail_comp.compress(tail) + tail_comp.flush(zlib.Z_FULL_FLUSH)
    end = b"\x03\x00" + struct.pack(">I", adler)  # an empty final fixed-Huffman block, then Adler-32
    color_type = 6 if len(color) == 4 else 2
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)))
        f.write(extra_chunks)
        f.write(chunk(b"IDAT", head[:2]))
        for _ in range(full):
            f.write(chunk(b"IDAT", body))
        if rest:
            f.write(chunk(b"IDAT", last[2:]))
        f.write(chunk(b"IDAT", end))
        f.write(chunk(b"IEND", b""))


def ztxt(keyword: bytes, text: bytes) -> bytes:
    return chunk(b"zTXt", keyword + b"\x00\x00" + zlib.compress(text, 9))


def itxt_compressed(keyword: bytes, text: bytes) -> bytes:
    return chunk(b"iTXt", keyword + b"\x00\x01\x00\x00\x00" + zlib.compress(text, 9))

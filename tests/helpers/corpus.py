"""Generates the odd-input / bad-input photo corpus in a temp folder (no binary files in the repo).

`build_corpus(tmp_path)` returns a Corpus describing what the scanner must import (with the size it must
report, as displayed) and what it must skip (with a piece of the reason it must give).
"""
from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

W, H = 64, 48


def exif_bytes(orientation: int | None = None, date: str | None = None) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if date is not None:
        exif.get_ifd(0x8769)[0x9003] = date
        exif[0x0132] = "1999:01:01 00:00:00"  # DateTime (file change): must lose to DateTimeOriginal
    return exif.tobytes()


def gradient(mode: str = "RGB", size: tuple[int, int] = (W, H)) -> Image.Image:
    """A picture whose left and top edges differ, so orientation mistakes are visible in pixels."""
    w, h = size
    im = Image.new("RGB", size)
    im.putdata([(int(255 * x / (w - 1)), int(255 * y / (h - 1)), 64) for y in range(h) for x in range(w)])
    return im.convert(mode) if mode != "RGB" else im


def jpeg_bytes(size=(W, H), *, orientation: int | None = None, date: str | None = None, mode: str = "RGB",
               color=None, **save) -> bytes:
    im = Image.new(mode, size, color) if color is not None else gradient(mode, size)
    b = io.BytesIO()
    extra = {"exif": exif_bytes(orientation, date)} if (orientation or date) else {}
    im.save(b, "JPEG", quality=90, **extra, **save)
    return b.getvalue()


def encode(im: Image.Image, fmt: str, **save) -> bytes:
    b = io.BytesIO()
    im.save(b, fmt, **save)
    return b.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(w: int, h: int, bit_depth: int, color_type: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(idat))
            + png_chunk(b"IEND", b""))


def gray16_png(size=(W, H)) -> bytes:
    """16-bit grayscale, values spread over 0..65535 (a naive 16->8 bit conversion clips it to white)."""
    w, h = size
    rows = b"".join(b"\x00" + struct.pack(f">{w}H", *(int(65535 * x / (w - 1)) for x in range(w)))
                    for _ in range(h))
    return raw_png(w, h, 16, 0, rows)


def bomb_png(w: int = 100_000, h: int = 100_000) -> bytes:
    """A complete, tiny PNG whose header claims w x h pixels (the IDAT is a few bytes; never decoded)."""
    return raw_png(w, h, 8, 2, b"\x00" * 16)


def palette_png() -> bytes:
    im = gradient().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(im, "PNG", transparency=0)


def rgba_png(orientation: int | None = None) -> bytes:
    im = gradient("RGBA")
    im.putalpha(Image.linear_gradient("L").resize((W, H)))
    extra = {"exif": exif_bytes(orientation)} if orientation else {}
    return encode(im, "PNG", **extra)


def heic_bytes(orientation: int | None = None) -> bytes | None:
    try:
        import pillow_heif
        pillow_heif.register_heif_opener()
        if not pillow_heif.libheif_info().get("HEIF"):
            return None
    except Exception:
        return None
    extra = {"exif": exif_bytes(orientation)} if orientation else {}
    return encode(gradient(), "HEIF", quality=90, **extra)


@dataclass
class Corpus:
    root: Path
    outside: Path
    good: dict[bytes, tuple[int, int, str]] = field(default_factory=dict)   # path -> (w, h, format)
    bad: dict[bytes, str] = field(default_factory=dict)                     # path -> reason fragment
    raw: list[bytes] = field(default_factory=list)
    ignored: list[bytes] = field(default_factory=list)                      # hidden, duplicates by link
    permission_enforced: bool = True

    def p(self, *parts: str | bytes) -> bytes:
        return os.path.join(os.fsencode(self.root), *(os.fsencode(x) for x in parts))

    def snapshot(self) -> dict[bytes, tuple]:
        """Every entry under root and outside: (kind, size, mtime_ns, mode, sha256 or link target)."""
        snap = {}
        for base in (os.fsencode(self.root), os.fsencode(self.outside)):
            for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
                for name in dirnames + filenames:
                    p = os.path.join(dirpath, name)
                    st = os.lstat(p)
                    if os.path.islink(p):
                        snap[p] = ("link", os.readlink(p))
                    elif os.path.isdir(p):
                        snap[p] = ("dir", st.st_mode, st.st_mtime_ns)
                    else:
                        try:
                            with open(p, "rb") as f:
                                digest = hashlib.sha256(f.read()).hexdigest()
                        except PermissionError:
                            digest = None
                        snap[p] = ("file", st.st_size, st.st_mtime_ns, st.st_mode, digest)
        return snap


def tiff_raw_bytes(preview: bytes, *, orientation: int = 1, date: str | None = None,
                   thumbnail: bytes | None = None, sensor: bytes = b"") -> bytes:
    """A TIFF-structured camera RAW as CR2/NEF/ARW/DNG lay it out: IFD0 (orientation, EXIF IFD with the
    date, the big preview via JPEGInterchangeFormat), IFD1 with a small thumbnail, then 'sensor data'."""
    def ifd(entries: list[tuple[int, int, int, bytes | int]], at: int, nxt: int) -> tuple[bytes, bytes]:
        # entries: (tag, type, count, value); values > 4 bytes go into an area right after the IFD
        body, extra = b"", b""
        area = at + 2 + 12 * len(entries) + 4
        for tag, typ, count, value in sorted(entries):
            if isinstance(value, bytes) and len(value) > 4:
                body += struct.pack("<HHII", tag, typ, count, area + len(extra))
                extra += value + (b"\0" if len(value) % 2 else b"")
            elif isinstance(value, bytes):
                body += struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\0")
            else:
                fmt = "<HHIHH" if typ == 3 else "<HHII"
                body += struct.pack(fmt, tag, typ, count, value, *((0,) if typ == 3 else ()))
        return struct.pack("<H", len(entries)) + body + struct.pack("<I", nxt), extra

    thumbnail = thumbnail or jpeg_bytes((16, 12))
    ifd0_at = 8
    exif_entries = [(0x9003, 2, 20, (date or "2020:01:01 00:00:00").encode() + b"\0")] if date else []
    # lay out: header | IFD0 (+extra) | EXIF IFD (+extra) | IFD1 (+extra) | thumbnail | preview | sensor
    sizes = [2 + 12 * 6 + 4 + 32, 2 + 12 * max(1, len(exif_entries)) + 4 + 24, 2 + 12 * 3 + 4]
    exif_at = ifd0_at + sizes[0]
    ifd1_at = exif_at + sizes[1]
    thumb_at = ifd1_at + sizes[2]
    preview_at = thumb_at + len(thumbnail)
    ifd0, extra0 = ifd([(0x100, 4, 1, 64), (0x101, 4, 1, 48), (0x10F, 2, 6, b"Canon\0"),
                        (0x112, 3, 1, orientation), (0x201, 4, 1, preview_at), (0x202, 4, 1, len(preview))]
                       + ([(0x8769, 4, 1, exif_at)] if date else [(0x131, 2, 4, b"cam\0")]), ifd0_at, ifd1_at)
    exif, extra_e = ifd(exif_entries or [(0x9000, 7, 4, b"0230")], exif_at, 0)
    ifd1, extra1 = ifd([(0x103, 3, 1, 6), (0x201, 4, 1, thumb_at), (0x202, 4, 1, len(thumbnail))], ifd1_at, 0)
    out = b"II*\0" + struct.pack("<I", ifd0_at)
    out += (ifd0 + extra0).ljust(sizes[0], b"\0") + (exif + extra_e).ljust(sizes[1], b"\0")
    out += (ifd1 + extra1).ljust(sizes[2], b"\0")
    assert len(out) == thumb_at
    return out + thumbnail + preview + sensor


def raf_like_bytes(preview: bytes) -> bytes:
    """A RAW that is not TIFF inside (Fujifilm RAF's layout: its own header, then a JPEG, then data)."""
    head = b"FUJIFILMCCD-RAW 0201FF383501" + b"\0" * 56
    return head + struct.pack(">II", len(head) + 8, len(preview)) + preview + os.urandom(256)


def write(path: bytes | Path, data: bytes) -> bytes:
    path = os.fsencode(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def build_corpus(tmp_path: Path) -> Corpus:
    root = tmp_path / "photos"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    c = Corpus(root=root, outside=outside)

    def good(name, data, w=W, h=H, fmt="JPEG"):
        c.good[write(c.p(name), data)] = (w, h, fmt)

    def bad(name, data, reason):
        c.bad[write(c.p(name), data)] = reason

    # --- odd but valid
    good("oriented6.jpg", jpeg_bytes(orientation=6, date="2021:07:04 10:11:12"), H, W)
    good("cmyk.jpg", jpeg_bytes(mode="CMYK", color=(0, 255, 255, 0)))
    good("progressive.jpg", jpeg_bytes(progressive=True))
    good("trailer.jpg", jpeg_bytes() + b"SAMSUNG TRAILER \x00\x01" * 50)
    good("gray16.png", gray16_png(), fmt="PNG")
    good("palette.png", palette_png(), fmt="PNG")
    good("rgba_oriented8.png", rgba_png(orientation=8), H, W, fmt="PNG")
    good("photo.tif", encode(gradient(), "TIFF"), fmt="TIFF")
    good("photo.tiff", encode(gradient(), "TIFF", compression="tiff_lzw"), fmt="TIFF")
    good("photo.webp", encode(gradient(), "WEBP", quality=80), fmt="WEBP")
    good("photo.bmp", encode(gradient(), "BMP"), fmt="BMP")
    good("photo.gif", encode(gradient().convert("P"), "GIF"), fmt="GIF")
    heic = heic_bytes(orientation=6)
    if heic is not None:
        good("phone.heic", heic, H, W, fmt="HEIF")
    good(b"caf\xe9.jpg", jpeg_bytes())                       # not valid UTF-8
    good("😀 birthday.jpg", jpeg_bytes())
    good("name with  spaces.jpeg", jpeg_bytes())
    good("UPPER.JPG", jpeg_bytes())
    good("really_a_png.jpg", encode(gradient(), "PNG"), fmt="PNG")   # content decides
    good(os.path.join("x.jpg", "inside.jpg"), jpeg_bytes())          # a folder named x.jpg
    good(os.path.join("sub", "deeper", "deep.jpe"), jpeg_bytes())

    # --- bad: each must be skipped with a reason, and the import must go on
    full = jpeg_bytes(size=(256, 192))
    bad("empty.jpg", b"", "empty file (0 bytes)")
    bad("truncated.jpg", full[: len(full) * 2 // 3], "truncated JPEG")
    bad("truncated_header.jpg", full[:40], "truncated JPEG")
    png = encode(gradient(), "PNG")
    bad("truncated.png", png[:-30], "truncated PNG")
    bad("text.jpg", b"This is not a photo, just some notes.\nSecond line.\n", "not an image")
    bad("page.png", b"<!DOCTYPE html><html><head><title>404</title></head></html>", "not an image")
    bad("bomb.png", bomb_png(), "decompression bomb")
    bad("garbage.webp", os.urandom(64), "not an image")
    noperm = write(c.p("noperm.jpg"), jpeg_bytes())
    os.chmod(noperm, 0)
    try:
        with open(noperm, "rb"):
            c.permission_enforced = False  # running as root: chmod 000 does not stop reading
    except PermissionError:
        pass
    if c.permission_enforced:
        c.bad[noperm] = "permission denied"
    else:
        c.good[noperm] = (W, H, "JPEG")
    os.symlink(os.path.join(os.fsencode(root), b"does-not-exist.jpg"), c.p("broken_link.jpg"))
    c.bad[c.p("broken_link.jpg")] = "broken symbolic link"

    # --- links: a loop, a link to a folder outside, links to files
    os.symlink(os.fsencode(root), c.p("loop"))                             # dir link to its own parent
    os.symlink("..", c.p("sub", "up"))                                     # and one relative loop
    os.symlink(os.fsencode(tmp_path), c.p("above"))                        # a link above the root
    write(os.path.join(os.fsencode(outside), b"ext.jpg"), jpeg_bytes())
    write(os.path.join(os.fsencode(outside), b"linkeddir", b"far.jpg"), jpeg_bytes())
    os.symlink(os.path.join(os.fsencode(outside), b"ext.jpg"), c.p("ext_link.jpg"))
    c.good[c.p("ext_link.jpg")] = (W, H, "JPEG")                           # imported under the link path
    os.symlink(os.path.join(os.fsencode(outside), b"linkeddir"), c.p("linked"))
    c.good[c.p("linked", "far.jpg")] = (W, H, "JPEG")
    os.symlink(c.p("cmyk.jpg"), c.p("a_link_to_cmyk.jpg"))                 # same file twice: real path wins
    c.ignored.append(c.p("a_link_to_cmyk.jpg"))

    # --- camera RAW: imported through the embedded preview (displayed frame = preview + RAW orientation)
    preview = jpeg_bytes((200, 130))
    good("DSC_0002.nef", tiff_raw_bytes(preview, orientation=6, date="2022:03:04 05:06:07",
                                        sensor=os.urandom(2000)), 130, 200, "RAW")
    good("DSCF0003.RAF", raf_like_bytes(jpeg_bytes((180, 120))), 180, 120, "RAW")
    c.raw += [c.p("DSC_0002.nef"), c.p("DSCF0003.RAF")]
    bad("IMG_0001.CR2", b"II*\x00" + os.urandom(100), "without a usable embedded JPEG preview")
    bad("scan.dng", tiff_raw_bytes(preview[: len(preview) // 2]), "without a usable embedded JPEG preview")

    # --- ignored: hidden files/folders, AppleDouble, not-a-photo extensions
    for name in (".hidden.jpg", "._oriented6.jpg", os.path.join(".thumbnails", "t.jpg"),
                 os.path.join("@eaDir", "SYNOPHOTO_THUMB_M.jpg")):
        c.ignored.append(write(c.p(name), jpeg_bytes()))
    write(c.p("notes.txt"), b"hello")
    write(c.p("movie.mp4"), b"\x00\x00\x00\x18ftypmp42")
    return c


def make_jpegs(folder: Path, n: int, size=(64, 48)) -> list[Path]:
    """n distinct small JPEGs (distinct content, so distinct hashes)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = Image.new("RGB", size, (10, 20, 30))
    out = []
    for i in range(n):
        im = base.copy()
        im.putpixel((i % size[0], (i // size[0]) % size[1]), (255, i % 256, (i * 7) % 256))
        p = folder / f"img_{i:05d}.jpg"
        im.save(p, "JPEG", quality=85, comment=f"#{i}".encode())
        out.append(p)
    return out


def encode_jpeg(im: Image.Image) -> bytes:
    """An image as JPEG bytes (quality 95), e.g. to embed as a RAW's preview."""
    b = io.BytesIO()
    im.save(b, "JPEG", quality=95)
    return b.getvalue()

"""Safe image probing and decoding, shared by the scanner, concept references, thumbnails and the engine.

Design notes (why, not what):
- Content decides the format, never the extension: we sniff the first bytes ourselves, so a text file
  named .jpg is reported as "not an image" (with a hint of what it looks like) and a PNG named .jpg is
  imported as the PNG it is.
- Decompression bombs are stopped by our own check of the header's pixel count against `MAX_PIXELS`
  before any pixel is decoded. We construct Pillow's plugin classes directly (what `Image.open` does
  internally, minus its global `MAX_IMAGE_PIXELS` check), so we never touch Pillow's global state and
  our limit - not Pillow's 179 MP one - decides. (A few plugins - GIF, TIFF, WebP - also check Pillow's
  limit themselves while loading; for those, images between 179 MP and `MAX_PIXELS` are refused with
  the same bomb message. Real photos in those formats never get that big.)
- Truncation is found cheaply, without decoding every photo (the import must stay close to the speed of
  "open + hash"): JPEG must have an EOI marker after its first scan header (bytes after EOI are allowed:
  cameras append trailers), PNG must reach its IEND chunk, WebP must be as long as its RIFF header says,
  HEIF's top-level boxes must all fit in the file, TIFF's first-page strips/tiles must lie inside the
  file. BMP and GIF are rare and cheap: their first frame is decoded fully.
- PNG: the import never decodes pixels (Pillow's PngImageFile.getexif would, to reach an eXIf chunk
  after the image data; we walk the chunks instead). A PNG of STREAM_DECODE_PIXELS or more wanted
  small (thumbnails, the captioner) is decoded in row stripes, each reduced as it comes, so a 248 MP
  panorama costs tens of MB instead of ~1 GB. Text chunks that Pillow refuses to inflate (over its
  1 MB / 64 MB limits) make us reopen the file through a view without text chunks; Pillow's
  process-wide limits are never raised, so a text-chunk bomb is never inflated.
- HEIC/HEIF comes from pillow_heif, registered lazily once; if it is not installed HEIC files are
  reported unusable with a clear reason instead of crashing. libheif applies HEIF's own rotation while
  decoding (and pillow_heif resets the EXIF tag to 1), so for HEIF the reported size is already the
  displayed one and `open_oriented` does not rotate again.

Nothing here imports Qt or torch.
"""
from __future__ import annotations

import bisect
import hashlib
import io
import math
import os
import re
import stat
import struct
import threading
import zlib
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Union

from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
    features,
)
from .errors import RepicError

if TYPE_CHECKING:
    from .raw import RawFacts

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

FORMAT_NAMES = {"JPEG": "JPEG", "PNG": "PNG", "TIFF": "TIFF", "WEBP": "WebP", "HEIF": "HEIC/HEIF",
                "BMP": "BMP", "GIF": "GIF", "RAW": "camera RAW"}
_SUPPORTED_LIST = "JPEG/PNG/TIFF/WebP/HEIC/BMP/GIF"

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


@dataclass(frozen=True)
class ImageInfo:
    format: str              # Pillow's name: JPEG, PNG, TIFF, WEBP, HEIF, BMP, GIF
    width: int               # as displayed, i.e. after EXIF orientation
    height: int
    orientation: int         # EXIF orientation 1-8 as found in the file (1 when absent)
    date_taken: str | None   # ISO 8601 from EXIF DateTimeOriginal (else DateTime), None when absent
    mode: str                # Pillow mode of the stored pixels (RGB, CMYK, I;16, P, ...)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProbedFile:
    """One read of a file: what it is and what it was when read."""
    size: int
    mtime_ns: int
    content_hash: str        # sha256 hex of the whole file
    info: ImageInfo


# --------------------------------------------------------------------------------------------------
# HEIF support, registered lazily and once
# --------------------------------------------------------------------------------------------------

_heif_lock = threading.Lock()
_heif_state: dict[str, Any] = {}


def _heif_class():
    """pillow_heif's image class, registering the opener once; raises UnusableImage if unavailable."""
    with _heif_lock:
        if "cls" not in _heif_state and "error" not in _heif_state:
            try:
                import pillow_heif
                from pillow_heif.as_plugin import HeifImageFile
                pillow_heif.register_heif_opener()
                _heif_state["cls"] = HeifImageFile
            except Exception as exc:  # ImportError, or a broken libheif build
                _heif_state["error"] = f"{type(exc).__name__}: {exc}"
    if "cls" in _heif_state:
        return _heif_state["cls"]
    raise UnusableImage(f"HEIC/HEIF support is not available (pillow-heif could not be loaded: "
                        f"{_heif_state['error']})")


def heif_supported() -> bool:
    try:
        _heif_class()
        return True
    except UnusableImage:
        return False


class _TiffImageFile(TiffImagePlugin.TiffImageFile):
    """Pillow's TIFF class, decoding through libtiff where Pillow's own (uncompressed-only) decoder is
    wrong: YCbCr (it ignores chroma subsampling, so a camera's 4:2:2 strips read as "truncated") and
    tiled files (old writers keep tile offsets in the strip tags, which Pillow then reads as strips).
    Pillow already uses libtiff for every compressed TIFF; its switch for the rest (READ_LIBTIFF) is
    process-global, so the choice is made here, per file, the way Pillow's own libtiff branch does."""

    def _setup(self) -> None:
        tags = self.tag_v2
        try:
            super()._setup()
        except SyntaxError as exc:
            if str(exc) not in ("unknown pixel mode", "unknown data organization",
                                "Invalid value for samples per pixel") or 262 not in tags:
                raise  # no PhotometricInterpretation: a damaged IFD rather than an exotic format
            if not self._float64_gray():
                raise UnusableImage(f"unsupported TIFF pixel format: {describe_tiff_pixels(tags)} "
                                    f"(a valid TIFF, but not one this program can decode)") from None
            return
        if (self.use_load_libtiff or not _HAVE_LIBTIFF or self._planar_configuration != 1
                or not self.tile or not (tags.get(262) == 6 or 322 in tags)):  # YCbCr, TileWidth
            return
        rawmode = self.tile[0].args[0]
        if tags.get(266, 1) == 2:  # libtiff applies FillOrder itself
            rawmode = {"1;IR": "1;I"}.get(rawmode, rawmode[:-2] if rawmode.endswith(";R") else rawmode)
        if tags.get(262) == 6:
            self._mode, rawmode = "RGB", "RGBX"  # libtiff converts YCbCr (any subsampling) to RGBA
        elif rawmode == "I;16":
            rawmode = "I;16N"  # libtiff returns native byte order
        elif rawmode.endswith((";16B", ";16L")):
            rawmode = rawmode[:-1] + "N"
        self._libtiff_tile(rawmode)

    def _libtiff_tile(self, rawmode: str) -> None:
        self.use_load_libtiff = True
        self.tile = [ImageFile._Tile("libtiff", (0, 0, *self._tile_size), 0, (rawmode, False, self.tag_v2.offset))]

    def _float64_gray(self) -> bool:
        """64-bit floating-point grayscale (scientific and HDR exports): Pillow has no mode for it, but
        libtiff decodes it (predictors included) and Pillow can unpack doubles into its 32-bit float F."""
        tags = self.tag_v2
        if not (_HAVE_LIBTIFF and tags.get(262, 1) in (0, 1) and tags.get(277, 1) == 1
                and tuple(tags.get(258, ())) == (64,) and tuple(tags.get(339, ())) in ((3,),)):
            return False
        self._mode = "F"
        self._libtiff_tile("F;64NF")  # libtiff hands out native byte order
        return True


_PHOTOMETRIC = {0: "grayscale (WhiteIsZero)", 1: "grayscale", 2: "RGB", 3: "palette", 4: "transparency mask",
                5: "CMYK", 6: "YCbCr", 8: "CIE L*a*b*", 9: "ICC L*a*b*", 10: "ITU L*a*b*", 32844: "LogL (HDR)",
                32845: "LogLuv (HDR)", 32803: "color filter array (raw sensor data)", 34892: "linear raw"}
_SAMPLE_FORMAT = {1: "", 2: "signed integer ", 3: "floating-point ", 4: "untyped "}


def describe_tiff_pixels(tags: Any) -> str:
    """What a TIFF's pixels are, in words, from its IFD tags (e.g. "64-bit floating-point grayscale",
    "4-bit RGB", "8-bit CMYK + 2 extra channels")."""
    photo = tags.get(262)
    spp = tags.get(277, 1)
    bps = tuple(tags.get(258, (1,)) or (1,))
    fmt = tuple(tags.get(339, (1,)) or (1,))
    extra = tuple(tags.get(338, ()) or ())
    bits = f"{bps[0]}-bit" if len(set(bps)) == 1 else "/".join(map(str, bps)) + "-bit"
    kind = _PHOTOMETRIC.get(photo, f"PhotometricInterpretation {photo}")
    text = f"{bits} {_SAMPLE_FORMAT.get(fmt[0], f'SampleFormat {fmt[0]} ')}{kind}"
    if extra:
        alpha = sum(1 for e in extra if e in (1, 2))
        other = len(extra) - alpha
        parts = (["alpha"] if alpha else []) + ([f"{other} extra channel{'s' * (other > 1)}"] if other else [])
        text += " + " + " + ".join(parts)
    elif photo in (0, 1) and spp > 1 or photo == 2 and spp > 3 or photo == 5 and spp > 4:
        text += f" ({spp} channels)"
    return text


_HAVE_LIBTIFF = features.check_codec("libtiff")

_CLASSES = {
    "JPEG": JpegImagePlugin.JpegImageFile,  # plain JPEG class: for MPO files the first (primary) image
    "PNG": PngImagePlugin.PngImageFile,
    "TIFF": _TiffImageFile,
    "WEBP": WebPImagePlugin.WebPImageFile,
    "BMP": BmpImagePlugin.BmpImageFile,
    "GIF": GifImagePlugin.GifImageFile,
}


# --------------------------------------------------------------------------------------------------
# Sniffing: what the content is
# --------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------
# Byte access: whole file in memory, or a bounded view of an open big file
# --------------------------------------------------------------------------------------------------

class _FileView:
    """The few bytes-like operations the structure checks use, served from an open file (big files)."""

    def __init__(self, f: BinaryIO, size: int):
        self.f, self.size = f, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key):
        if isinstance(key, int):
            if key < 0:
                key += self.size
            if not 0 <= key < self.size:
                raise IndexError(key)
            self.f.seek(key)
            return self.f.read(1)[0]
        start, stop, _ = key.indices(self.size)
        if stop <= start:
            return b""
        self.f.seek(start)
        return self.f.read(stop - start)

    def rfind(self, sub: bytes, start: int = 0) -> int:
        chunk = 1 << 20
        end = self.size
        while end > start:
            lo = max(start, end - chunk)
            block = self[lo:min(self.size, end + len(sub) - 1)]
            i = block.rfind(sub)
            if i >= 0:
                return lo + i
            end = lo
        return -1

    def endswith(self, suffix: bytes) -> bool:
        return self.size >= len(suffix) and self[self.size - len(suffix):] == suffix


Buf = Union[bytes, memoryview, _FileView]


# --------------------------------------------------------------------------------------------------
# Truncation checks (cheap, structural)
# --------------------------------------------------------------------------------------------------

_TRUNCATED = "truncated {name}: the file ends before the image data does"


def _truncated(fmt: str, detail: str = "") -> UnusableImage:
    msg = _TRUNCATED.format(name=FORMAT_NAMES[fmt])
    return UnusableImage(msg + (f" ({detail})" if detail else ""))


def _check_jpeg(data: Buf) -> None:
    """Walk the marker segments to the first scan (SOS); an EOI marker must follow it. 0xFFD9 cannot
    occur inside entropy-coded data (0xFF is stuffed as FF00 there), so any EOI after the scan header
    means the image data is complete; trailers after EOI (MPF images, maker notes) are fine."""
    n = len(data)
    pos = 2
    while True:
        if pos >= n:
            raise _truncated("JPEG", "no image data before the end of the file")
        if data[pos] != 0xFF:
            nxt = data[pos:pos + 65536].find(b"\xff")  # tolerate junk between segments, as decoders do
            if nxt < 0:
                raise UnusableImage("corrupt JPEG: garbage where a marker should be")
            pos += nxt
            continue
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            raise _truncated("JPEG", "no image data before the end of the file")
        marker = data[pos]
        pos += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers (TEM, RSTn, a stray SOI)
            continue
        if marker == 0xD9:
            raise UnusableImage("corrupt JPEG: the file has no image data (end marker before any scan)")
        if pos + 2 > n:
            raise _truncated("JPEG", "no image data before the end of the file")
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2:
            raise UnusableImage("corrupt JPEG: invalid segment length")
        if pos + length > n:
            raise _truncated("JPEG", "no image data before the end of the file")
        pos += length
        if marker == 0xDA:  # SOS: entropy-coded data follows
            break
    if data.endswith(b"\xff\xd9") or data.rfind(b"\xff\xd9", pos) >= 0:
        return
    raise _truncated("JPEG")


# Pillow walks a JPEG header one byte at a time wherever a marker should be (junk, fill bytes, FF00,
# standalone markers) and without a limit, so a JPEG start followed by megabytes of zeros took 0.1-0.3 s
# per MB to reject. Real headers have a few dozen segments and at most a few junk bytes between them.
_JPEG_HEADER_MAX_SEGMENTS = 4096
_JPEG_HEADER_MAX_JUNK = 64 * 1024


def _check_jpeg_header(data: Buf) -> None:
    """Before Pillow parses a JPEG header: bounded walk to the first scan, refusing what would make
    Pillow crawl. Everything else (cut short, bad lengths) is left to Pillow and _check_jpeg."""
    n, pos, junk, segments = len(data), 2, 0, 0
    while pos < n:
        if data[pos] != 0xFF:
            window = data[pos:pos + _JPEG_HEADER_MAX_JUNK - junk + 1]
            nxt = window.find(b"\xff")
            if nxt < 0 and len(window) <= _JPEG_HEADER_MAX_JUNK - junk:
                return  # the file ends inside the junk: cut short, worded by the callers
            if nxt < 0:
                if not window.strip(b"\x00"):
                    raise UnusableImage("corrupt JPEG: zero bytes where a marker should be (the rest of the "
                                        "file was never written?)")
                raise UnusableImage("corrupt JPEG: garbage where a marker should be")
            junk += nxt
            pos += nxt
            continue
        start = pos
        while pos < n and data[pos] == 0xFF and pos - start <= _JPEG_HEADER_MAX_JUNK:
            pos += 1
        junk += pos - start - 1
        segments += 1
        if junk > _JPEG_HEADER_MAX_JUNK or segments > _JPEG_HEADER_MAX_SEGMENTS:
            raise UnusableImage("corrupt JPEG: garbage where a marker should be")
        if pos + 3 > n:
            return
        marker = data[pos]
        pos += 1
        if marker == 0x00 or marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no segment length follows
            junk += 2
            continue
        if marker == 0xD9:
            return
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2:
            return
        pos += length
        if marker == 0xDA:
            return


_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _check_png(data: Buf) -> None:
    if data.endswith(_IEND):
        return
    n, pos = len(data), 8
    while pos + 8 <= n:
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        ctype = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > n:
            break
        if ctype == b"IEND":
            return  # bytes after IEND are ignored, as every viewer does
        pos = end
    raise _truncated("PNG", "no IEND chunk")


# --------------------------------------------------------------------------------------------------
# PNG: chunks, late EXIF, oversized text, and decoding at reduced size in row stripes
# --------------------------------------------------------------------------------------------------

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


# PNG has no reduced decode (no JPEG-style DCT scaling), so a big PNG wanted small (thumbnails, the
# captioner) is decoded in stripes of rows, each reduced as it comes: only the reduced image and one
# stripe are ever held. Smaller PNGs are decoded in full as before (same pixels, no extra work).
STREAM_DECODE_PIXELS = 32_000_000
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
    if w * h < STREAM_DECODE_PIXELS or data[28] != 0 or len(im.tile) != 1:  # interlaced: passes span all rows
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
    inflate = zlib.decompressobj()
    src = png.fp  # the file as Pillow parsed it (a view without text chunks, when it needed one)
    src.seek(png.tile[0].offset - 8)  # the first IDAT chunk
    remaining = 0  # compressed bytes left in the current IDAT chunk
    prev = bytes(rowbytes)
    y = 0
    while y < h:
        k = min(k_max, h - y)
        need = k * (rowbytes + 1)
        parts = [b"\x00", prev]
        got = 0
        while got < need:
            if inflate.unconsumed_tail:
                piece = inflate.unconsumed_tail
            else:
                while remaining == 0:
                    header = src.read(8)
                    if len(header) < 8 or header[4:] != b"IDAT":
                        raise _truncated("PNG", "the image data ends early")
                    remaining = struct.unpack(">I", header[:4])[0]
                    if remaining == 0:
                        src.read(4)
                take = min(remaining, 1 << 20)
                piece = src.read(take)
                if len(piece) < take:
                    raise _truncated("PNG")
                remaining -= take
                if remaining == 0:
                    src.read(4)  # CRC
            try:
                part = inflate.decompress(piece, need - got)
            except zlib.error as exc:
                raise UnusableImage(f"corrupt PNG file: {exc}") from exc
            parts.append(part)
            got += len(part)
            if inflate.eof and got < need:
                raise _truncated("PNG", "the image data ends early")
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


def _check_webp(data: Buf) -> None:
    riff_size = struct.unpack("<I", data[4:8])[0]
    if len(data) < 8 + riff_size:
        raise _truncated("WEBP")


def _check_heif(data: Buf) -> None:
    """ISO-BMFF: every top-level box (ftyp, meta, mdat, ...) must fit inside the file."""
    n, pos = len(data), 0
    while pos + 8 <= n:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if size == 1:
            if pos + 16 > n:
                raise _truncated("HEIF")
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
        elif size == 0:  # box runs to the end of the file
            return
        if size < 8:
            raise UnusableImage(f"corrupt HEIC/HEIF: invalid box size for {kind!r}")
        if pos + size > n:
            raise _truncated("HEIF", f"the {kind.decode('latin-1')} box is cut short")
        pos += size


def _check_tiff(im: Image.Image, data: Buf) -> None:
    tags = getattr(im, "tag_v2", None)
    codec = _unsupported_tiff_codec(im)
    if codec:  # an optional codec: decode now, so a libtiff without it is found at import, not at caption time
        try:
            _load_fully(im, "TIFF")
        except UnusableImage as exc:
            if exc.reason.startswith("corrupt"):
                raise _unsupported_codec(codec) from exc
            raise
        return
    offsets = counts = None
    if tags is not None:
        offsets, counts = tags.get(273), tags.get(279)  # StripOffsets, StripByteCounts
        if offsets is None:
            offsets, counts = tags.get(324), tags.get(325)  # TileOffsets, TileByteCounts
    if offsets is None or counts is None:
        _load_fully(im, "TIFF")
        return
    if isinstance(offsets, int):
        offsets = (offsets,)
    if isinstance(counts, int):
        counts = (counts,)
    end = max((o + c for o, c in zip(offsets, counts)), default=0)
    if end > len(data):
        raise _truncated("TIFF")


def _load_fully(im: Image.Image, fmt: str) -> None:
    try:
        im.load()
    except Image.DecompressionBombError as exc:
        raise _bomb(*im.size) from exc
    except (OSError, EOFError, ValueError, SyntaxError, struct.error, IndexError) as exc:
        if "truncated" in str(exc) or isinstance(exc, EOFError):
            raise _truncated(fmt) from exc
        raise UnusableImage(f"corrupt {FORMAT_NAMES[fmt]}: {exc}") from exc


# Formats whose completeness can be checked from the container structure alone (no decoding).
_CONTAINER_CHECKS = {"JPEG": _check_jpeg, "PNG": _check_png, "WEBP": _check_webp, "HEIF": _check_heif}


def _looks_truncated_header(fmt: str, data: Buf) -> bool:
    """After Pillow failed to parse the header: was it because the file is cut short?"""
    try:
        if fmt in _CONTAINER_CHECKS:
            _CONTAINER_CHECKS[fmt](data)
        elif fmt == "TIFF" and data[:4] in (b"II*\x00", b"MM\x00*"):  # classic TIFF: the first IFD fits?
            end = "<" if data[:2] == b"II" else ">"
            ifd = struct.unpack(end + "I", data[4:8])[0]
            if ifd + 2 > len(data):
                return True
            count = struct.unpack(end + "H", data[ifd:ifd + 2])[0]
            return ifd + 2 + 12 * count + 4 > len(data)
        else:
            return len(data) < 64
    except UnusableImage as exc:
        return str(exc).startswith("truncated")
    return False


# --------------------------------------------------------------------------------------------------
# Opening (header only) with our own bomb check
# --------------------------------------------------------------------------------------------------

def _bomb(w: int, h: int) -> UnusableImage:
    return UnusableImage(
        f"image is {w}\u00d7{h} = {round(w * h / 1e6)} megapixels, over the {MAX_PIXELS // 1_000_000} "
        f"megapixel safety limit (decompression bomb?)")


def _check_pixels(w: int, h: int) -> None:
    if w <= 0 or h <= 0:
        raise UnusableImage(f"corrupt image: it claims to be {w}\u00d7{h} pixels")
    if w * h > MAX_PIXELS:
        raise _bomb(w, h)


def _webp_header_size(head: bytes) -> tuple[int, int] | None:
    """Canvas size from the first 30 bytes of a WebP, so a bomb is refused before libwebp allocates it."""
    kind = head[12:16]
    try:
        if kind == b"VP8X":
            return (int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1)
        if kind == b"VP8L" and head[20] == 0x2F:
            bits = int.from_bytes(head[21:25], "little")
            return ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        if kind == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
            w, h = struct.unpack("<HH", head[26:30])
            return (w & 0x3FFF, h & 0x3FFF)
    except (IndexError, struct.error):
        return None
    return None


def _open_header(fmt: str, fp: BinaryIO, head: bytes, data: Buf, filename: str | bytes = "") -> Image.Image:
    """Construct Pillow's image object (parses the header, decodes nothing) and check its pixel count."""
    if fmt == "WEBP":
        if not getattr(WebPImagePlugin, "SUPPORTED", True):
            raise UnusableImage("unsupported format: this Pillow build has no WebP support")
        size = _webp_header_size(head)
        if size:
            _check_pixels(*size)
    if fmt == "JPEG":
        _check_jpeg_header(data)
    cls = _heif_class() if fmt == "HEIF" else _CLASSES[fmt]
    fp.seek(0)
    try:
        im = cls(fp, filename)
    except Image.DecompressionBombError as exc:
        m = re.search(r"\((\d+) pixels\)", str(exc))
        raise UnusableImage(f"image is {round(int(m.group(1)) / 1e6) if m else '?'} megapixels, over the "
                            f"safety limit (decompression bomb?)") from exc
    except MemoryError as exc:
        raise UnusableImage("not enough memory to open this image") from exc
    except ValueError as exc:
        if not (fmt == "PNG" and _is_png_text_limit(exc)):
            if _looks_truncated_header(fmt, data):
                raise _truncated(fmt) from exc
            raise UnusableImage(f"corrupt {FORMAT_NAMES[fmt]} file: {exc or type(exc).__name__}") from exc
        try:
            im = _open_png_without_text(fp, data, filename)
        except Exception as exc2:
            if _looks_truncated_header(fmt, data):
                raise _truncated(fmt) from exc2
            raise UnusableImage(f"corrupt PNG file: {exc2 or type(exc2).__name__}") from exc2
    except UnusableImage as exc:
        if _looks_truncated_header(fmt, data):
            raise _truncated(fmt) from exc
        raise
    except Exception as exc:  # Pillow raises SyntaxError/OSError/struct.error/... for bad headers
        if _looks_truncated_header(fmt, data):
            raise _truncated(fmt) from exc
        raise UnusableImage(f"corrupt {FORMAT_NAMES[fmt]} file: {exc or type(exc).__name__}") from exc
    _check_pixels(*im.size)
    return im


# --------------------------------------------------------------------------------------------------
# EXIF: orientation and date taken
# --------------------------------------------------------------------------------------------------

_EXIF_DATE = re.compile(r"^\s*(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_EXIF_OFFSET = re.compile(r"^[+-]\d{2}:\d{2}$")


def _exif_date(value: Any, offset: Any = None) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str):
        return None
    m = _EXIF_DATE.match(value.strip("\x00"))
    if not m:
        return None
    y, mo, d, hh, mi, ss = (int(g) for g in m.groups())
    if y < 1800 or not (1 <= mo <= 12 and 1 <= d <= 31 and hh <= 23 and mi <= 59 and ss <= 60):
        return None  # "0000:00:00 00:00:00" and friends: cameras write that when the clock was unset
    iso = f"{y:04d}-{mo:02d}-{d:02d}T{hh:02d}:{mi:02d}:{min(ss, 59):02d}"
    if isinstance(offset, bytes):
        offset = offset.decode("ascii", errors="replace")
    if isinstance(offset, str) and _EXIF_OFFSET.match(offset.strip("\x00").strip()):
        iso += offset.strip("\x00").strip()
    return iso


def _exif_facts(im: Image.Image, fmt: str, data: Buf | None = None) -> tuple[int, str | None]:
    """(orientation, date_taken); a broken EXIF block never makes a photo unusable."""
    orientation, date = 1, None
    try:
        if fmt == "PNG" and data is not None:
            if "exif" not in im.info and (late := _png_late_exif(data)):
                im.info["exif"] = late
            exif = Image.Image.getexif(im)  # PngImageFile.getexif would decode every pixel first
        else:
            exif = im.getexif()
        if fmt == "HEIF":
            orientation = im.info.get("original_orientation") or 1
        else:
            orientation = exif.get(0x0112, 1)
        try:
            sub = exif.get_ifd(0x8769)
        except Exception:
            sub = {}
        date = _exif_date(sub.get(0x9003), sub.get(0x9011)) or _exif_date(exif.get(0x0132), sub.get(0x9010))
    except Exception:
        pass
    if isinstance(orientation, (tuple, list)):
        orientation = orientation[0] if orientation else 1
    if not isinstance(orientation, int) or not 1 <= orientation <= 8:
        orientation = 1
    return orientation, date


# --------------------------------------------------------------------------------------------------
# Public: inspect, probe, open
# --------------------------------------------------------------------------------------------------

def _os_error(exc: OSError) -> UnusableImage:
    if isinstance(exc, PermissionError):
        return UnusableImage("permission denied")
    if isinstance(exc, IsADirectoryError):
        return UnusableImage("not a regular file (a folder)")
    if isinstance(exc, FileNotFoundError):
        return UnusableImage("cannot read file: it no longer exists")
    return UnusableImage(f"cannot read file: {exc.strerror or exc}")


def _open_readonly(path: str | bytes | os.PathLike) -> tuple[BinaryIO, os.stat_result]:
    """Open read-only without blocking on FIFOs/devices; only regular files are accepted."""
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if os.path.islink(path) and not os.path.exists(path):
            raise UnusableImage("broken symbolic link") from exc
        raise _os_error(exc) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a device, pipe or socket"
            raise UnusableImage(f"not a regular file ({kind})")
        return os.fdopen(fd, "rb", buffering=0), st
    except BaseException:
        os.close(fd)
        raise


def _inspect(fmt: str | None, head: bytes, data: Buf, fp: BinaryIO, filename: str | bytes) -> ImageInfo:
    if len(data) == 0:
        raise UnusableImage("empty file (0 bytes)")
    if fmt is None:
        raise UnusableImage(_describe_other(head))
    im = _open_header(fmt, fp, head, data, filename)
    try:
        if fmt == "JPEG":
            # Pillow found the scan header, so a file ending in EOI is complete (0xFFD9 cannot occur in
            # entropy-coded data); only files with trailers after EOI need the segment walk.
            if not data.endswith(b"\xff\xd9"):
                _check_jpeg(data)
        elif fmt in _CONTAINER_CHECKS:
            _CONTAINER_CHECKS[fmt](data)
        elif fmt == "TIFF":
            _check_tiff(im, data)
        else:  # BMP, GIF: rare and cheap to decode
            _load_fully(im, fmt)
        orientation, date = _exif_facts(im, fmt, data)
        w, h = im.size
        if orientation >= 5 and fmt != "HEIF":
            w, h = h, w
        return ImageInfo(format=fmt, width=w, height=h, orientation=orientation, date_taken=date, mode=im.mode)
    finally:
        im.close()


def is_raw_name(path: str | bytes | os.PathLike) -> bool:
    """A camera RAW file by its extension (the content of many RAWs is TIFF, so content cannot decide)."""
    name = os.fsdecode(os.fspath(path))
    return os.path.splitext(name)[1].lower() in RAW_EXTENSIONS


def _raw_info(data: bytes) -> tuple[ImageInfo, "RawFacts"]:
    from . import raw
    try:
        facts = raw.raw_facts(data, MAX_PIXELS)
    except raw.NoPreview as exc:
        raise UnusableImage(str(exc)) from exc
    w, h = (facts.height, facts.width) if facts.orientation >= 5 else (facts.width, facts.height)
    info = ImageInfo(format="RAW", width=w, height=h, orientation=facts.orientation,
                     date_taken=_exif_date(facts.date_taken, facts.date_offset), mode="RGB")
    return info, facts


def _read_small(path: str | bytes | os.PathLike) -> tuple[bytes, os.stat_result]:
    """The whole file (RAWs are parsed in memory: previews sit anywhere in them)."""
    f, st = _open_readonly(path)
    with f:
        if st.st_size > MAX_READ_BYTES:
            raise UnusableImage(f"camera RAW of {st.st_size / 1024 ** 2:.0f} MB is larger than the "
                                f"{MAX_READ_BYTES // 1024 ** 2} MB we read for a preview")
        try:
            data = f.read()
        except OSError as exc:
            raise _os_error(exc) from exc
        except MemoryError as exc:
            raise UnusableImage("not enough memory to read this file") from exc
    if len(data) != st.st_size:
        raise UnusableImage("file changed while it was being read (still being copied?)")
    if not data:
        raise UnusableImage("empty file (0 bytes)")
    return data, st


def inspect_image(path: str | bytes | os.PathLike, data: bytes | None = None) -> ImageInfo:
    """What the image is, cheaply: format (from content), displayed size, orientation, date taken.

    With `data` (the whole file, already read) nothing is read from disk. Raises UnusableImage with a
    user-facing reason for anything we would not import."""
    filename = os.fspath(path)
    if is_raw_name(filename):
        if data is None:
            data, _ = _read_small(path)
        if not data:
            raise UnusableImage("empty file (0 bytes)")
        return _raw_info(bytes(data))[0]
    if data is not None:
        head = bytes(data[:32])
        return _inspect(sniff_format(head), head, data, io.BytesIO(data), filename)
    f, st = _open_readonly(path)
    with f:
        if st.st_size > MAX_FILE_BYTES:
            raise _too_big(st.st_size)
        try:
            if st.st_size <= MAX_READ_BYTES:
                data = f.read()
                head = data[:32]
                return _inspect(sniff_format(head), head, data, io.BytesIO(data), filename)
            fb = io.BufferedReader(f, 1 << 16)  # Pillow parses headers with many tiny reads
            head = fb.read(32)
            return _inspect(sniff_format(head), head, _FileView(fb, st.st_size), fb, filename)
        except OSError as exc:
            raise _os_error(exc) from exc


def _too_big(size: int) -> UnusableImage:
    return UnusableImage(f"file is {size / 1024 ** 3:.1f} GiB, larger than any photo we import "
                         f"(limit {MAX_FILE_BYTES // 1024 ** 3} GiB)")


def probe_file(path: str | bytes | os.PathLike) -> ProbedFile:
    """Read the file once: sha256 of its bytes, and `inspect_image` of the same bytes.

    Files up to MAX_READ_BYTES are read into memory once; bigger ones are hashed in a streaming pass and
    probed through the open file. The file is opened read-only and never written."""
    if is_raw_name(path):
        data, st = _read_small(path)
        info = _raw_info(data)[0]
        return ProbedFile(size=st.st_size, mtime_ns=st.st_mtime_ns,
                          content_hash=hashlib.sha256(data).hexdigest(), info=info)
    f, st = _open_readonly(path)
    with f:
        size = st.st_size
        if size > MAX_FILE_BYTES:
            raise _too_big(size)
        try:
            if size <= MAX_READ_BYTES:
                data = f.read()
                if len(data) != size:
                    raise UnusableImage("file changed while it was being read (still being copied?)")
                digest = hashlib.sha256(data).hexdigest()
                head = data[:32]
                info = _inspect(sniff_format(head), head, data, io.BytesIO(data), os.fspath(path))
            else:
                h = hashlib.sha256()
                read = 0
                while chunk := f.read(8 << 20):
                    h.update(chunk)
                    read += len(chunk)
                if read != size:
                    raise UnusableImage("file changed while it was being read (still being copied?)")
                digest = h.hexdigest()
                f.seek(0)
                fb = io.BufferedReader(f, 1 << 16)  # Pillow parses headers with many tiny reads
                head = fb.read(32)
                info = _inspect(sniff_format(head), head, _FileView(fb, size), fb, os.fspath(path))
        except OSError as exc:
            raise _os_error(exc) from exc
        except MemoryError as exc:
            raise UnusableImage("not enough memory to read this file") from exc
    return ProbedFile(size=size, mtime_ns=st.st_mtime_ns, content_hash=digest, info=info)


def sha256_file(path: str | bytes | os.PathLike) -> str:
    """Content hash as the library stores it (streaming; for callers that need no probe)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# Decoding for display / the model
# --------------------------------------------------------------------------------------------------

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    w, h = size
    scale = max_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _alpha_matters(im: Image.Image) -> bool:
    return im.getchannel("A").getextrema()[0] < 255


def _deep_to_l(im: Image.Image, fmt: str) -> Image.Image:
    """16-bit / 32-bit integer or float grayscale -> 8-bit L, scaled (not clipped to white)."""
    if im.mode == "F":
        lo, hi = im.getextrema()
        scale = 255.0 if (lo >= 0 and hi <= 1.0) else (255.0 / hi if hi > 0 else 1.0)
        return im.point(lambda v: v * scale).convert("L")
    bits = 16
    if im.mode == "I":
        tiff_bits = None
        if fmt == "TIFF":
            b = getattr(im, "tag_v2", {}).get(258)
            tiff_bits = b[0] if isinstance(b, tuple) and b else b
        if isinstance(tiff_bits, int) and 8 < tiff_bits <= 16:
            bits = tiff_bits
        elif fmt != "PNG":
            hi = im.getextrema()[1]
            bits = max(8, int(hi).bit_length()) if hi > 255 else 8
    if im.mode != "I":
        im = im.convert("I")
    scale = 1.0 / (1 << (bits - 8))
    return im.point(lambda v: v * scale).convert("L")


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    """Use the embedded ICC profile when there is one (print CMYK JPEGs nearly always carry one);
    otherwise Pillow's plain formula."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            out = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB",
                                            renderingIntent=ImageCms.Intent.PERCEPTUAL)
            if out is not None:
                return out
        except Exception:
            pass
    return im.convert("RGB")


def to_rgb_or_rgba(im: Image.Image, fmt: str | None = None) -> Image.Image:
    """Any Pillow mode -> RGB, or RGBA when the alpha channel actually has transparent pixels."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "CMYK":
        return _cmyk_to_rgb(im)
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _deep_to_l(im, fmt or "").convert("RGB")
    if mode == "P":
        has_alpha = "transparency" in im.info or im.palette is not None and im.palette.mode == "RGBA"
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode in ("RGBA", "LA", "La", "PA", "RGBa"):
        if mode == "La":  # premultiplied grey + alpha (TIFF "associated alpha"): Pillow converts it only to LA
            im = im.convert("LA")
        im = im.convert("RGBA") if im.mode != "RGBA" else im
    elif mode == "LAB":
        try:
            from PIL import ImageCms
            return ImageCms.profileToProfile(im, ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"),
                                             outputMode="RGB")
        except Exception as exc:
            raise UnusableImage(f"unsupported pixel format {mode}") from exc
    else:
        try:
            return im.convert("RGB")
        except (ValueError, OSError) as exc:
            raise UnusableImage(f"unsupported pixel format {mode}") from exc
    if im.mode == "RGBA" and not _alpha_matters(im):
        im = im.convert("RGB")
    return im


def open_oriented(path: str | bytes | os.PathLike, max_side: int | None = None, *,
                  keep_pixels: int | None = None) -> Image.Image:
    """Decode a photo as displayed: EXIF orientation applied, RGB (RGBA when transparency matters),
    at most `max_side` pixels on its longer side when given (JPEG and HEIF then decode at reduced size,
    via JPEG DCT scaling / HEIF's embedded thumbnails; PNGs of STREAM_DECODE_PIXELS or more are decoded
    in reduced row stripes). The file is closed when this returns.

    `keep_pixels` is for callers that resize the image themselves (the captioner): a JPEG or PNG of
    STREAM_DECODE_PIXELS or more may then come back smaller than stored, but with at least that many
    pixels; smaller photos decode in full, so their pixels stay exactly those of a full decode.

    Raises UnusableImage for anything unreadable, truncated or over MAX_PIXELS."""
    if max_side is not None and max_side < 1:
        raise ValueError("max_side must be a positive number of pixels")
    if keep_pixels is not None and keep_pixels < 1:
        raise ValueError("keep_pixels must be a positive number of pixels")
    if is_raw_name(path):
        return _open_raw(path, max_side)
    f, st = _open_readonly(path)
    with f:
        if st.st_size == 0:
            raise UnusableImage("empty file (0 bytes)")
        try:
            fb = io.BufferedReader(f, 1 << 16)  # Pillow parses headers with many tiny reads
            head = fb.read(32)
            fmt = sniff_format(head)
            if fmt is None:
                raise UnusableImage(_describe_other(head))
            view = _FileView(fb, st.st_size)
            im = _open_header(fmt, fb, head, view, os.fspath(path))
            try:
                orientation, _ = _exif_facts(im, fmt, view)
                if fmt == "HEIF":
                    orientation = 1  # libheif already applied it
                if max_side and max(im.size) > max_side:
                    im.draft(None, _fit(im.size, max_side))
                elif keep_pixels and fmt == "JPEG" and im.size[0] * im.size[1] >= STREAM_DECODE_PIXELS:
                    scale = math.sqrt(keep_pixels / (im.size[0] * im.size[1]))
                    if scale < 0.5:
                        im.draft(None, (math.ceil(im.size[0] * scale), math.ceil(im.size[1] * scale)))
                factor = _png_stream_factor(im, view, max_side, keep_pixels) if fmt == "PNG" else 0
                for attempt in (1, 2):
                    try:
                        if factor:
                            reduced = _png_stream_reduced(im, view, factor)
                            im.close()
                            im = reduced
                        else:
                            im.load()
                        break
                    except Image.DecompressionBombError as exc:
                        raise _bomb(*im.size) from exc
                    except MemoryError as exc:
                        raise UnusableImage("not enough memory to decode this image") from exc
                    except (OSError, EOFError, ValueError, SyntaxError, struct.error, IndexError) as exc:
                        if attempt == 1 and fmt == "PNG" and _is_png_text_limit(exc):
                            # oversized text after the pixels (load() reads it last): again without text
                            im.fp = im._fp = None  # frees the pixels but keeps our file open
                            im.close()
                            im = _open_png_without_text(fb, view, os.fspath(path))
                            continue
                        if "truncated" in str(exc) or isinstance(exc, EOFError) or _looks_truncated_header(fmt, view):
                            raise _truncated(fmt) from exc
                        codec = _unsupported_tiff_codec(im) if fmt == "TIFF" else None
                        if codec:
                            raise _unsupported_codec(codec) from exc
                        raise UnusableImage(f"corrupt {FORMAT_NAMES[fmt]} file: {exc}") from exc
                try:
                    out = to_rgb_or_rgba(im, fmt)
                except ValueError as exc:  # a mode Pillow decodes but cannot convert
                    raise UnusableImage(f"unsupported pixel format {im.mode}") from exc
            except BaseException:
                im.close()
                raise
        except OSError as exc:
            raise _os_error(exc) from exc
    if out is not im:
        im.close()  # frees the decoded full-size pixels now, not at garbage collection
    return _displayed(out, max_side, orientation)


# Compressions that libtiff builds often leave out (optional codecs); decoding them then fails with
# a bare "decoder error", which is no reason to call the file corrupt.
_OPTIONAL_TIFF_CODECS = {34925: "LZMA", 50000: "Zstandard", 50001: "WebP", 34712: "JPEG 2000",
                         34887: "LERC", 52546: "JPEG XL", 34892: "lossy JPEG (DNG)"}


def _unsupported_tiff_codec(im: Image.Image) -> str | None:
    tags = getattr(im, "tag_v2", None)
    return _OPTIONAL_TIFF_CODECS.get(tags.get(259)) if tags is not None else None


def _unsupported_codec(codec: str) -> UnusableImage:
    return UnusableImage(f"unsupported TIFF compression: {codec} (a valid TIFF, but the installed libtiff "
                         f"cannot decode it)")


def _displayed(out: Image.Image, max_side: int | None, orientation: int) -> Image.Image:
    """Decoded pixels -> as displayed: at most `max_side` on the longer side, EXIF orientation applied."""
    if max_side and max(out.size) > max_side:
        out = out.resize(_fit(out.size, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    method = _TRANSPOSE.get(orientation)
    if method is not None:
        out = out.transpose(method)
    return out


def _open_raw(path: str | bytes | os.PathLike, max_side: int | None) -> Image.Image:
    """A RAW photo as displayed: its embedded preview with the RAW's orientation applied."""
    from . import raw
    data, _ = _read_small(path)
    info, facts = _raw_info(data)
    im = raw.open_preview(data, facts)
    try:
        if max_side and max(im.size) > max_side:
            im.draft(None, _fit(im.size, max_side))
        try:
            im.load()
        except MemoryError as exc:
            raise UnusableImage("not enough memory to decode this image") from exc
        except (OSError, EOFError, ValueError, SyntaxError, struct.error, IndexError) as exc:
            raise UnusableImage(f"corrupt preview in camera RAW file: {exc}") from exc
        out = to_rgb_or_rgba(im, "JPEG")
    except BaseException:
        im.close()
        raise
    if out is not im:
        im.close()
    return _displayed(out, max_side, info.orientation)

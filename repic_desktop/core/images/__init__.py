"""Safe image probing and decoding, shared by the scanner, concept references, thumbnails and the engine.

This package is the public face: import from `repic_desktop.core.images`. Its modules, in the order
they build on each other: `formats` (extensions, sniffing the content), `limits` (pixel and file-size
limits, UnusableImage and its reasons), `files` (safe reads, a bounded view of a big open file),
`plugins` (the Pillow classes we construct: TIFF via libtiff, HEIF lazily), `structure` (cheap
truncation checks), `png` (chunk walk, late EXIF, text-chunk limits), `pixels` (any mode to RGB/RGBA),
`png_stripes` (reduced decoding of big PNGs), `header` (opening a header with our bomb check), `exif`
(orientation, date taken), `probe` (inspect_image, probe_file), `decode` (open_oriented).
Names with a leading underscore are shared between these modules, never used outside the package.

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

from .decode import open_oriented
from .formats import FORMAT_NAMES, RAW_EXTENSIONS, SUPPORTED_EXTENSIONS, is_raw_name, sniff_format
from .limits import (
    MAX_FILE_BYTES,
    MAX_PIXELS,
    MAX_READ_BYTES,
    STREAM_DECODE_PIXELS,
    TRANSIENT_REASON_PREFIXES,
    UnusableImage,
    is_transient_reason,
)
from .pixels import to_rgb_or_rgba
from .plugins import describe_tiff_pixels, heif_supported
from .probe import ImageInfo, ProbedFile, inspect_image, probe_file, sha256_file


__all__ = [
    "FORMAT_NAMES", "MAX_FILE_BYTES", "MAX_PIXELS", "MAX_READ_BYTES", "RAW_EXTENSIONS", "STREAM_DECODE_PIXELS",
    "SUPPORTED_EXTENSIONS", "TRANSIENT_REASON_PREFIXES", "ImageInfo", "ProbedFile", "UnusableImage",
    "describe_tiff_pixels", "heif_supported", "inspect_image", "is_raw_name", "is_transient_reason",
    "open_oriented", "probe_file", "sha256_file", "sniff_format", "to_rgb_or_rgba",
]

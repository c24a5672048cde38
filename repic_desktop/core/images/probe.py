"""Probing: what an image is (format from content, displayed size, orientation, date taken), cheaply,
and the one read of a file the import does (hash and probe from the same bytes)."""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from . import limits
from .exif import _exif_date, _exif_facts
from .files import Buf, _FileView, _open_readonly, _read_small
from .formats import _describe_other, is_raw_name, sniff_format
from .header import _open_header
from .limits import UnusableImage, _os_error, _too_big
from .structure import _CONTAINER_CHECKS, _check_jpeg, _check_tiff, _load_fully

if TYPE_CHECKING:
    from ..raw import RawFacts


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


def _raw_info(data: bytes) -> tuple[ImageInfo, "RawFacts"]:
    from .. import raw
    try:
        facts = raw.raw_facts(data, limits.MAX_PIXELS)
    except raw.NoPreview as exc:
        raise UnusableImage(str(exc)) from exc
    w, h = (facts.height, facts.width) if facts.orientation >= 5 else (facts.width, facts.height)
    info = ImageInfo(format="RAW", width=w, height=h, orientation=facts.orientation,
                     date_taken=_exif_date(facts.date_taken, facts.date_offset), mode="RGB")
    return info, facts


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
        if st.st_size > limits.MAX_FILE_BYTES:
            raise _too_big(st.st_size)
        try:
            if st.st_size <= limits.MAX_READ_BYTES:
                data = f.read()
                head = data[:32]
                return _inspect(sniff_format(head), head, data, io.BytesIO(data), filename)
            fb = io.BufferedReader(f, 1 << 16)  # Pillow parses headers with many tiny reads
            head = fb.read(32)
            return _inspect(sniff_format(head), head, _FileView(fb, st.st_size), fb, filename)
        except OSError as exc:
            raise _os_error(exc) from exc


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
        if size > limits.MAX_FILE_BYTES:
            raise _too_big(size)
        try:
            if size <= limits.MAX_READ_BYTES:
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

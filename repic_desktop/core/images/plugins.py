"""The Pillow image classes we construct ourselves (what `Image.open` does, minus its global pixel
limit): TIFF decoding through libtiff where Pillow's own decoder is wrong, HEIF registered lazily and
once, and the optional TIFF codecs a libtiff build may lack."""
from __future__ import annotations

import threading
from typing import Any

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
from .limits import UnusableImage


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

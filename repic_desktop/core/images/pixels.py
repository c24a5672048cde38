"""Any Pillow mode to RGB, or RGBA when transparency matters: deep grayscale scaled, CMYK through its
ICC profile."""
from __future__ import annotations

import io

from PIL import (
    Image,
)
from .limits import UnusableImage


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

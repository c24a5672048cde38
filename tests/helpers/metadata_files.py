"""Shared helpers for the metadata tests (images with EXIF dates/GPS, pixel hashes, backend skips,
digiKam/Lightroom-style XMP packets); tests/test_metadata_helpers.py checks them."""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from repic_desktop.metadata.exiftool_edit import exiftool_available
from repic_desktop.metadata.pyexiv2_edit import pyexiv2_available

HAVE_EXIFTOOL = exiftool_available()
HAVE_PYEXIV2 = pyexiv2_available()
needs_exiftool = pytest.mark.skipif(
    not HAVE_EXIFTOOL, reason="exiftool is not installed (Debian: apt-get install libimage-exiftool-perl): "
                              "the second backend and the cross-read with it are not tested here")
needs_pyexiv2 = pytest.mark.skipif(not HAVE_PYEXIV2, reason="pyexiv2 is not installed (pip install pyexiv2)")

FORMATS = {"jpg": "JPEG", "png": "PNG", "tif": "TIFF", "webp": "WEBP", "heic": "HEIF"}
DATE = "2021:07:04 12:34:56"


@contextmanager
def shared(backend: str = "auto"):
    """The process-wide session of a backend (one exiftool process for the whole test run)."""
    from repic_desktop.metadata.writer import default_backends
    yield default_backends(backend)


def backend_params():
    return [pytest.param("pyexiv2", marks=needs_pyexiv2), pytest.param("exiftool", marks=needs_exiftool)]


def other(backend: str) -> str:
    return "exiftool" if backend == "pyexiv2" else "pyexiv2"


def _exif(orientation: int = 1) -> bytes:
    ex = Image.Exif()
    ex[0x0112] = orientation
    ex[0x010F] = "TestMake"
    sub = ex.get_ifd(0x8769)
    sub[0x9003] = DATE
    gps = ex.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (52.0, 31.0, 12.0)
    gps[3] = "E"
    gps[4] = (13.0, 24.0, 36.0)
    return ex.tobytes()


def make_image(path: Path | str, size=(96, 64), *, orientation: int = 1, seed: int = 0, square=None) -> Path:
    """A noisy image (so lossy codecs have work to do) with EXIF Make, Orientation, DateTimeOriginal and GPS.
    `square` = (x, y, w, h) in STORED pixels painted pure red."""
    path = Path(path)
    w, h = size
    arr = np.random.default_rng(seed).integers(0, 200, (h, w, 3)).astype("uint8")
    arr[..., 0] //= 3
    if square:
        x, y, sw, sh = square
        arr[y:y + sh, x:x + sw] = (255, 0, 0)
    fmt = FORMATS[path.suffix.lower().lstrip(".")]
    kw = {"quality": 92} if fmt in ("JPEG", "WEBP", "HEIF") else {}
    if fmt == "HEIF":
        import pillow_heif
        pillow_heif.register_heif_opener()
    Image.fromarray(arr).save(path, fmt, exif=_exif(orientation), **kw)
    return path


def pixel_hash(path) -> str:
    if str(path).lower().endswith((".heic", ".heif")):
        import pillow_heif
        pillow_heif.register_heif_opener()
    with Image.open(path) as im:
        im.load()
        return hashlib.sha256(im.tobytes() + im.mode.encode() + repr(im.size).encode()).hexdigest()


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def exif_facts(path) -> tuple:
    """(DateTimeOriginal, Make, has GPS) as Pillow sees them."""
    if str(path).lower().endswith((".heic", ".heif")):
        import pillow_heif
        pillow_heif.register_heif_opener()
    with Image.open(path) as im:
        ex = im.getexif()
        return ex.get_ifd(0x8769).get(0x9003), ex.get(0x010F), bool(ex.get_ifd(0x8825))


def read_with(backend: str, path) -> dict:
    """Canonical values as one backend reads them (a fresh session: nothing cached)."""
    from repic_desktop.metadata.safety import check_file
    from repic_desktop.metadata.sidecars import read_embedded, read_sidecar

    with shared(backend) as b:
        if str(path).endswith(".xmp"):
            return read_sidecar(str(path), b)
        return read_embedded(check_file(str(path)), b)


# A digiKam 8 style packet: TagsList (Seq), hierarchical + flat keywords, MWG and MP regions for two
# people (one "Anya Smith", one "Ben"), an unnamed face, a place tag and a caption - written raw, so the
# test does not depend on our own writer.
DIGIKAM_XMP = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:digiKam="http://www.digikam.org/ns/1.0/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:MicrosoftPhoto="http://ns.microsoft.com/photo/1.0/"
    xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"
    xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#"
    xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#"
    xmlns:MP="http://ns.microsoft.com/photo/1.2/"
    xmlns:MPRI="http://ns.microsoft.com/photo/1.2/t/RegionInfo#"
    xmlns:MPReg="http://ns.microsoft.com/photo/1.2/t/Region#"
   xmp:CreatorTool="digiKam-8.2.0"
   xmp:Rating="3"
   MicrosoftPhoto:LastKeywordXMP="People/Anya Smith">
   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">Picnic by the lake</rdf:li></rdf:Alt></dc:description>
   <dc:subject><rdf:Bag><rdf:li>Anya Smith</rdf:li><rdf:li>Ben</rdf:li><rdf:li>Lake</rdf:li></rdf:Bag></dc:subject>
   <digiKam:TagsList><rdf:Seq><rdf:li>People/Anya Smith</rdf:li><rdf:li>People/Ben</rdf:li><rdf:li>People/Unknown</rdf:li><rdf:li>Places/Lake</rdf:li><rdf:li>Pets/Fido</rdf:li></rdf:Seq></digiKam:TagsList>
   <lr:hierarchicalSubject><rdf:Bag><rdf:li>People|Anya Smith</rdf:li><rdf:li>People|Ben</rdf:li><rdf:li>Places|Lake</rdf:li><rdf:li>Pets|Fido</rdf:li></rdf:Bag></lr:hierarchicalSubject>
   <mwg-rs:Regions rdf:parseType="Resource">
    <mwg-rs:AppliedToDimensions stDim:w="{W}" stDim:h="{H}" stDim:unit="pixel"/>
    <mwg-rs:RegionList><rdf:Bag>
      <rdf:li><rdf:Description mwg-rs:Name="Anya Smith" mwg-rs:Type="Face"><mwg-rs:Area stArea:x="0.25" stArea:y="0.25" stArea:w="0.2" stArea:h="0.3" stArea:unit="normalized"/></rdf:Description></rdf:li>
      <rdf:li><rdf:Description mwg-rs:Name="Ben" mwg-rs:Type="Face"><mwg-rs:Area stArea:x="0.7" stArea:y="0.5" stArea:w="0.2" stArea:h="0.3" stArea:unit="normalized"/></rdf:Description></rdf:li>
      <rdf:li><rdf:Description mwg-rs:Type="Face"><mwg-rs:Area stArea:x="0.5" stArea:y="0.8" stArea:w="0.1" stArea:h="0.1" stArea:unit="normalized"/></rdf:Description></rdf:li>
      <rdf:li><rdf:Description mwg-rs:Name="Fido" mwg-rs:Type="Pet"><mwg-rs:Area stArea:x="0.5" stArea:y="0.5" stArea:w="0.1" stArea:h="0.1" stArea:unit="normalized"/></rdf:Description></rdf:li>
    </rdf:Bag></mwg-rs:RegionList>
   </mwg-rs:Regions>
   <MP:RegionInfo rdf:parseType="Resource"><MPRI:Regions><rdf:Bag>
     <rdf:li MPReg:PersonDisplayName="Anya Smith" MPReg:Rectangle="0.15, 0.1, 0.2, 0.3"/>
     <rdf:li MPReg:PersonDisplayName="Ben" MPReg:Rectangle="0.6, 0.35, 0.2, 0.3"/>
   </rdf:Bag></MPRI:Regions></MP:RegionInfo>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""

# Lightroom Classic style: Adobe's Iptc4xmpExt prefix, hierarchical keywords only, a MWG face region
# with Lightroom's extension struct.
LIGHTROOM_XMP = """<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
    xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
    xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"
    xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#"
    xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#"
   xmp:CreatorTool="Adobe Photoshop Lightroom Classic 13.0 (Windows)"
   crs:Exposure2012="+0.50">
   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">Grandpa Joe at his 80th</rdf:li></rdf:Alt></dc:description>
   <dc:subject><rdf:Bag><rdf:li>Grandpa Joe</rdf:li><rdf:li>birthday</rdf:li></rdf:Bag></dc:subject>
   <lr:hierarchicalSubject><rdf:Bag><rdf:li>People|Family|Grandpa Joe</rdf:li><rdf:li>Events|birthday</rdf:li></rdf:Bag></lr:hierarchicalSubject>
   <Iptc4xmpExt:PersonInImage><rdf:Bag><rdf:li>Grandpa Joe</rdf:li></rdf:Bag></Iptc4xmpExt:PersonInImage>
   <mwg-rs:Regions rdf:parseType="Resource">
    <mwg-rs:AppliedToDimensions stDim:w="{W}" stDim:h="{H}" stDim:unit="pixel"/>
    <mwg-rs:RegionList><rdf:Bag>
      <rdf:li rdf:parseType="Resource"><mwg-rs:Area stArea:x="0.5" stArea:y="0.4" stArea:w="0.3" stArea:h="0.4" stArea:unit="normalized"/><mwg-rs:Name>Grandpa Joe</mwg-rs:Name><mwg-rs:Type>Face</mwg-rs:Type></rdf:li>
    </rdf:Bag></mwg-rs:RegionList>
   </mwg-rs:Regions>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>"""


def inject_xmp(path, packet: str) -> Path:
    """Put a raw XMP packet into a JPEG/PNG/TIFF/WebP (pyexiv2, independent of our writer)."""
    import pyexiv2
    p = Path(path)
    img = pyexiv2.ImageData(p.read_bytes())
    try:
        img.modify_raw_xmp(packet)
        p.write_bytes(img.get_bytes())
    finally:
        img.close()
    return p


def digikam_packet(stored_w: int, stored_h: int) -> str:
    return DIGIKAM_XMP.replace("{W}", str(stored_w)).replace("{H}", str(stored_h))


def lightroom_packet(stored_w: int, stored_h: int) -> str:
    return LIGHTROOM_XMP.replace("{W}", str(stored_w)).replace("{H}", str(stored_h))

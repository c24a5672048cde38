"""The real-file corpus (tests/realfiles/, sources in its SOURCES.md) driven through the project's own
import and export path, with exiftool as the independent second reader. Used by
tests/test_realfiles_export.py and tests/test_realfiles_import.py; `python -m tests.helpers.realfiles_harness`
prints the per-file results table of docs/real-files.md.

What "kept" means. Before and after the export every file is read in ONE exiftool call
(`-j -a -G1 -n -struct -e -u -b -all -MakerNotes`): every tag of every group, duplicates included,
numbers unconverted, structures whole, unknown tags too, binary values (thumbnails, ICC profiles,
maker-note blocks) hashed. The two readings must be identical except for

- the keys we own: every writable key of metadata/fields.py, built from `fields.WRITABLE` (never
  copied by hand). Only those exact keys: another language of a lang-alt field (`XMP-dc:Description-de`)
  is not ours and stays compared;
- DERIVED keys and offsets, each listed in IGNORED_DERIVED / OFFSET_SUFFIXES with the reason it changes
  by itself whenever a file is rewritten correctly;
- raw maker-note blocks exiftool decodes, compared by presence (their decoded tags are compared one by
  one), and empty values (see EMPTY);
- Photoshop:IPTCDigest, which is checked on its own: when our IPTC changes, a digest that matched the
  old IPTC block must match the new one (a stale digest makes Photoshop and Lightroom prefer old XMP).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).parents[1] / "realfiles"

# Files `repic import` rightly does not take, with the reason it must give (checked by
# tests/test_realfiles_import.py).
EXPECTED_SKIPS = {
    "Nikon.nef": "without a usable embedded JPEG preview",   # exiftool's test NEF has its image data stripped
    # libtiff's and tlnagy/exampletiffs' test TIFFs in pixel formats or codecs nothing here decodes
    "flower-rgb-contig-4.tif": "unsupported TIFF pixel format: 4-bit RGB",
    "logluv-3c-16b.tiff": "unsupported TIFF pixel format: 16-bit signed integer LogLuv",
    "shapes_lzw_12bps.tif": "unsupported TIFF pixel format: 12-bit RGB",
    "shapes_lzw_predictor3.tif": "unsupported TIFF pixel format: 32-bit floating-point RGB",
    "webp_lossless_rgba_alpha_fully_opaque.tif": "unsupported TIFF compression: WebP",
}

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".heic", ".heif", ".nef"}

# A non-ASCII person name (Latin-1 range and beyond) and an emoji-free caption naming them.
PERSON = "Zoë Ångström-Łukasz"
CAPTION = f"<{PERSON}> at the café by the fjord, naïve smile"
CAPTION_WRITTEN = f"{PERSON} at the café by the fjord, naïve smile"

# `-MakerNotes` adds the raw maker-note block (exiftool shows no tag at all for a maker note it cannot
# decode, so without it a lost unknown maker note would go unnoticed).
EXIFTOOL_READ = ["-j", "-a", "-G1", "-n", "-struct", "-e", "-u", "-b", "-all", "-MakerNotes"]

# Keys that change whenever a file is rewritten correctly, each with why.
IGNORED_DERIVED: dict[str, str] = {
    "System:FileSize": "the file grows by what we add",
    "System:FileModifyDate": "the file was rewritten",
    "System:FileAccessDate": "the file was read",
    "System:FileInodeChangeDate": "the file was replaced (os.replace makes a new inode)",
    "File:CurrentIPTCDigest": "exiftool's MD5 of the IPTC block as it is now: changes with our IPTC fields "
                              "(Photoshop:IPTCDigest, the stored copy, is checked separately)",
    "XMP-x:XMPToolkit": "the XMP packet was re-serialised by exiv2/exiftool, which put their own name here",
    "IFD1:ThumbnailOffset": "the thumbnail moves when IFD0 grows (its bytes, IFD1:ThumbnailImage, are compared)",
    "IFD0:PreviewImageStart": "offset of the embedded preview (its bytes are compared)",
    "IFD0:StripOffsets": "TIFF image data moves when the directories grow (pixels are compared)",
    "IFD0:ExifOffset": "offset of the EXIF sub-IFD, moves when IFD0 grows",
    "IFD0:GPSInfo": "offset of the GPS sub-IFD, moves when IFD0 grows",
    "ExifIFD:InteropOffset": "offset of the interoperability IFD",
    "IFD0:IPTC-NAA": "the raw IPTC block: its datasets are compared one by one as IPTC:*",
    "IFD0:ApplicationNotes": "the raw XMP packet in a TIFF: its properties are compared one by one as XMP-*:*",
    "Photoshop:IPTCDigest": "checked separately (must match the new IPTC block or be left as it was)",
    "File:ExifByteOrder": "appears when a file without EXIF gets its first EXIF tag (IFD0:ImageDescription); "
                          "exiv2 re-encodes a WebP's EXIF little-endian. Every EXIF value is still compared",
    "QuickTime:MediaData": "HEIF keeps its Exif and XMP items inside the mdat box, so mdat changes with them "
                           "(the decoded pixels are compared)",
    "QuickTime:MediaDataSize": "the same mdat box's size",
    "RIFF:WebP_Flags": "the VP8X chunk's feature bits: the EXIF and XMP bits are set when the file gets its "
                       "first EXIF or XMP chunk (every EXIF/XMP value is compared)",
    "QuickTime:MediaDataOffset": "the same mdat box's position",
}
# Mandatory IIM datasets (IIM 4.2: 1:00 and 2:00 must head their records); a writer that changes the IPTC
# block adds them when another program left them out. Not counted as damage when our IPTC changed.
IIM_RECORD_VERSIONS = ("IPTC:EnvelopeRecordVersion", "IPTC:ApplicationRecordVersion")
# The raw maker-note block (ExifIFD:MakerNote<Make>): a maker note exiftool decodes is compared tag by
# tag (Canon:*, Nikon:*, FLIR:* ...) and its block only for being there, because a writer that moves
# or re-encodes it (exiv2 rewrites Nikon's) legitimately changes offsets and padding inside. A maker
# note nobody can decode (ExifIFD:MakerNoteUnknown) must come back byte for byte.
MAKERNOTE_PREFIX = "ExifIFD:MakerNote"
# A tag whose value is empty holds no data: exiftool drops an empty <rdf:Bag/> whenever it rewrites XMP
# ("Ignored empty rdf:Bag list"), so its loss is not counted (a NON-empty value that goes is).
EMPTY = ("", [], {})
# Key suffixes of binary-directory tags that are offsets (positions in the file), never content: in this
# corpus IFD0:TileOffsets, SubIFD1:StripOffsets, MPImage1/2:MPImageStart, PreviewIFD:PreviewImageStart,
# SubIFD:JpgFromRawStart, Canon:VRDOffset, Nikon:IFD0_Offset/PreviewIFD_Offset/SubIFD_Offset. The data
# they point to is compared (MPImage2:MPImage, thumbnails, previews are hashed). XMP keys never match.
OFFSET_SUFFIXES = ("Offset", "Offsets", "Start")


def owned_keys() -> set[str]:
    from repic_desktop.metadata.fields import WRITABLE
    return {f.key for f in WRITABLE}


def exiftool_json(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """One exiftool run for all `paths` -> {path: {key: value}} with binary values hashed."""
    if not paths:
        return {}
    out = subprocess.run(["exiftool", *EXIFTOOL_READ, *[str(p.resolve()) for p in paths]],
                         capture_output=True, check=False).stdout
    rows = json.loads(out.decode("utf-8", errors="replace"), object_pairs_hook=_keep_duplicates)
    res = {}
    for row in rows:
        src = row.pop("SourceFile")
        res[os.path.realpath(src)] = {k: _hash_binary(v) for k, v in row.items()}
    return res


def _keep_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`-a` prints a tag once per copy under the same key (two ExifTool:Warning, a repeated IPTC
    dataset block): number the copies instead of keeping only the last."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        key, n = k, 1
        while key in out:
            n += 1
            key = f"{k} #{n}"
        out[key] = v
    return out


def _hash_binary(v: Any) -> Any:
    if isinstance(v, str) and v.startswith("base64:"):
        raw = base64.b64decode(v[7:])
        return {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()[:16]}
    if isinstance(v, list):
        return [_hash_binary(x) for x in v]
    if isinstance(v, dict):
        return {k: _hash_binary(x) for k, x in v.items()}
    return v


# exiftool groups a namespace it does not know by the prefix the file uses, or XMP-tmpN when that prefix is
# taken by a namespace it knows (digiKam 4.4's old URI under "digiKam"). We keep the URI but exiv2 must
# give it a prefix of its own ("digiKam_1"): the same properties, so both spellings compare as one.
_ALIAS_GROUP = re.compile(r"^XMP-(?:tmp\d+|[A-Za-z][\w-]*_\d+):")


def compared(tags: dict[str, Any]) -> dict[str, Any]:
    own = owned_keys()
    out = {}
    for k, v in tags.items():
        k = _ALIAS_GROUP.sub("XMP-(other URI):", k)
        if k in own or k in IGNORED_DERIVED or (k.endswith(OFFSET_SUFFIXES) and not k.startswith("XMP")):
            continue
        if k.startswith(MAKERNOTE_PREFIX) and k != MAKERNOTE_PREFIX + "Unknown" and isinstance(v, dict):
            v = "present" if v.get("bytes") else "empty"
        out[k] = v
    return out


def _warnings(tags: dict[str, Any]) -> set[str]:
    return {v for k, v in tags.items() if k.split(" #")[0] == "ExifTool:Warning"}


def _warning_damage(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """exiftool's warnings are its diagnosis of the file's structure, not tags: one that goes away is no
    loss; a new one is damage (exiv2 leaving a Nikon IFD pointing outside its block), except about a maker
    note exiftool already called broken, which any rewrite reads differently (its decoded tags are
    still compared one by one)."""
    old, new = _warnings(before), _warnings(after)
    maker_note_was_broken = any("maker note" in w.lower() for w in old)
    return [f"new exiftool warning: {w}" for w in sorted(new - old)
            if not (maker_note_was_broken and w.startswith("[minor] Invalid Canon"))]


def tag_damage(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Every tag another program wrote that the export lost, changed or added, one line each."""
    b = {k: v for k, v in compared(before).items() if k.split(" #")[0] != "ExifTool:Warning"}
    a = {k: v for k, v in compared(after).items() if k.split(" #")[0] != "ExifTool:Warning"}
    lines = _warning_damage(before, after)
    for k in sorted(set(b) | set(a)):
        if k not in a:
            if b[k] in EMPTY:
                continue  # an empty XMP list (<rdf:Bag/>) holds nothing; exiftool drops it on any rewrite
            lines.append(f"lost {k} = {_short(b[k])}")
        elif k not in b:
            if k in IIM_RECORD_VERSIONS and before.get("File:CurrentIPTCDigest") != after.get("File:CurrentIPTCDigest"):
                continue  # IIM requires these records in a block someone writes; exiftool adds them
            lines.append(f"added {k} = {_short(a[k])}")
        elif a[k] != b[k]:
            lines.append(f"changed {k}: {_short(b[k])} -> {_short(a[k])}")
    dig_b, dig_a = before.get("Photoshop:IPTCDigest"), after.get("Photoshop:IPTCDigest")
    if dig_a is not None and dig_a != after.get("File:CurrentIPTCDigest") \
            and before.get("File:CurrentIPTCDigest") != after.get("File:CurrentIPTCDigest") \
            and dig_b == before.get("File:CurrentIPTCDigest"):
        lines.append("stale Photoshop:IPTCDigest: the IPTC block changed but its stored digest did not")
    iptc_same = before.get("File:CurrentIPTCDigest") == after.get("File:CurrentIPTCDigest")
    if dig_b is not None and dig_a is None and iptc_same:
        lines.append("lost Photoshop:IPTCDigest")  # (dropping it when our IPTC changed is a valid fix)
    return lines


def _short(v: Any) -> str:
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= 80 else s[:77] + "..."


def pixel_digest(path: Path) -> str:
    """Decoded pixels (Pillow; pillow-heif for HEIF); the file's bytes for formats Pillow cannot decode."""
    from PIL import Image
    if path.suffix.lower() in (".heic", ".heif"):
        import pillow_heif
        pillow_heif.register_heif_opener()
    if path.suffix.lower() in (".nef",):
        return "bytes:" + hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        with Image.open(path) as im:
            im.load()
            return hashlib.sha256(im.mode.encode() + repr(im.size).encode() + im.tobytes()).hexdigest()
    except (OSError, ValueError):
        pass
    # What stock Pillow cannot decode (YCbCr-subsampled or tile-in-strip TIFFs) the app decodes through
    # libtiff; formats nobody here decodes (import skips them) are compared by their bytes.
    from repic_desktop.core.images import UnusableImage, open_oriented
    try:
        im = open_oriented(str(path))
    except (UnusableImage, OSError, ValueError):
        return "bytes:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return "app:" + hashlib.sha256(im.mode.encode() + repr(im.size).encode() + im.tobytes()).hexdigest()


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class FileResult:
    name: str
    photo_id: int | None = None
    skipped: str | None = None                     # import skip reason
    status: str | None = None                      # first export: written / unchanged / refused / failed
    reason: str | None = None
    target: str | None = None
    backend: str | None = None
    written_path: str | None = None
    changes: list[dict] = field(default_factory=list)
    damage: list[str] = field(default_factory=list)
    pixels_same: bool | None = None
    readback: list[str] = field(default_factory=list)   # our own fields that exiftool reads back differently
    second_status: str | None = None
    second_bytes_same: bool | None = None
    notes: list[str] = field(default_factory=list)   # the export's notes (why another backend or a sidecar)


@dataclass
class CorpusRun:
    results: dict[str, FileResult]
    seconds: dict[str, float]


def corpus_files() -> list[str]:
    return sorted(p.name for p in CORPUS.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def run_corpus(work: Path) -> CorpusRun:
    """Copy the corpus to `work`, import it into a new library, give every photo an accepted caption
    naming one person with a face box, export everything twice, and compare with exiftool."""
    from repic_desktop.core.library import Box, Library
    from repic_desktop.core.scanner import scan_folder
    from repic_desktop.metadata import export_photos
    from repic_desktop.metadata.export import accepted_photo_ids
    from repic_desktop.metadata.fields import canonical

    t: dict[str, float] = {}
    t0 = time.perf_counter()
    album = work / "album"
    shutil.copytree(CORPUS, album, ignore=shutil.ignore_patterns("*.md"))
    files = [album / n for n in corpus_files()]
    results = {f.name: FileResult(f.name) for f in files}
    before = exiftool_json(files)
    pix_before = {f.name: pixel_digest(f) for f in files}
    sha_before = {f.name: file_sha(f) for f in files}
    t["read before"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    lib = Library(work / "lib.sqlite")
    try:
        rep = scan_folder(lib, str(album))
        for s in rep.skipped:
            name = Path(s["path"]).name
            if name in results:
                results[name].skipped = s["reason"]
        lib.concepts.add(PERSON, "person")
        for p in lib.photos.list():
            r = results[Path(p.path).name]
            r.photo_id = p.id
            w, h = p.width or 1, p.height or 1
            box = Box(w // 4, h // 4, max(1, w // 2), max(1, h // 2))
            lib.concepts.tag(p.id, PERSON, box=box)
            lib.captions.add(p.id, CAPTION, status="accepted")
        t["import"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ids = accepted_photo_ids(lib)
        first = export_photos(lib, ids)
        t["export 1"] = time.perf_counter() - t0
        by_id = {r.photo_id: r for r in results.values()}
        for pe in first.photos:
            r = by_id[pe.photo_id]
            r.status, r.reason = pe.status, pe.reason
            if pe.result is not None:
                r.target, r.backend = pe.result.target, pe.result.backend
                r.written_path = pe.result.written_path
                r.changes = pe.result.changes
                r.notes = [n for n in pe.result.notes if n.startswith(("written with", "sidecar:", "pyexiv2"))]
        sha_mid = {f.name: file_sha(f) for f in files}
        sidecars = {f.name: Path(r.written_path) for f in files
                    if (r := results[f.name]).target == "sidecar" and r.written_path}
        sha_mid.update({f"{n}.sidecar": file_sha(p) for n, p in sidecars.items() if p.exists()})

        t0 = time.perf_counter()
        after = exiftool_json(files + [p for p in sidecars.values() if p.exists()])
        t["read after"] = time.perf_counter() - t0
        for f in files:
            r = results[f.name]
            if r.photo_id is None:
                continue
            b, a = before[str(f.resolve())], after[str(f.resolve())]
            r.damage = tag_damage(b, a)
            r.pixels_same = pixel_digest(f) == pix_before[f.name]
            if r.target == "sidecar":
                r.pixels_same = r.pixels_same and file_sha(f) == sha_before[f.name]
            if r.status != "written":
                continue
            read_from = after.get(os.path.realpath(r.written_path), {}) if r.written_path else {}
            for c in r.changes:
                got = canonical(c["key"], read_from.get(c["key"]))
                if got != c["new"]:
                    r.readback.append(f"{c['key']}: wrote {_short(c['new'])}, exiftool reads {_short(got)}")
            if canonical("XMP-dc:Description", read_from.get("XMP-dc:Description")) \
                    != CAPTION_WRITTEN:
                r.readback.append("XMP-dc:Description is not the caption")

        t0 = time.perf_counter()
        second = export_photos(lib, ids, )
        t["export 2"] = time.perf_counter() - t0
        for pe in second.photos:
            by_id[pe.photo_id].second_status = pe.status
        sha_end = {f.name: file_sha(f) for f in files}
        sha_end.update({f"{n}.sidecar": file_sha(p) for n, p in sidecars.items() if p.exists()})
        for f in files:
            r = results[f.name]
            if r.photo_id is not None:
                r.second_bytes_same = sha_end[f.name] == sha_mid[f.name] and \
                    sha_end.get(f"{f.name}.sidecar") == sha_mid.get(f"{f.name}.sidecar")
    finally:
        lib.close()
    return CorpusRun(results, t)


def table(run: CorpusRun) -> str:
    """The results table of docs/real-files.md."""
    lines = ["| file | import | export | target | tags kept | pixels | read back | 2nd export | why this backend |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in sorted(run.results):
        r = run.results[name]
        exp = r.status or "-"
        if r.reason:
            exp += f": {r.reason}"
        more = f" (+{len(r.damage) - 4})" if len(r.damage) > 4 else ""
        dmg = "; ".join(r.damage[:4]) + more if r.damage else "yes"
        second = (r.second_status or "-") + ("" if r.second_bytes_same in (None, True) else ", bytes differ")
        lines.append(f"| {name} | {'skipped: ' + r.skipped if r.skipped else 'ok'} | {exp} | "
                     f"{(r.target or '-') + ('/' + r.backend if r.backend else '')} | {dmg} | "
                     f"{'same' if r.pixels_same else ('CHANGED' if r.pixels_same is False else '-')} | "
                     f"{'ok' if not r.readback else '; '.join(r.readback)} | "
                     f"{second} | {'; '.join(r.notes).replace('|', '/') or '-'} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - the docs table
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        run = run_corpus(Path(d))
    print(table(run))
    print({k: round(v, 2) for k, v in run.seconds.items()})

"""Write a caption, the people and pets in a photo, their regions and keywords into the photo's
metadata (or an .xmp sidecar), all keys of the field map at once and in sync.

`write_metadata(path, values, options)` is the whole job for one file and never raises for a problem
with that file: the result says written / unchanged / would-write (dry run) / refused / failed, with
the reason and the per-key diff (old -> new, canonical values).

Decisions (why, not what):
- Merge, don't clobber. Lists (keywords, PersonInImage, hierarchical tags) keep every item another
  tool wrote; we add ours and remove only items *we* wrote before that are no longer wanted
  (`previous_owned`, recorded by the export in the caption's provenance). Existing regions of other
  people (and unnamed faces, focus regions) are kept; regions of names we write are replaced. So a
  rewrite of a digiKam-tagged file keeps digiKam's other faces, and a second export is a no-op.
- Nothing is written when nothing changes (no new mtime, PhotoPrism does not re-index).
- Secondary caption copies (XPComment, UserComment, XMP-tiff:ImageDescription) are never added but
  are updated when present, so no stale copy can hide the new caption. In a sidecar, where EXIF
  cannot be changed, XMP-tiff:ImageDescription is written whenever the photo has an EXIF
  ImageDescription: exiftool-based readers (Immich) then see the sidecar's ImageDescription instead of
  the stale embedded one.
- Regions go into the stored frame (see geometry.py); AppliedToDimensions is the stored pixel size -
  except for a RAW, whose size we know only from its embedded preview: when its regions already name
  a frame of the same aspect (digiKam writes the RAW's full 6246x4170 where the preview is 1620x1080),
  that frame is kept. Boxes are normalised, so the same numbers are right in either.
- Sidecars (`photo.ext.xmp`, digiKam's and Immich's first choice; `photo.xmp` is read too) are used
  for RAW files, formats no installed backend can write (HEIC without exiftool, BMP, GIF), read-only
  files or folders (unless refused by option), and always when the user says "never modify
  originals". A sidecar starts from the photo's effective metadata (embedded < photo.xmp <
  photo.ext.xmp, per key), because readers let sidecar values win per field.
- IPTC-IIM: written to JPEG and TIFF with CodedCharacterSet UTF-8, values cut to the IIM limits on a
  UTF-8 boundary (2000 bytes caption, 64 bytes per keyword/title). PNG has no standard IPTC block,
  WebP/HEIC/sidecars none at all. In a JPEG, the datasets we do not write come back byte-identical
  (Latin-1 ones transcoded to UTF-8) and a valid Photoshop IPTCDigest stays valid (iim.py).
- Caption and title text goes through one normalisation (fields.clean_text) before it is compared or
  written, so XMP, IPTC and EXIF hold the same text and a second export is a no-op.
- Verify, then fall back (verify.py). Every rendering is read back before the atomic replace, by the
  library that wrote it: everything we did not mean to change (every EXIF/GPS/IPTC/XMP key outside the
  field map's keys we write, the maker note) must read the same. pyexiv2 dropped a Canon compact's maker
  note, moved a FLIR maker note so that its offsets broke, and dropped a Nikon preview IFD, and said ok.
  exiftool, when installed, reads pyexiv2's output of camera, IIM and TIFF files too (second_reader).
  A pyexiv2 rendering that fails or damages is retried with exiftool (when installed and the backend is
  "auto"); when no rendering is safe, the values go to a sidecar and the photo is left byte-identical.
  The result's notes say which backend wrote and why; a fallback's reason names the tags that would
  have changed.

The pieces: what to write and the plan (plan.py), sidecars (sidecars.py), render + read back +
atomic replace (replace.py); here the choice of target and the whole job for one file.
"""
from __future__ import annotations

import atexit
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from . import geometry
from .backends import EMPTY_PACKET, Backends, no_backend_reason
from .containers import XMP_APP1, jpeg_payloads
from .edit import BackendError
from .fields import CONTAINERS
from .plan import MetadataValues, Person, RegionBox, WriteOptions, diff, plan_changes
from .pyexiv2_edit import XMLNS_RE
from .replace import NoSafeRendering, replace_checked, verify_image, verify_sidecar
from .safety import (
    CheckedFile, Refused, check_file, describe_os_error, file_sha256, folder_read_only, identity_problem,
)
from .sidecars import effective_values, read_embedded, read_sidecar, sidecar_candidates, sidecar_path


@dataclass
class WriteResult:
    path: str
    status: str = "failed"             # written | unchanged | would-write | refused | failed
    reason: str | None = None
    target: str | None = None          # file | sidecar
    written_path: str | None = None    # the file that was (or would be) written
    backend: str | None = None
    format: str | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)  # [{key, old, new}]
    notes: list[str] = field(default_factory=list)
    owned: dict[str, list[str]] = field(default_factory=dict)   # what we wrote, for the next merge
    size: int | None = None            # the written file's new size/mtime/sha256 (target == "file")
    mtime_ns: int | None = None
    sha256: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("written", "unchanged", "would-write")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_DEFAULT_BACKENDS: dict[str, Backends] = {}


def default_backends(preference: str = "auto") -> Backends:
    """A process-wide session per preference (keeps one exiftool process for many writes)."""
    b = _DEFAULT_BACKENDS.get(preference)
    if b is None:
        b = _DEFAULT_BACKENDS[preference] = Backends(preference)
    return b


@atexit.register
def _close_default_backends() -> None:  # pragma: no cover - process exit
    for b in _DEFAULT_BACKENDS.values():
        b.close()


def _choose_target(cf: CheckedFile, options: WriteOptions, backends: Backends, forced: str | None = None):
    """("file", None, backend) or ("sidecar", why, backend); `forced`: why the photo itself may not be written."""
    folder_ro = folder_read_only(os.path.dirname(os.path.abspath(cf.path)))
    why = None
    be = None
    if forced:
        why = forced
    elif cf.format == "RAW":
        why = "RAW file (originals are never rewritten)"
    elif options.sidecar == "always":
        why = "never modify originals"
    elif cf.format in ("BMP", "GIF"):
        why = f"{cf.format} files cannot hold this metadata"
    else:
        be = backends.for_format(cf.format)
        if be is None:
            if cf.format == "HEIF":
                why = "HEIC needs exiftool to be written (pyexiv2 cannot write HEIC)"
            else:
                raise Refused(f"no installed metadata backend can write {cf.format}")
        elif cf.read_only or folder_ro:
            if not options.readonly_to_sidecar:
                raise Refused(f"{cf.read_only or folder_ro}: not written (sidecars for read-only files are off)")
            why = cf.read_only or folder_ro
    if why is None:
        return "file", None, be
    if folder_ro:
        raise Refused(f"needs a sidecar ({why}) but {folder_ro}")
    sbe = backends.for_format("XMP")
    if sbe is None:
        raise Refused(f"needs a sidecar ({why}) but no backend can write .xmp files")
    return "sidecar", why, sbe



# exiv2 leaves these out of every EXIF block it writes outside TIFF (its "filteredIfd0Tags": image-data
# tags it thinks only TIFF may carry), although Photoshop and others put them in JPEG's IFD0.
_EXIV2_DROPS_OUTSIDE_TIFF = {"Exif.Image.PhotometricInterpretation": "IFD0 PhotometricInterpretation"}
# exiv2 re-serialises XMP from its own data model, which has no rdf:about: a non-empty one is lost.
_ABOUT_TEXT = re.compile(r"""(?<![\w:.-])(?:rdf:)?about\s*=\s*(["'])(?!\1)""")  # a non-empty (rdf:)about


def _xmp_has_about(data: bytes) -> bool:
    """Whether an XMP packet in `data` (UTF-8 or UTF-16, as Photoshop and old exiftool wrote it) carries a
    non-empty rdf:about, also the unprefixed `about=` of older RDF, which exiftool reads as rdf:About."""
    for enc in ("utf-8", "utf-16-be", "utf-16-le"):
        start = data.find("<rdf:RDF".encode(enc))
        if start < 0:
            continue
        end = data.find("</rdf:RDF>".encode(enc), start)
        chunk = data[start:end if end > 0 else start + (1 << 20)]  # the needle starts on a character
        if _ABOUT_TEXT.search(chunk.decode(enc, "ignore")):
            return True
    return False


def _pyexiv2_losses(cf: CheckedFile, edit: Any) -> list[str]:
    """What a pyexiv2 rewrite of this file would silently drop."""
    lost = []
    if cf.format != "TIFF":
        exif = getattr(edit, "exif", None) or {}
        lost += [name for key, name in _EXIV2_DROPS_OUTSIDE_TIFF.items() if key in exif]
    if cf.data and _xmp_has_about(cf.data):
        lost.append("the XMP rdf:about")
    if cf.data:
        # exiftool writes MicrosoftPhoto as http://ns.microsoft.com/photo/1.0 (no slash); exiv2's XMP toolkit
        # serialises every namespace URI with a trailing "/", which is another namespace to every XMP reader.
        bare = sorted({u.decode("utf-8", "replace") for _prefix, u in XMLNS_RE.findall(cf.data)
                       if u and not u.endswith((b"/", b"#"))})
        if bare:
            lost.append(f"the namespace URI {bare[0]} (exiv2 adds a trailing slash: another namespace to readers)")
    return lost


_ABOUT_VALUE = re.compile(rb'rdf:about=(["\'])([^"\']+)\1')
_ABOUT_EMPTY = re.compile(rb'rdf:about=(["\'])\1')


def _jpeg_xmp_segment(data: bytes) -> tuple[int, int] | None:
    """(start, end) of the standard XMP APP1 segment's packet in a JPEG, or None."""
    found = jpeg_payloads(data, 0xE1, XMP_APP1)
    return found[0] if found else None


def _jpeg_keep_about(old: bytes, new: bytes) -> bytes:
    """Without exiftool: put the rdf:about that exiv2 emptied back into the rewritten JPEG's XMP."""
    o, w = _jpeg_xmp_segment(old), _jpeg_xmp_segment(new)
    m = _ABOUT_VALUE.search(old, *o) if o else None
    if not m or not w:
        return new
    packet = _ABOUT_EMPTY.sub(lambda _: b'rdf:about="' + m.group(2) + b'"', new[w[0]:w[1]])
    length = 2 + len(XMP_APP1) + len(packet)  # the length field counts itself
    if length > 0xFFFF:
        return new
    at = w[0] - len(XMP_APP1) - 2  # the segment's length field
    return new[:at] + length.to_bytes(2, "big") + new[at + 2:w[0]] + packet + new[w[1]:]


def _utf8_about(data: bytes) -> bool:
    seg = _jpeg_xmp_segment(data)
    return bool(seg and _ABOUT_VALUE.search(data, *seg))


def _exiftool_instead(backends: Backends, fmt: str):
    if backends.preference != "auto" or "exiftool" not in backends.available:
        return None
    et = backends.get("exiftool")
    return et if et.can_write(fmt) else None


class _AboutKeeping:
    """A pyexiv2 edit of a JPEG whose rendered bytes get the original rdf:about back."""

    def __init__(self, edit: Any, old: bytes):
        self._edit, self._old = edit, old

    def __getattr__(self, name: str) -> Any:
        return getattr(self._edit, name)

    def render(self, changes: dict[str, Any], tmp: str) -> bytes:
        return _jpeg_keep_about(self._old, self._edit.render(changes, tmp))

    def __enter__(self) -> "_AboutKeeping":
        return self

    def __exit__(self, *exc) -> None:
        self._edit.close()


def write_metadata(path: str | os.PathLike, values: MetadataValues, options: WriteOptions | None = None, *,
                   previous_owned: dict[str, list[str]] | None = None, backends: Backends | None = None,
                   dry_run: bool = False, roots: set[str] | Callable[[], set[str]] | None = None,
                   identity: tuple[int, int, str] | None = None,
                   _sidecar_because: str | None = None) -> WriteResult:
    """Write `values` into the photo at `path` (or its sidecar). See the module docstring.

    `identity` (size, mtime_ns, content_hash as the library stored them): the file must still be that
    photo, else the write is refused (safety.identity_problem) - unless it already says exactly what we
    would write (our own earlier write whose record was lost to a kill), which is reported unchanged."""
    options = options or WriteOptions()
    backends = backends or default_backends(options.backend)
    path = os.fspath(path)
    res = WriteResult(path=path)
    try:
        if not backends.available:
            raise Refused(no_backend_reason())
        cf = check_file(path, follow_symlinks=options.follow_symlinks, roots=roots)
        res.format, res.notes = cf.format, list(cf.notes)
        read_sha = file_sha256(cf.data, cf.path) if cf.data is not None else None
        not_ours = identity_problem(cf, *identity, digest=read_sha) if identity is not None else None
        target, why, be = _choose_target(cf, options, backends, _sidecar_because)
        res.target, res.backend = target, be.name
        if why:
            res.notes.append(f"sidecar: {why}")
        if cf.width and cf.height:
            if values.regions and values.display_size and tuple(values.display_size) != (cf.width, cf.height):
                raise Refused(f"the photo is {cf.width}x{cf.height} on disk but its regions were drawn on "
                              f"{values.display_size[0]}x{values.display_size[1]}: rescan the folder first")
            stored = geometry.stored_size(cf.width, cf.height, cf.orientation)
        else:
            stored = None
        if target == "file":
            out_path, like, keep_mtime = cf.path, None, options.keep_mtime
            edit = be.open(cf.path, cf.data, cf.format)
            lost = _pyexiv2_losses(cf, edit) if be.name == "pyexiv2" else []
            if lost:
                alt = _exiftool_instead(backends, cf.format)
                if alt is not None:
                    edit.close()
                    be, res.backend = alt, alt.name
                    edit = be.open(cf.path, cf.data, cf.format)
                    res.notes.append(f"written with exiftool: pyexiv2 would drop {' and '.join(lost)}")
                elif cf.format == "JPEG" and "the XMP rdf:about" in lost and _utf8_about(cf.data):
                    lost.remove("the XMP rdf:about")
                    edit = _AboutKeeping(edit, cf.data)
                renamed = [x for x in lost if x.startswith("the namespace URI")]
                if renamed and alt is None and _sidecar_because is None:
                    # other programs' properties would move to another namespace: not in the photo
                    edit.close()
                    fallback = write_metadata(path, values, options, previous_owned=previous_owned,
                                              backends=backends, dry_run=dry_run, roots=roots, identity=identity,
                                              _sidecar_because=f"pyexiv2 would change {renamed[0]} and exiftool "
                                                               "is not installed")
                    fallback.notes = res.notes + [n for n in fallback.notes if n not in res.notes]
                    return fallback
                if lost and alt is None:
                    res.notes.append(f"pyexiv2 drops {' and '.join(lost)} (exiftool would keep it)")
            base, containers, embedded_caption = edit.old, CONTAINERS[cf.format], False
            own_old = base
            verify = verify_image(cf)
            before_data, before_path = cf.data, cf.path
        else:
            out_path = sidecar_path(cf.path)
            existing = out_path if os.path.isfile(out_path) else None
            side_st = os.stat(existing) if existing else None
            if existing and not (os.access(existing, os.W_OK) and side_st.st_mode & 0o222):
                raise Refused(f"the sidecar {existing} is read-only: not written (make it writable to update it)")
            try:
                embedded = read_embedded(cf, backends)
            except BackendError as exc:
                embedded = {}
                res.notes.append(f"embedded metadata not readable ({exc})")
            others = [p for p in sidecar_candidates(cf.path) if not (existing and os.path.samefile(p, existing))]
            layers = [embedded]
            for p in reversed(others):  # least specific first: later layers win
                try:
                    layers.append(read_sidecar(p, backends))
                except (BackendError, OSError) as exc:
                    res.notes.append(f"sidecar {p} not readable ({exc})")
            # A new photo.ext.xmp starts as a copy of an Adobe-style photo.xmp: Immich reads only the
            # first sidecar it finds (photo.ext.xmp first), so nothing of photo.xmp may get lost.
            seed = existing or (others[0] if others and not existing else None)
            if seed:
                with open(seed, "rb") as f:
                    data = f.read()
                side_sha = file_sha256(data, seed) if existing else None
                if not existing:
                    res.notes.append(f"new sidecar starts from {os.path.basename(seed)}")
            else:
                data = EMPTY_PACKET
            edit = be.open(out_path, data, "XMP", read_path=seed)
            own_old = edit.old
            base = effective_values([*layers, edit.old])
            containers, like, keep_mtime = CONTAINERS["XMP"], cf.st, False
            embedded_caption = "IFD0:ImageDescription" in embedded
            verify = verify_sidecar
            before_data, before_path = data, seed
        with edit:
            plan = plan_changes(base, values, options, containers=containers, stored_dims=stored,
                                orientation=cf.orientation, has_iptc=getattr(edit, "has_iptc", True),
                                previous_owned=previous_owned, embedded_caption=embedded_caption,
                                dims_exact=cf.format != "RAW")
            res.notes += plan.notes
            res.owned = plan.owned
            res.written_path = out_path
            res.changes = diff(base, plan.changes)
            # a sidecar holds every value we manage, even those the photo already says (self-contained)
            if target == "sidecar":
                to_write = {k: v for k, v in plan.new.items() if v != own_old.get(k)}
            else:
                to_write = plan.changes
            if not to_write:
                res.status = "unchanged"
                if not_ours:
                    res.notes.append("the file differs from the one imported but already says all this")
                return res
            if not_ours:
                raise Refused(not_ours)
            if dry_run:
                res.status = "would-write"
                return res
            if target == "file":
                before, before_sha = cf.st, read_sha
            else:
                before, before_sha = (side_st, side_sha) if existing else (None, None)
            keep_iim = cf.data if target == "file" and cf.format == "JPEG" and cf.data is not None else None
            try:
                rep, res.backend = replace_checked(
                    out_path, edit, be, backends, to_write, fmt=cf.format if target == "file" else "XMP",
                    before_data=before_data, before_path=before_path, verify=verify, keep_mtime=keep_mtime,
                    like=like, expect=before, expect_sha256=before_sha,
                    expect_absent=target == "sidecar" and not existing, keep_iim=keep_iim, notes=res.notes,
                    second_reader=options.second_reader)
            except NoSafeRendering as exc:
                if target == "sidecar" or not exc.damaged:
                    raise BackendError(str(exc)) from None
                fallback = write_metadata(path, values, options, previous_owned=previous_owned, backends=backends,
                                          roots=roots, identity=identity,
                                          _sidecar_because=f"writing the photo would have changed "
                                                           f"what other programs wrote ({exc})")
                fallback.notes = res.notes + [n for n in fallback.notes if n not in res.notes]
                return fallback
        res.status = "written"
        if target == "file":
            res.size, res.mtime_ns, res.sha256 = rep.size, rep.mtime_ns, rep.sha256
        return res
    except Refused as exc:
        res.status, res.reason = "refused", exc.reason
    except BackendError as exc:
        res.status, res.reason = "failed", str(exc)
    except OSError as exc:
        res.status, res.reason = "failed", describe_os_error(exc)
    return res


# MetadataValues, Person, RegionBox and WriteOptions (plan.py) are write_metadata's arguments: also here.
__all__ = ["MetadataValues", "Person", "RegionBox", "WriteOptions", "WriteResult", "default_backends",
           "write_metadata"]

"""The write-and-replace step: render the new file with a backend, read it back (verify.py), and
replace the original atomically only if nothing else changed; a rendering that fails or damages is
retried with exiftool.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from ..core.images import UnusableImage, inspect_image
from . import iim
from .backends import Backends
from .edit import BackendError
from .safety import CheckedFile, atomic_replace
from .verify import Damaged, check_exiftool, check_pyexiv2, owned_exiv2

def verify_image(cf: CheckedFile) -> Callable[[bytes], None]:
    def verify(new: bytes) -> None:
        try:
            info = inspect_image(cf.path, data=new)
        except UnusableImage as exc:
            raise BackendError(f"the rewritten file failed our checks ({exc.reason}); "
                               f"the original is unchanged") from None
        if info.format != cf.format or (info.width, info.height) != (cf.width, cf.height):
            raise BackendError("the rewritten file differs in format or size; the original is unchanged")
    return verify


class NoSafeRendering(Exception):
    """No backend could render the photo without damaging what other programs wrote; str(exc) says why."""

    def __init__(self, reason: str, damaged: bool):
        super().__init__(reason)
        self.damaged = damaged  # a backend wrote but changed what it should not have (else: only errors)


def _metadata_check(edit, name: str, backends: Backends, fmt: str, before_data: bytes | None,
                    before_path: str | None, to_write: dict[str, Any], tmp: dict[str, str],
                    second_reader: bool = True) -> Callable[[bytes], None]:
    """Each backend's output is read back by the same library (see verify.py). pyexiv2's output is read by
    exiftool too when it is installed and the photo has what exiv2 reads only in part (a maker note, whose
    preview IFDs exiv2 drops; IIM, where exiv2 sees one block of several; TIFF)."""
    def check(new: bytes) -> None:
        if name == "pyexiv2":
            before = edit.snapshot()
            check_pyexiv2(before, before_data or b"", new, fmt, owned_exiv2(to_write))
            risky = fmt == "TIFF" or "Exif.Photo.MakerNote" in before or any(k.startswith("Iptc.") for k in before)
            if second_reader and risky and fmt != "XMP" and "exiftool" in backends.available and before_path:
                check_exiftool(backends.get("exiftool").et, before_path, tmp["path"], to_write)
        elif before_path is not None and os.path.exists(before_path):
            check_exiftool(backends.get("exiftool").et, before_path, tmp["path"], to_write)
    return check


def replace_checked(out_path: str, edit, be, backends: Backends, to_write: dict[str, Any], *, fmt: str,
                     before_data: bytes | None, before_path: str | None, verify: Callable[[bytes], None],
                     keep_mtime: bool, like, expect, notes: list[str], second_reader: bool = True,
                     expect_sha256: str | None = None, expect_absent: bool = False, keep_iim: bytes | None = None):
    """Render with `be`, read it back, and replace `out_path` only if nothing else changed. A rendering
    that fails (error or damage) is retried with exiftool (when installed and the backend is "auto");
    if none is safe, NoSafeRendering says why for every backend tried. Returns (Replaced, backend name)."""
    attempts = [(be, edit)]
    if be.name == "pyexiv2" and backends.preference == "auto" and "exiftool" in backends.available:
        alt = backends.get("exiftool")
        if alt.can_write(fmt):
            attempts.append((alt, None))
    reasons: list[str] = []
    damaged = False
    for backend, ed in attempts:
        opened = ed is None
        try:
            if opened:
                ed = backend.open(before_path if fmt != "XMP" else out_path, before_data, fmt,
                                  **({"read_path": before_path} if fmt == "XMP" else {}))
            tmp: dict[str, str] = {}
            check = _metadata_check(ed, backend.name, backends, fmt, before_data, before_path, to_write, tmp,
                                    second_reader)

            def render(path: str, ed=ed) -> bytes | None:
                tmp["path"] = path
                return ed.render(to_write, path)

            # other tools' IIM datasets back byte for byte (iim.py), before the check reads the result
            produce = _keep_their_iim(render, keep_iim, to_write) if keep_iim is not None else render

            def verify_all(new: bytes, check=check) -> None:
                verify(new)
                check(new)

            rep = atomic_replace(out_path, produce, keep_mtime=keep_mtime, like=like, verify=verify_all,
                                 expect=expect, expect_sha256=expect_sha256, expect_absent=expect_absent)
        except BackendError as exc:
            reasons.append(f"{backend.name}: {exc}" if len(attempts) > 1 else str(exc))
            damaged = damaged or isinstance(exc, Damaged)
            continue
        finally:
            if opened and ed is not None:
                ed.close()
        if reasons:
            notes.append(f"written with {backend.name}: {'; '.join(reasons)}")
        return rep, backend.name
    raise NoSafeRendering("; ".join(reasons), damaged)


def verify_sidecar(new: bytes) -> None:
    if b"x:xmpmeta" not in new[:4096] and b"<rdf:RDF" not in new[:4096]:
        raise BackendError("the new sidecar is not an XMP packet; nothing was written")


def _keep_their_iim(render: Callable[[str], bytes | None], original: bytes,
                    to_write: dict[str, Any]) -> Callable[[str], bytes | None]:
    """The backend's output with other tools' IIM datasets byte-identical (transcoded when the block
    becomes UTF-8) and Photoshop's IPTCDigest kept true (see iim.py)."""
    changed = {iim.DATASETS[k] for k in to_write if k in iim.DATASETS}
    if not changed:
        return render

    def produce(tmp: str) -> bytes | None:
        out = render(tmp)
        if out is None:  # exiftool edited the temp file itself
            with open(tmp, "rb") as f:
                out = f.read()
            os.unlink(tmp)
        return iim.reconcile(original, out, changed)
    return produce


__all__ = ["NoSafeRendering", "replace_checked", "verify_image", "verify_sidecar"]

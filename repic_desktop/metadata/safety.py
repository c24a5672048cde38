"""Checks before touching a photo, and the atomic replace every write goes through.

Why (measured in reference/metadata.md, section 4):
- Neither pyexiv2 nor exiftool notices truncated image data: both happily "update" a JPEG cut in half,
  which hides the damage. We run the project's own structural checks (core/images.inspect_image) on
  the bytes we are about to edit and refuse with its reason.
- exiftool refuses an extension/content mismatch, pyexiv2 writes it. We refuse it too, with a reason:
  other tools would misread the file.
- Replace-style writes happily replace a read-only *file* in a writable folder; in-place writes need
  only file permission. So writability is checked here, by mode bits as well as os.access (root
  ignores mode bits, but a 0444 file is still the user saying "do not touch").
- Atomic replace: a temp file in the same folder (same file system, so os.replace is atomic), written,
  fsync'ed, given the original's mode (and owner when we may), then os.replace and an fsync of the
  folder. A kill -9 at any moment leaves the original byte-identical or the new file complete; a full
  disk or a permission error leaves the original untouched and the temp file removed.
- Temp names start with ".~repic-" (hidden: the scanner ignores them) and end with the photo's own
  name (exiftool picks the output format by extension). In between: a tag of this machine and the
  writer's pid, so `cleanup_stale_temps` can remove a killed export's leftover (a full copy of the
  photo) at the next export at once when that pid is no longer alive here; a live writer's temp, one
  written by another machine (a shared folder) or an old-style name waits for the age limit.
- Identity: before a write the file must still be the photo the library imported (`identity_problem`:
  the bytes we read hash to the stored content hash; a RAW, not read into memory, is trusted when
  size and mtime are as stored and hashed otherwise). Right before the replace, the file must still
  be what we read (size, mtime, inode and the sha256 of its bytes): an edit another program saved in
  place meanwhile (even one that restores the mtime, like `exiv2 -k`) is refused, never overwritten.
- A new sidecar gets the user's default mode (umask), not the photo's: a read-only photo must not
  get a read-only sidecar that blocks the next export.
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from typing import Callable

from ..core.images import RAW_EXTENSIONS, UnusableImage, inspect_image, sniff_format
from ..core.temp_files import (  # noqa: F401  (re-exported: the writer and tests use them here)
    STALE_TEMP_SECONDS, TEMP_PREFIX, _host_tag, _pid_alive, _temp_owner, cleanup_stale_temps, temp_path_for,
)


# extension -> the format its content must be (Pillow's names, as core.images.sniff_format returns)
EXTENSION_FORMATS = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG",
    ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
    ".heic": "HEIF", ".heif": "HEIF", ".hif": "HEIF", ".bmp": "BMP", ".dib": "BMP", ".gif": "GIF",
}
MAX_EDIT_BYTES = 2 * 1024 ** 3 - 1  # pyexiv2.ImageData limit; nothing we import is that big


class Refused(Exception):
    """A file we will not write, with a clear user-facing reason (str(exc))."""

    @property
    def reason(self) -> str:
        return str(self)


@dataclass
class CheckedFile:
    path: str                # the path actually edited (a symlink's target when following is allowed)
    requested: str           # the path the caller gave
    data: bytes | None       # the whole file (None for RAW: never read into memory)
    format: str              # JPEG/PNG/TIFF/WEBP/HEIF/BMP/GIF, or RAW
    width: int | None        # displayed size (EXIF orientation applied)
    height: int | None
    orientation: int
    st: os.stat_result
    read_only: str | None    # why the file itself cannot be replaced (None: it can)
    notes: list[str]


def is_raw(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in RAW_EXTENSIONS


def _writable(path: str, st: os.stat_result) -> bool:
    return os.access(path, os.W_OK) and bool(st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def folder_read_only(folder: str) -> str | None:
    try:
        st = os.stat(folder)
    except OSError as exc:
        return f"cannot access folder {folder}: {exc.strerror or exc}"
    if not _writable(folder, st):
        return f"the folder {folder} is read-only"
    return None


def _inside(path: str, roots: set[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def resolve_link(path: str, *, follow_symlinks: bool,
                 roots: set[str] | Callable[[], set[str]] | None) -> tuple[str, list[str]]:
    """The path to edit. A symlinked file is written through to its target only when the target lies
    inside the library's folders (`roots`, real paths) or the caller allows following; otherwise it is
    refused - os.replace on the link itself would silently turn the link into a copy."""
    notes: list[str] = []
    if not os.path.islink(path):
        return path, notes
    target = os.path.realpath(path)
    if not os.path.exists(target):
        raise Refused(f"broken symbolic link (points to {target})")
    root_set = roots() if callable(roots) else roots
    if follow_symlinks or (root_set and _inside(os.path.dirname(target), root_set)):
        notes.append(f"symbolic link: wrote its target {target}")
        return target, notes
    raise Refused(f"is a symbolic link to {target}, outside the library's folders: not written "
                  f"(use --follow-symlinks to write the target, or --sidecar)")


def check_file(path: str, *, follow_symlinks: bool = False,
               roots: set[str] | Callable[[], set[str]] | None = None) -> CheckedFile:
    """Everything we must know before editing `path`; raises Refused with the reason."""
    requested = path
    path, notes = resolve_link(path, follow_symlinks=follow_symlinks, roots=roots)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise Refused("file not found") from None
    except OSError as exc:
        raise Refused(f"cannot access file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise Refused("not a regular file")
    if st.st_size == 0:
        raise Refused("empty file (0 bytes)")
    if st.st_size > MAX_EDIT_BYTES:
        raise Refused(f"file is {st.st_size / 1024 ** 3:.1f} GiB: too big to edit safely")
    read_only = None if _writable(path, st) else "the file is read-only"
    if st.st_nlink > 1:
        notes.append(f"the file had {st.st_nlink} hard links: the other names keep the old version")
    if is_raw(path):
        # The RAW is never rewritten, but its displayed frame (embedded preview + the RAW's orientation,
        # as the library stored it) is what region boxes are relative to.
        try:
            info = inspect_image(path)
            w, h, orientation = info.width, info.height, info.orientation
        except UnusableImage:
            w = h = None
            orientation = 1
        return CheckedFile(path, requested, None, "RAW", w, h, orientation, st, read_only, notes)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except PermissionError:
        raise Refused("permission denied (cannot read the file)") from None
    except OSError as exc:
        raise Refused(f"cannot read file: {exc.strerror or exc}") from None
    if len(data) != st.st_size:
        raise Refused("file changed while it was being read (still being copied?)")
    fmt = sniff_format(data[:32])
    ext = os.path.splitext(path)[1].lower()
    want = EXTENSION_FORMATS.get(ext)
    if fmt is not None and want is not None and fmt != want:
        raise Refused(f"extension {ext} does not match the content ({_fmt_name(fmt)}): rename the file "
                      f"to its real type first (other programs would misread it)")
    try:
        info = inspect_image(path, data=data)
    except UnusableImage as exc:
        raise Refused(f"{exc.reason}: not written (metadata tools would write it and hide the damage)") from None
    if want is None:
        raise Refused(f"unknown photo extension {ext or '(none)'}: rename the file to its real type "
                      f"({_fmt_name(info.format)}) first")
    return CheckedFile(path, requested, data, info.format, info.width, info.height, info.orientation, st,
                       read_only, notes)


def _fmt_name(fmt: str) -> str:
    return {"WEBP": "WebP", "HEIF": "HEIC/HEIF"}.get(fmt, fmt)


# --------------------------------------------------------------------------------------------------
# Atomic replace
# --------------------------------------------------------------------------------------------------









def new_file_mode() -> int:
    """The mode a new file of the user's gets (0666 less the umask), read without changing the umask
    where the system says it (Linux /proc), else by the set-and-restore dance."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def file_sha256(data: bytes | None, path: str) -> str:
    if data is not None:
        return hashlib.sha256(data).hexdigest()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


CHANGED_SINCE_IMPORT = ("the file changed since it was imported (replaced, edited or swapped with another photo "
                        "by a rename?): not written, rescan the folder first")


def identity_problem(cf: CheckedFile, size: int, mtime_ns: int, content_hash: str, *,
                     digest: str | None = None) -> str | None:
    """Why `cf` is not the photo the library imported (size, mtime_ns, content_hash as stored), or None.
    Bytes already in memory are always hashed (cheap next to the write); a RAW is trusted by size and
    mtime and hashed only when they differ. `digest`: the sha256 of cf.data when already known."""
    if cf.data is None and (cf.st.st_size, cf.st.st_mtime_ns) == (size, mtime_ns):
        return None
    try:
        digest = digest or file_sha256(cf.data, cf.path)
    except OSError as exc:
        raise Refused(f"cannot read file: {exc.strerror or exc}") from None
    return None if digest == content_hash else CHANGED_SINCE_IMPORT


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # e.g. Windows: directories cannot be opened; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quiet(p: str) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass
    except OSError:
        pass


def write_bytes_exclusive(tmp: str, data: bytes, mode: int = 0o600) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0),
                 mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Replaced:
    path: str
    size: int
    mtime_ns: int
    sha256: str
    data: bytes


def atomic_replace(path: str, produce: Callable[[str], bytes | None], *, keep_mtime: bool = False,
                   like: os.stat_result | None = None, verify: Callable[[bytes], None] | None = None,
                   expect: os.stat_result | None = None, expect_sha256: str | None = None,
                   expect_absent: bool = False) -> Replaced:
    """Create the new content of `path` in a temp file beside it (`produce(tmp)` writes the file, or
    returns bytes for us to write), fsync it, give it the old file's mode/owner (`like`: the stat of the
    file whose mode to copy, default `path`'s), check it (`verify(new_bytes)` raises to abort), then
    os.replace it over `path` and fsync the folder. With `expect` (the stat taken when the content was
    read) the replace is refused if the file changed meanwhile (another program saved it); with
    `expect_sha256` (of the bytes read) its content is compared too, so an in-place edit that keeps
    size and mtime is caught; with `expect_absent` (a new sidecar) the replace is refused if another
    program created the file meanwhile. A new file (no `path` yet) gets the user's default mode, not `like`'s.
    On any error the temp file is removed and `path` is untouched."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        old = os.stat(path)
    except FileNotFoundError:
        old = None
    ref = old or like
    tmp = temp_path_for(path)
    try:
        out = produce(tmp)
        if out is not None:
            write_bytes_exclusive(tmp, out)
        else:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        with open(tmp, "rb") as f:
            new = f.read() if out is None else out
        if verify is not None:
            verify(new)
        if ref is not None:
            os.chmod(tmp, stat.S_IMODE(ref.st_mode) if old is not None else new_file_mode())
            if hasattr(os, "chown") and (ref.st_uid != os.geteuid() or ref.st_gid != os.getegid()):
                try:
                    os.chown(tmp, ref.st_uid, ref.st_gid)
                except OSError:
                    pass  # only root may give a file away; the new file is then ours
        if keep_mtime and old is not None:
            os.utime(tmp, ns=(old.st_atime_ns, old.st_mtime_ns))
        if expect_absent and os.path.lexists(path):
            raise Refused("another program created the file while it was being written: not written, try again")
        if expect is not None:
            now_st = os.stat(path)
            same = (now_st.st_size, now_st.st_mtime_ns, now_st.st_ino) == (expect.st_size, expect.st_mtime_ns,
                                                                          expect.st_ino)
            if same and expect_sha256 is not None:
                try:
                    same = file_sha256(None, path) == expect_sha256
                except OSError:
                    same = False
            if not same:
                raise Refused("the file changed on disk while it was being written (saved by another program?): "
                              "not written, try again")
        os.replace(tmp, path)
    except BaseException:
        _unlink_quiet(tmp)
        _unlink_quiet(tmp + "_exiftool_tmp")
        raise
    _fsync_dir(folder)
    st = os.stat(path)
    return Replaced(path, st.st_size, st.st_mtime_ns, hashlib.sha256(new).hexdigest(), new)


def describe_os_error(exc: OSError, what: str = "write") -> str:
    if isinstance(exc, PermissionError):
        return f"permission denied: cannot {what} here (the original is unchanged)"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT if hasattr(errno, "EDQUOT") else errno.ENOSPC):
        return "the disk is full (the original is unchanged)"
    if exc.errno == errno.EFBIG:
        return "file too large for this file system or user limit (the original is unchanged)"
    if exc.errno == errno.EROFS:
        return "read-only file system (the original is unchanged)"
    return f"cannot {what}: {exc.strerror or exc} (the original is unchanged)"


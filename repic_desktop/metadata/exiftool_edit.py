"""exiftool (one stay-open process, via PyExifTool), the second backend, and the one place that makes
arguments to exiftool safe.

Every argument goes through `ExifTool.execute`, which is the one place that makes exiftool's
stay-open stream (one argument per line, read like a `-@` argfile) safe: it passes each
argument exactly or refuses it, and gives files separately, as absolute paths, so no file name, caption
or name can ever become an option (see `stay_open_line`). Tag values also use `-E` (HTML escapes) for
every line break, so a value is always one plain line; `|`-escaping inside struct values; `-charset
iptc=UTF8` + CodedCharacterSet; list tags are cleared (`-TAG=`) before items are added; JSON numbers are
parsed as their literal text so a caption "1.50" stays "1.50". exiftool cannot write WebP through `-o`
("Can't write RIFF files"), so every exiftool edit copies the original into the temp file and edits that
copy with -overwrite_original.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import threading
from typing import Any, Iterable

from . import iim
from .containers import ifd0_offset, ifd_entry, tiff_order, tiff_start
from .edit import EMBED_FORMATS, BackendError, Edit, _bmp_stand_in
from .fields import BY_KEY, FIELDS, canonical_dict, fmt_num, mp_rect_text
from .safety import write_bytes_exclusive


def exiftool_executable() -> str | None:
    """The exiftool program to use: $REPIC_EXIFTOOL (a path, or "off"), else `exiftool` on PATH."""
    env = os.environ.get("REPIC_EXIFTOOL")
    if env is not None and env.strip().lower() in ("off", "0", "none", "no"):
        return None
    if env:
        return env if os.path.isfile(env) and os.access(env, os.X_OK) else shutil.which(env)
    return shutil.which("exiftool")


def exiftool_available() -> bool:
    if exiftool_executable() is None:
        return False
    try:
        import exiftool  # noqa: F401  (PyExifTool)
    except Exception:
        return False
    return True


# exiftool itself splits only at "\n" and drops a trailing "\r"; the other characters Python or Perl may
# take for a line end are escaped too, so that nothing downstream depends on that.
_LINE_BREAKS = {ord(c): f"&#x{ord(c):x};" for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def _esc_text(s: str) -> str:
    """For -E: HTML-escape, and encode line breaks, and a leading blank (which exiftool's argfile reader
    would drop after "-TAG="), so the `-TAG=value` argument is always one plain line."""
    s = html.escape(s, quote=False).translate(_LINE_BREAKS)
    return f"&#x{ord(s[0]):x};{s[1:]}" if s[:1].isspace() else s


def _esc_struct(s: str) -> str:
    for c in "|,{}[]=":
        s = s.replace(c, "|" + c)
    return s


def _struct(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}={_struct(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ",".join(_struct(x) for x in v) + "]"
    if isinstance(v, float):
        return fmt_num(v)
    return _esc_struct(str(v))


def _mwg_struct(val: dict) -> dict:
    out: dict[str, Any] = {}
    if val.get("AppliedToDimensions"):
        out["AppliedToDimensions"] = val["AppliedToDimensions"]
    out["RegionList"] = val.get("RegionList", [])
    return out


def _mp_struct(val: dict) -> dict:
    return {"Regions": [{**{k: v for k, v in r.items() if k != "Rectangle"},
                         **({"Rectangle": mp_rect_text(r["Rectangle"])} if "Rectangle" in r else {})}
                        for r in val.get("Regions", [])]}


def exiftool_args(changes: dict[str, Any]) -> list[str]:
    """The exiftool arguments that write `changes` (canonical values; None deletes)."""
    args = ["-E", "-charset", "iptc=UTF8", "-charset", "exif=UTF8"]
    for key, val in changes.items():
        f = BY_KEY[key]
        if val is None:
            args.append(f"-{key}=")
        elif f.kind in ("text", "langalt"):
            args.append(f"-{key}={_esc_text(val)}")
        elif f.kind == "list":
            args.append(f"-{key}=")
            args += [f"-{key}={_esc_text(x)}" for x in val]
        elif f.kind == "regions":
            args.append(f"-{key}={_esc_text(_struct(_mwg_struct(val)))}")
        elif f.kind == "mp_regions":
            args.append(f"-{key}={_esc_text(_struct(_mp_struct(val)))}")
    return args


_READ_ARGS = ["-j", "-G1", "-struct", "-a", "-n", "-charset", "iptc=UTF8", "-charset", "exif=UTF8",
              *[f"-{f.key}" for f in FIELDS], "-IPTC:All"]


# exiftool reads the stay-open stream like a -@ argfile (FilterArgfileLine in exiftool 12.57 and 13.x):
# lines split at "\n"; a trailing "\r" is dropped; leading white space is dropped; an empty line or one
# that starts with "#" is skipped; "-TAG = value" loses the blanks around "=" and one after it. An argument
# none of that would change goes as it is (so any bytes, e.g. a non-UTF-8 file name, pass untouched).
# Any other goes as "#[CSTR]" + a C string (exiftool >= 11.08): its reader turns only \\ \n \r \t \a \b
# \f \" back into characters, and since 12.26 it turns a "$" or "@" in such a line into "\$" / "\@",
# so an argument that needs a C string and holds "$" or "@" cannot be passed exactly at all: refused.
_ARG_FILTER = re.compile(rb"^(-[-:\w]+#?)\s*([-+<]?=) ?")
_PERL_SPACE = b" \t\n\r\x0b\x0c\x85\xa0"


def stay_open_line(arg: bytes) -> bytes:
    """The line that makes exiftool's argfile reader see exactly `arg`; BackendError if none does."""
    if b"\0" in arg:
        raise BackendError("it contains a NUL character")
    if (arg and arg[:1] not in _PERL_SPACE and not arg.startswith(b"#") and b"\n" not in arg and b"\r" not in arg
            and _ARG_FILTER.sub(rb"\1\2", arg) == arg):
        return arg
    if b"$" in arg or b"@" in arg:
        raise BackendError("it has a line break, a leading blank or '#' together with '$' or '@', "
                           "which exiftool cannot be given exactly")
    return b"#[CSTR]" + arg.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def file_argument(path: str | bytes | os.PathLike) -> bytes:
    """A file name as exiftool must get it: its exact bytes, absolute (so it can never start with "-"
    or U+2212, which exiftool also takes for a dash, and be taken for an option, nor be "-" = stdin)."""
    p = os.fsencode(path)
    if not os.path.isabs(p):
        p = os.path.join(os.getcwdb(), p)
    if p.startswith(b"-"):  # pragma: no cover - an absolute path never does
        raise BackendError("the file name starts with '-'")
    return p


class ExifTool:
    """One exiftool -stay_open process (started on first use, shared, thread-safe). Options go over as
    UTF-8, file names (`files=`) as their exact bytes (non-UTF-8 names work), every one through
    `stay_open_line`; output comes back as bytes."""

    def __init__(self, executable: str | None = None):
        self.executable = executable or exiftool_executable()
        self._et = None
        self._lock = threading.Lock()

    def _process(self):
        if self._et is None:
            if self.executable is None:
                raise BackendError("exiftool is not installed")
            import exiftool
            et = exiftool.ExifTool(executable=self.executable, common_args=[], encoding="utf-8")
            try:
                et.run()
            except Exception as exc:
                raise BackendError(f"cannot start exiftool ({self.executable}): {exc}") from None
            self._et = et
        return self._et

    def execute(self, *args: str, files: Iterable[str | bytes | os.PathLike] = ()) -> tuple[int, str, str]:
        """Run exiftool with the options `args` (ours; user text only as the value of a `-TAG=value`)
        on `files`. Refuses (BackendError) any argument that cannot reach exiftool exactly as given."""
        lines, files = [], list(files)
        for a in args:
            try:
                lines.append(stay_open_line(a.encode("utf-8")))
            except (BackendError, UnicodeEncodeError) as exc:
                raise BackendError(f"refused to pass an argument to exiftool: {exc}") from None
        if files and os.name == "nt":  # os.fsencode gives UTF-8 there; exiftool assumes the ANSI code page
            lines += [b"-charset", b"filename=utf8"]
        for f in files:
            try:
                lines.append(stay_open_line(file_argument(f)))
            except BackendError as exc:
                raise BackendError(f"exiftool cannot be given this file name safely ({exc}); "
                                   f"rename the file") from None
        with self._lock:
            et = self._process()
            try:
                out = et.execute(*lines, raw_bytes=True)
                status, err = et.last_status, et.last_stderr
            except Exception as exc:  # the process died, or PyExifTool could not talk to it
                self._close_locked()
                raise BackendError(f"exiftool failed: {exc}") from None
            dec = lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else (b or "")  # noqa: E731
            return int(status or 0), dec(out), dec(err)

    def _close_locked(self) -> None:
        et, self._et = self._et, None
        if et is not None:
            try:
                et.terminate()
            except Exception:
                pass

    def close(self) -> None:
        with self._lock:
            self._close_locked()


def _exiftool_error(err: str, out: str) -> str:
    lines = [ln.strip() for ln in (err or out).splitlines() if ln.strip()]
    msg = next((ln for ln in lines if ln.startswith("Error")), lines[0] if lines else "unknown error")
    return re.sub(r" - \S+$", "", msg)


def _ifd0_bytes(buf: bytes | None, fmt: str, tag: int) -> bytes | None:
    """The raw bytes of a BYTE/UNDEFINED tag in IFD0 of a JPEG's EXIF or a TIFF (None: not found)."""
    if not buf:
        return None
    base = tiff_start(buf, fmt) if fmt in ("JPEG", "TIFF") else None
    if base is None:
        return None
    bo = tiff_order(buf, base)
    ifd0 = ifd0_offset(buf, base, bo) if bo is not None else None
    entry = ifd_entry(buf, base, ifd0, tag, bo) if ifd0 is not None else None
    if entry is None or entry.type not in (1, 7):
        return None
    raw = entry.raw(buf, base)
    return raw if len(raw) == entry.count else None


class ExifToolEdit(Edit):
    def __init__(self, et: ExifTool, path: str, data: bytes | None, fmt: str, read_path: str | None = None):
        """`data`: the bytes to edit (None: the file at `path`); `read_path`: the file holding those
        bytes when it is not `path` (a new sidecar seeded from photo.xmp)."""
        self.et, self.path, self.data, self.fmt = et, path, data, fmt
        src = read_path or path
        if data is not None and fmt == "XMP" and not os.path.exists(src):
            self.old, self.has_iptc = {}, False  # a new, empty sidecar: nothing to read yet
            return
        rc, out, err = et.execute(*_READ_ARGS, files=[src])
        try:
            rows = json.loads(out, parse_float=str, parse_int=str) if out.strip() else []
        except ValueError:
            rows = []
        if not rows:
            raise BackendError(f"exiftool cannot read it: {_exiftool_error(err, out)}")
        row = rows[0]
        self.has_iptc = any(k.startswith("IPTC:") for k in row)
        if fmt in ("JPEG", "TIFF") and data is None and ("IFD0:XPComment" in row or self.has_iptc):
            with open(src, "rb") as f:
                data = f.read()
        if "IFD0:XPComment" in row:  # exiftool reads XP tags as UCS-2: an emoji comes back as "??"
            xp = _ifd0_bytes(data, fmt, 0x9C9C)
            if xp is not None:
                row["IFD0:XPComment"] = xp.decode("utf-16-le", "replace")
        if fmt == "JPEG" and self.has_iptc:  # our IIM keys decoded as pyexiv2 does (no "?" for Latin-1)
            raw = iim.ours_as_read(data)
            if raw is not None:
                row = {k: v for k, v in row.items() if k not in iim.DATASETS or k == "IPTC:CodedCharacterSet"}
                row.update(raw)
        self.old = canonical_dict({k: v for k, v in row.items() if k in BY_KEY})

    def render(self, changes: dict[str, Any], tmp: str) -> None:
        if self.data is not None:
            write_bytes_exclusive(tmp, self.data)
        else:
            shutil.copyfile(self.path, tmp)
        xp = changes.get("IFD0:XPComment")
        if xp and _bmp_stand_in(xp) != xp:  # exiftool writes XP tags as UCS-2 (U+1F600 -> U+F600)
            changes = {**changes, "IFD0:XPComment": _bmp_stand_in(xp)}
        rc, out, err = self.et.execute(*exiftool_args(changes), "-overwrite_original", files=[tmp])
        if rc != 0 or "1 image files updated" not in out:
            raise BackendError(f"exiftool could not write the metadata: {_exiftool_error(err, out)}")
        if xp and _bmp_stand_in(xp) != xp:
            with open(tmp, "rb") as f:
                new = f.read()
            stand_in = _bmp_stand_in(xp).encode("utf-16-le")
            if new.count(stand_in) != 1:
                raise BackendError("exiftool could not write the XPComment (characters outside the BMP)")
            with open(tmp, "wb") as f:
                f.write(new.replace(stand_in, xp.encode("utf-16-le")))
        return None


class ExifToolBackend:
    name = "exiftool"

    def __init__(self, et: ExifTool | None = None):
        self.et = et or ExifTool()

    def can_write(self, fmt: str) -> bool:
        return fmt in EMBED_FORMATS["exiftool"]

    def open(self, path: str, data: bytes | None, fmt: str, read_path: str | None = None) -> ExifToolEdit:
        return ExifToolEdit(self.et, path, data, fmt, read_path)

    def read(self, path: str, data: bytes | None, fmt: str) -> dict[str, Any]:
        return ExifToolEdit(self.et, path, None, fmt).old

    def close(self) -> None:
        self.et.close()

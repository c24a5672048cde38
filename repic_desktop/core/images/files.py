"""Reading files safely: opened read-only without blocking on FIFOs or devices, small files read whole,
big ones served through a bounded view of the open file."""
from __future__ import annotations

import os
import stat
from typing import BinaryIO, Union

from . import limits
from .limits import UnusableImage, _os_error


class _FileView:
    """The few bytes-like operations the structure checks use, served from an open file (big files)."""

    def __init__(self, f: BinaryIO, size: int):
        self.f, self.size = f, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key):
        if isinstance(key, int):
            if key < 0:
                key += self.size
            if not 0 <= key < self.size:
                raise IndexError(key)
            self.f.seek(key)
            return self.f.read(1)[0]
        start, stop, _ = key.indices(self.size)
        if stop <= start:
            return b""
        self.f.seek(start)
        return self.f.read(stop - start)

    def rfind(self, sub: bytes, start: int = 0) -> int:
        chunk = 1 << 20
        end = self.size
        while end > start:
            lo = max(start, end - chunk)
            block = self[lo:min(self.size, end + len(sub) - 1)]
            i = block.rfind(sub)
            if i >= 0:
                return lo + i
            end = lo
        return -1

    def endswith(self, suffix: bytes) -> bool:
        return self.size >= len(suffix) and self[self.size - len(suffix):] == suffix


Buf = Union[bytes, memoryview, _FileView]


def _open_readonly(path: str | bytes | os.PathLike) -> tuple[BinaryIO, os.stat_result]:
    """Open read-only without blocking on FIFOs/devices; only regular files are accepted."""
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if os.path.islink(path) and not os.path.exists(path):
            raise UnusableImage("broken symbolic link") from exc
        raise _os_error(exc) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a device, pipe or socket"
            raise UnusableImage(f"not a regular file ({kind})")
        return os.fdopen(fd, "rb", buffering=0), st
    except BaseException:
        os.close(fd)
        raise


def _read_small(path: str | bytes | os.PathLike) -> tuple[bytes, os.stat_result]:
    """The whole file (RAWs are parsed in memory: previews sit anywhere in them)."""
    f, st = _open_readonly(path)
    with f:
        if st.st_size > limits.MAX_READ_BYTES:
            raise UnusableImage(f"camera RAW of {st.st_size / 1024 ** 2:.0f} MB is larger than the "
                                f"{limits.MAX_READ_BYTES // 1024 ** 2} MB we read for a preview")
        try:
            data = f.read()
        except OSError as exc:
            raise _os_error(exc) from exc
        except MemoryError as exc:
            raise UnusableImage("not enough memory to read this file") from exc
    if len(data) != st.st_size:
        raise UnusableImage("file changed while it was being read (still being copied?)")
    if not data:
        raise UnusableImage("empty file (0 bytes)")
    return data, st

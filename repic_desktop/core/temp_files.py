"""The hidden temp files our atomic writes make beside a photo, and removing those a killed process left.

A metadata export builds the new photo as `.~repic-<host>-<pid>-<token>-<name>` next to it, then renames
it over the photo. A process killed in between leaves a full copy of the photo there. The name says which
process on which machine made it, so a leftover of a dead process on this machine can go at once (the
next export, import or app start); others (a running export, another machine on a shared folder, names of
older versions) only once they are an hour old. Plain file operations: the scanner and the GUI use this
without any metadata library.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import socket
import sys
import time

TEMP_PREFIX = ".~repic-"
STALE_TEMP_SECONDS = 3600


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:4]


def temp_path_for(path: str) -> str:
    d, name = os.path.split(os.path.abspath(path))
    return os.path.join(d, f"{TEMP_PREFIX}{_host_tag()}-{os.getpid()}-{secrets.token_hex(6)}-{name}")


def _temp_owner(name: str) -> tuple[str, int] | None:
    """(host tag, pid) embedded in one of our temp names; None for old-style names."""
    parts = name[len(TEMP_PREFIX):].split("-", 3)
    if len(parts) < 4 or len(parts[0]) != 4 or not parts[1].isdigit() or len(parts[2]) != 12:
        return None
    return parts[0], int(parts[1])


def _pid_alive(pid: int) -> bool:
    if sys.platform == "win32":
        return True  # os.kill would terminate it there; leftovers then wait for the age limit
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: alive, someone else's
    return True


def cleanup_stale_temps(folder: str, older_than: float = STALE_TEMP_SECONDS) -> int:
    """Remove our temp files left in `folder` by a killed export: at once when the writer's pid (in the
    name) is dead on this machine; otherwise (a running export, another machine, an old-style name)
    only once older than `older_than` seconds."""
    n = 0
    cutoff = time.time() - older_than
    host = _host_tag()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for e in entries:
        if e.name.startswith(TEMP_PREFIX):
            owner = _temp_owner(e.name)
            dead = owner is not None and owner[0] == host and owner[1] != os.getpid() and not _pid_alive(owner[1])
            try:
                if e.is_file(follow_symlinks=False) and (dead or e.stat(follow_symlinks=False).st_mtime < cutoff):
                    os.unlink(e.path)
                    n += 1
            except OSError:
                pass
    return n


def cleanup_library_folders(folders, cancel=lambda: False) -> int:
    """cleanup_stale_temps over every folder that holds library photos (what the app does at start)."""
    n = 0
    for folder in folders:
        if cancel():
            break
        n += cleanup_stale_temps(folder)
    return n

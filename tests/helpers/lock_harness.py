"""Does a library stay shared after something happened in the process holding it? (issue #13, item 1)

SQLite's POSIX locks belong to the process: any close() of any descriptor on the library's inode drops all
of them. The next process to close the library then thinks it is the last one, checkpoints and deletes the
-wal and -shm files the holder still uses, and the two processes silently diverge until the file is
malformed. `shared_problems()` replays that story after the suspect action: a second process writes and
closes, the holder writes, a third process reads and writes. No sleeps: each child runs to completion.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from repic_desktop.core.library import Library

REPO_ROOT = Path(__file__).resolve().parents[2]

_CHILD = r"""
import json, sys
from repic_desktop.core.library import Library
lib = Library(sys.argv[1], create=False)
if sys.argv[2]:
    lib.concepts.add(sys.argv[2], "person")
names = sorted(c.name for c in lib.concepts.all())
check = [r[0] for r in lib.conn.execute("PRAGMA integrity_check").fetchall()]
lib.close()
print(json.dumps({"names": names, "check": check}))
"""


def run_child(path: Path, add: str = "") -> dict:
    """Another process opens the library, optionally adds a concept, reads everything and closes."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), add], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def side_files(path: Path) -> dict[str, int | None]:
    """Inode of the -wal and -shm files (None when absent): deleted or replaced ones show up here."""
    found = {}
    for suffix in ("-wal", "-shm"):
        try:
            found[suffix] = os.stat(f"{path}{suffix}").st_ino
        except FileNotFoundError:
            found[suffix] = None
    return found


def holds_db_lock(path: Path) -> bool | None:
    """Whether this process still holds a POSIX lock on the library file (Linux /proc/locks; None elsewhere).
    A connection in WAL mode keeps a SHARED lock for as long as it is open."""
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    ino, pid = os.stat(path).st_ino, str(os.getpid())
    return any(ln.split()[4] == pid and ln.split()[5].endswith(f":{ino}") for ln in lines
               if len(ln.split()) > 5 and ln.split()[1] == "POSIX")


class Holder:
    """The long-lived process (this one, e.g. the GUI) with the library open and written to."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lib = Library(self.path)
        self.lib.concepts.add("Held", "person")
        self.files = side_files(self.path)
        assert None not in self.files.values()

    def close(self) -> None:
        self.lib.close()

    def shared_problems(self) -> list[str]:
        """Run after the suspect action. Empty when holder and other processes still share one library."""
        problems = []
        if holds_db_lock(self.path) is False:
            problems.append("the holder lost its lock on the library file")
        first = run_child(self.path, "Child")
        if side_files(self.path) != self.files:
            problems.append(f"-wal/-shm deleted or replaced under the holder: {self.files} -> "
                            f"{side_files(self.path)}")
        seen = {c.name for c in self.lib.concepts.all()}
        if not {"Held", "Child"} <= seen:
            problems.append(f"the holder does not see the child's write: {sorted(seen)}")
        self.lib.concepts.add("HeldAfter", "person")
        second = run_child(self.path, "Child2")
        if not {"Held", "Child", "HeldAfter"} <= set(second["names"]):
            problems.append(f"a new process does not see the holder's write: {second['names']}")
        seen = {c.name for c in self.lib.concepts.all()}
        if "Child2" not in seen:
            problems.append(f"the holder does not see the second child's write: {sorted(seen)}")
        for who, check in (("first child", first["check"]), ("second child", second["check"]),
                           ("holder", [r[0] for r in self.lib.conn.execute("PRAGMA integrity_check")])):
            if check != ["ok"]:
                problems.append(f"integrity_check in the {who}: {check[:3]}")
        return problems

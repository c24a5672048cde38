"""Folder import and incremental rescan.

`scan_folder(library, root)` walks `root`, imports new photos, updates changed ones, finds moved ones by
content hash and marks vanished ones missing. Decisions (why, not what):

- Two passes: a cheap walk (os.scandir, one stat per file, nothing opened) collects the candidates so
  progress has a total; then each candidate is read at most once (hash + probe from the same bytes,
  see images.probe_file). In the code: `_Walker` walks and stats (steps 1 and 2), `_Scan.read_and_write`
  reads each file once and writes in batches (steps 3 and 4), then `_Scan` settles swaps, photos gone
  missing and stale skips.
- Incremental: a file whose size and mtime_ns match the library is not opened. A file skipped before
  with the same size and mtime is reported skipped again with its stored reason, without opening it -
  except for reasons that depend on access rights or timing (permission denied, read errors), which
  are retried because chmod does not change mtime.
- Moves: a new path whose content hash equals a library photo whose old path is gone from disk (and
  is not part of this walk) takes over that photo (same id, captions, concepts). If the old path still
  exists it is a copy, i.e. a new photo.
- Swaps: photos exchanged by renames (a.jpg <-> b.jpg) leave every path in place with new content;
  when the changed files' new hashes are exactly each other's old ones, the photos follow their
  content (counted as moved), so captions, names and boxes never end up on another picture. Files
  whose size and mtime are both unchanged are not reopened, so a swap of two such files is not seen
  here (export still refuses them: it compares the content hash).
- Vanished photos are marked 'missing', never dropped; they come back to 'ok' when seen again. Nothing
  is marked missing when the walk was cancelled, below a folder that could not be listed, or when the
  root itself is unavailable (an unplugged drive raises ScanError instead of "losing" every photo).
  Nor below a folder that is empty (nothing but hidden entries) and unchanged since before its photos
  were imported (folder mtime older than their added_at): that is the mount point of an unplugged
  drive, the root or a subfolder alike - nothing can change it while the drive covers it. Its photos
  stay as they are and the report lists the folder with that reason. Deleting or moving the photos
  out changes the folder's mtime, so they are marked missing as before.
- Hidden entries (names starting with ".") are ignored, files and folders alike: .git, .thumbnails,
  .Trash-1000, macOS "._IMG_1234.jpg" AppleDouble files. So are NAS/OS thumbnail and trash folders
  (@eaDir, $RECYCLE.BIN, System Volume Information) and the library's own files folder. The root
  itself may be hidden: the user chose it.
- The library's database files (library.sqlite and its -wal, -shm, -journal) are never opened, whatever
  they are called or linked as: a file whose (st_dev, st_ino) is one of them is left out after its stat.
  Closing any descriptor of ours on the library drops the process's SQLite locks (Library.own_file_keys).
  Other databases' -wal/-shm/-journal files never have a photo extension, so they are never opened either.
- Symbolic links: folder links are followed (users link in folders that live elsewhere), loops are
  impossible because each folder is walked once, keyed by (st_dev, st_ino), and a link to the root or
  to a folder above it is never followed (it would pull in the whole disk); real folders are walked
  before linked ones, so a folder reachable both ways is stored under its real path. A link to a file
  is imported under the link's path, unless the same file (same st_dev/st_ino: a link or hard link) is
  also reached another way in this walk - then it is imported once, preferring the non-link path. A
  broken link with a photo extension is skipped with "broken symbolic link".
- Camera RAW files are imported like any photo, through their embedded JPEG preview (core/raw.py); a
  RAW without one is skipped with that reason. Their metadata goes to .xmp sidecars on export.
- Files are read by a few worker threads (PROBE_THREADS) a little ahead of the calling thread, which
  does all library work; results are applied in walk order, so reports and progress are deterministic.
- Library writes happen in batches (about 200 files or one second of work, whichever comes first),
  each in one short transaction taken *after* the batch's files were read, so the write lock is never
  held while the disk is busy and the GUI process never waits long for it. A batch is also committed
  when the next file's read is slow (BLOCKED_FLUSH_SECONDS), so a killed import keeps what it read.
- Nothing under `root` is written or modified: files are opened read-only, nothing is created there.
  The one exception: a hidden temp file our export left behind when it was killed (a full copy of a
  photo, named by core/temp_files.py with the writer's pid) is removed once that writer is dead, so
  an import cleans up after a crash even where no export runs again.
- Paths are bytes end to end (os.fsencode), so non-UTF-8 file names survive; reports show them as
  display strings (undecodable bytes replaced).
"""
from __future__ import annotations

import os
import stat
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Callable

from . import images
from .images import RAW_EXTENSIONS, SUPPORTED_EXTENSIONS, UnusableImage, is_transient_reason
from .library import Library, LibraryError, display_path
from .temp_files import TEMP_PREFIX, cleanup_stale_temps

BATCH_FILES = 200
BATCH_SECONDS = 1.0
# When the next file's read takes longer than this (a huge file, a slow share, a hostile file) the files
# read before it are committed first: a kill or a crash meanwhile must not lose them.
BLOCKED_FLUSH_SECONDS = 0.5
# Files are read, hashed and probed by a few worker threads (hashing and file reads release the GIL, so
# disk, hashing and the library writes on the calling thread overlap); results are consumed in walk
# order. A handful of threads suits SSDs and network shares without thrashing a spinning disk.
PROBE_THREADS = max(1, min(4, os.cpu_count() or 1))
PROBE_AHEAD = PROBE_THREADS * 4
# Below this size a file is probed on the calling thread: the hand-over costs more than it saves (header
# parsing holds the GIL), while for real photos (megabytes) hashing and reading dominate and overlap.
THREAD_MIN_BYTES = 512 * 1024
IGNORED_DIR_NAMES = frozenset({b"@eaDir", b"$RECYCLE.BIN", b"System Volume Information", b"lost+found"})

HELD_MARGIN_SECONDS = 5.0
_EXPORT_TEMP_PREFIX = TEMP_PREFIX.encode()
_SUPPORTED_B = frozenset(os.fsencode(e) for e in SUPPORTED_EXTENSIONS | RAW_EXTENSIONS)

ProgressFn = Callable[[int, int, str], None]
CancelFn = Callable[[], bool]


class ScanError(LibraryError):
    """The folder cannot be scanned at all (missing, not a folder, unreadable)."""


@dataclass
class ScanReport:
    root: str = ""
    added: int = 0
    unchanged: int = 0       # not reopened (size and mtime as stored), or re-read and byte-identical
    updated: int = 0         # re-read because size or mtime changed
    moved: int = 0           # found at a new path by content hash (photo id, captions and concepts kept)
    missing: int = 0         # newly marked missing this scan
    held: int = 0            # gone, but in an empty folder (unplugged drive?): not marked missing
    restored: int = 0        # missing before, present again at their path
    skipped: list[dict[str, str]] = field(default_factory=list)   # {"path", "reason"}
    total: int = 0           # candidate photo files found by the walk
    cancelled: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["seconds"] = round(self.seconds, 3)
        return d


@dataclass
class _Candidate:
    path: bytes
    size: int | None
    mtime_ns: int | None
    error: str | None = None     # known unusable from the walk alone (broken link, not a regular file)


@dataclass
class _Walk:
    candidates: list[_Candidate] = field(default_factory=list)
    unreadable_dirs: list[bytes] = field(default_factory=list)
    dir_errors: list[tuple[bytes, str]] = field(default_factory=list)
    empty_dirs: dict[bytes, float] = field(default_factory=dict)   # nothing visible in them -> their mtime
    temp_dirs: set[bytes] = field(default_factory=set)   # folders holding our export's temp files
    cancelled: bool = False


def _dir_key(path: bytes, st: os.stat_result):
    return (st.st_dev, st.st_ino) if st.st_ino else os.path.realpath(path)


def _oserror_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)


class _Walker:
    """Steps 1 and 2: walk the folders and stat each candidate file once, opening nothing (see the
    module docstring for hidden entries, links, hard links and the library's own files)."""

    def __init__(self, root: bytes, exclude: set, never_open: frozenset):
        self.root, self.never_open = root, never_open
        self.out = _Walk()
        self.visited = set(exclude)
        self.visited.add(_dir_key(root, os.stat(root)))
        self.real_root = os.path.realpath(root).rstrip(b"/") + b"/"
        self.real_dirs: list[bytes] = [root]
        self.linked_dirs: list[tuple[bytes, object]] = []   # walked after every real folder
        self.files: dict[object, int] = {}                  # (dev, ino) -> index in candidates
        self.linked_file: list[bool] = []

    def run(self, cancel: CancelFn | None) -> _Walk:
        while self.real_dirs or self.linked_dirs:
            if cancel is not None and cancel():
                self.out.cancelled = True
                return self.out
            d = self._next_folder()
            if d is None:
                continue
            entries = self._list(d)
            if entries is None:
                continue
            subdirs: list[bytes] = []
            for e in entries:
                self._visit(d, e, subdirs)
            self.real_dirs.extend(reversed(subdirs))  # depth-first, in name order
        return self.out

    def _next_folder(self) -> bytes | None:
        """Real folders first; then linked ones, each unless its target was walked already."""
        if self.real_dirs:
            return self.real_dirs.pop()
        d, key = self.linked_dirs.pop(0)
        if key in self.visited:
            return None
        self.visited.add(key)
        return d

    def _list(self, d: bytes) -> list[os.DirEntry] | None:
        """The folder's entries in name order, or None when it cannot be listed; notes empty folders."""
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if d == self.root:
                raise ScanError(f"cannot read folder {display_path(self.root)}: {_oserror_reason(exc)}") from exc
            self.out.unreadable_dirs.append(d)
            self.out.dir_errors.append((d, f"cannot read folder: {_oserror_reason(exc)}"))
            return None
        if not any(not e.name.startswith(b".") for e in entries):
            try:
                self.out.empty_dirs[d] = os.stat(d).st_mtime
            except OSError:
                pass
        return entries

    def _visit(self, d: bytes, e: os.DirEntry, subdirs: list[bytes]) -> None:
        name = e.name
        if name.startswith(b"."):
            if name.startswith(_EXPORT_TEMP_PREFIX):
                self.out.temp_dirs.add(d)
            return
        try:
            is_dir = e.is_dir()          # follows links; False for a broken link
            is_link = e.is_symlink()
        except OSError:
            is_dir, is_link = False, True
        if is_dir:
            if name not in IGNORED_DIR_NAMES:
                self._add_folder(e, is_link, subdirs)
            return
        dot = name.rfind(b".")
        ext = name[dot:].lower() if dot > 0 else b""
        if ext in _SUPPORTED_B:
            self._add_file(e, is_link)

    def _add_folder(self, e: os.DirEntry, is_link: bool, subdirs: list[bytes]) -> None:
        try:
            st = e.stat()
        except OSError as exc:
            self.out.dir_errors.append((e.path, f"cannot read folder: {_oserror_reason(exc)}"))
            return
        key = _dir_key(e.path, st)
        if is_link:
            target = os.path.realpath(e.path).rstrip(b"/") + b"/"
            if not self.real_root.startswith(target):  # a link to the root or above it is a loop
                self.linked_dirs.append((e.path, key))
        elif key not in self.visited:
            self.visited.add(key)
            subdirs.append(e.path)

    def _add_file(self, e: os.DirEntry, is_link: bool) -> None:
        try:
            st = e.stat()
        except OSError as exc:
            reason = "broken symbolic link" if is_link else f"cannot read file: {_oserror_reason(exc)}"
            self._append(_Candidate(e.path, None, None, reason), is_link)
            return
        if (st.st_dev, st.st_ino) in self.never_open:  # the library itself, under a photo's name or link
            return
        if not stat.S_ISREG(st.st_mode):
            self._append(_Candidate(e.path, None, None, "not a regular file (a device, pipe or socket)"), is_link)
            return
        cand = _Candidate(e.path, st.st_size, st.st_mtime_ns)
        if st.st_ino:
            key = (st.st_dev, st.st_ino)
            prev = self.files.get(key)
            if prev is not None:
                if self.linked_file[prev] and not is_link:   # the real path wins over a link to it
                    self.out.candidates[prev] = cand
                    self.linked_file[prev] = False
                return
            self.files[key] = len(self.out.candidates)
        self._append(cand, is_link)

    def _append(self, cand: _Candidate, is_link: bool) -> None:
        self.out.candidates.append(cand)
        self.linked_file.append(is_link)


def _walk(root: bytes, cancel: CancelFn | None, exclude: set, never_open: frozenset = frozenset()) -> _Walk:
    return _Walker(root, exclude, never_open).run(cancel)


def _probe(path: bytes) -> tuple[str, object]:
    """Runs in a worker thread: read, hash and probe one file; never raises."""
    try:
        return "probed", images.probe_file(path)
    except UnusableImage as exc:
        return "skip", exc.reason
    except Exception as exc:  # a bug or an exotic failure must not end the whole import
        return "skip", f"cannot read file: unexpected {type(exc).__name__}: {exc}"


def _under_any(path: bytes, folders: list[bytes]) -> bool:
    return any(path.startswith(f.rstrip(b"/") + b"/") for f in folders)


def scan_folder(library: Library, root: str | os.PathLike | bytes, *, progress: ProgressFn | None = None,
                cancel: CancelFn | None = None) -> ScanReport:
    """Import / rescan every photo below `root` into `library`. See the module docstring.

    progress(done, total, path) is called on the calling thread after each file (total is known from
    the start: the folder walk runs first; when done == total everything is already committed).
    cancel() is polled between files and folders; returning True stops cleanly - what was imported
    stays imported, and nothing is marked missing on the strength of an unfinished walk.
    Raises ScanError when `root` is missing, not a folder or unreadable."""
    t0 = time.perf_counter()
    root_b = os.path.abspath(os.fsencode(os.fspath(root)) if not isinstance(root, bytes) else root)
    report = ScanReport(root=display_path(root_b))
    _check_root(root_b, report.root)
    walk = _walk(root_b, cancel, _library_folders(library), frozenset(library.own_file_keys()))
    if walk.cancelled:
        report.cancelled = True
        report.seconds = time.perf_counter() - t0
        return report
    for d in sorted(walk.temp_dirs):
        cleanup_stale_temps(os.fsdecode(d))
    scan = _Scan(library, root_b, walk, report)
    scan.record_folder_errors()
    scan.read_and_write(progress, cancel)
    if scan.swaps:
        scan.resolve_swaps()
    scan.mark_gone()
    scan.forget_stale_skips()
    report.seconds = time.perf_counter() - t0
    return report


def _check_root(root_b: bytes, shown: str) -> None:
    try:
        st = os.stat(root_b)
    except FileNotFoundError as exc:
        raise ScanError(f"folder not found: {shown}") from exc
    except OSError as exc:
        raise ScanError(f"cannot open folder {shown}: {_oserror_reason(exc)}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise ScanError(f"not a folder: {shown}")


def _library_folders(library: Library) -> set:
    """Folder keys the walk never enters: the library's own files (copied reference photos)."""
    exclude = set()
    try:
        data_dir = os.fsencode(library.data_dir)
        exclude.add(_dir_key(data_dir, os.stat(data_dir)))
    except OSError:
        pass
    return exclude


def _swap_cycle(swaps: list) -> tuple[dict, dict, set]:
    """Paths whose new content is another changed path's old photo, closed under exchange (every photo
    that loses its path gets another): (path -> its photo, path -> photo whose content it holds, cycle)."""
    owner = {path: pid for path, pid, _o, _f in swaps}
    content_of = {}   # path -> photo whose content it now holds
    for path, _pid, others, _f in swaps:
        y = next((p.id for p in others if p.path_bytes in owner), None)
        if y is not None:
            content_of[path] = y
    cycle = set(content_of)
    while True:
        owners = {owner[p] for p in cycle}
        keep = {p for p in cycle if content_of[p] in owners}
        keep = {p for p in keep if owner[p] in {content_of[q] for q in keep}}
        if keep == cycle:
            break
        cycle = keep
    if len({content_of[p] for p in cycle}) != len(cycle):
        cycle = set()   # two paths claim one photo: not a plain exchange
    return owner, content_of, cycle


class _Scan:
    """One scan after its walk: steps 3 and 4 (read each file at most once, write in batches), then
    swaps, photos gone missing and skips no longer found."""

    def __init__(self, library: Library, root_b: bytes, walk: _Walk, report: ScanReport):
        self.library, self.walk, self.report = library, walk, report
        self.candidates = walk.candidates
        report.total = len(self.candidates)
        self.candidate_paths = {c.path for c in self.candidates}
        self.states = library.photos.file_states(root_b)      # path -> (id, size, mtime_ns, status)
        self.skips = library.photos.skip_states(root_b)       # path -> (reason, size, mtime_ns)
        self.seen_ids: set[int] = set()        # photos accounted for in this scan (present or claimed)
        self.skipped_paths: set[bytes] = set()
        self.swaps: list = []   # (path, photo id there, other photos with its new hash, new file facts)

    def record_folder_errors(self) -> None:
        for d, reason in self.walk.dir_errors:
            self.report.skipped.append({"path": display_path(d), "reason": reason})
            self.skipped_paths.add(d)
        if self.walk.dir_errors:
            with self.library.transaction():
                for d, reason in self.walk.dir_errors:
                    self.library.photos.record_skip(d, reason)

    # ---------------------------------------------------------------------- steps 3 and 4: read, write

    def plan(self, c: _Candidate, pool: ThreadPoolExecutor):
        """What to do with one candidate, deciding without I/O where the library already knows."""
        state = self.states.get(c.path)
        if c.error:
            return ("skip", c, c.error, state)
        if state and state[1] == c.size and state[2] == c.mtime_ns:
            return ("same", c, None, state)
        sk = self.skips.get(c.path)
        if sk and sk[1] == c.size and sk[2] == c.mtime_ns and not is_transient_reason(sk[0]):
            return ("skip-again", c, sk[0], state)
        if c.size is not None and c.size >= THREAD_MIN_BYTES:
            return ("probe", c, pool.submit(_probe, c.path), state)
        return ("probe", c, None, state)  # small: cheaper to read right here than to hand over

    def read_and_write(self, progress: ProgressFn | None, cancel: CancelFn | None) -> None:
        """Reads run a little ahead on worker threads; results are written in walk order, in batches."""
        total = self.report.total
        batch: list = []
        last_flush = time.monotonic()
        done = 0
        pending: deque = deque()
        todo = iter(self.candidates)
        with ThreadPoolExecutor(max_workers=PROBE_THREADS, thread_name_prefix="repic-scan") as pool:
            try:
                for c in islice(todo, PROBE_AHEAD):
                    pending.append(self.plan(c, pool))
                while pending:
                    if cancel is not None and cancel():
                        self.report.cancelled = True
                        break
                    kind, c, payload, state = pending.popleft()
                    if kind == "probe":
                        if payload is not None and batch and not wait_futures([payload], BLOCKED_FLUSH_SECONDS)[0]:
                            self.apply(batch)  # the next read is slow: what was read before it is kept
                            batch = []
                            last_flush = time.monotonic()
                        kind, payload = payload.result() if payload is not None else _probe(c.path)
                    batch.append((kind, c, payload, state))
                    nxt = next(todo, None)
                    if nxt is not None:
                        pending.append(self.plan(nxt, pool))
                    done += 1
                    if len(batch) >= BATCH_FILES or done == total or time.monotonic() - last_flush >= BATCH_SECONDS:
                        self.apply(batch)
                        batch = []
                        last_flush = time.monotonic()
                    if progress is not None:
                        progress(done, total, display_path(c.path))
            finally:
                for entry in pending:  # cancelled (or failed): drop reads not yet started
                    if entry[0] == "probe" and entry[2] is not None:
                        entry[2].cancel()
        if batch:  # cancelled with reads not yet written: keep them
            self.apply(batch)

    @staticmethod
    def _needs_write(kind: str, state) -> bool:
        if kind in ("skip", "probed"):
            return True
        if kind == "same":
            return state[3] == "missing"
        return state is not None and state[3] == "ok"  # skip-again of a photo still marked ok

    def apply(self, batch: list) -> None:
        """Write one batch in one short transaction (none at all for an unchanged stretch)."""
        if not any(self._needs_write(kind, state) for kind, _, _, state in batch):
            for entry in batch:  # an unchanged stretch: nothing to write, no write lock taken
                self._apply_one(*entry, None, None)
            return
        new_hashes = [e[2].content_hash for e in batch if e[0] == "probed"
                      and (e[3] is None or e[3][3] == "ok")]
        with self.library.transaction():
            by_hash = self.library.photos.by_hashes(new_hashes) if new_hashes else {}
            adds: list[dict] = []
            for entry in batch:
                self._apply_one(*entry, by_hash, adds)
            if adds:
                self.library.photos.add_many(adds)

    def _apply_one(self, kind, c: _Candidate, payload, state, by_hash, adds) -> None:
        if kind == "same":
            self._apply_same(state)
        elif kind in ("skip", "skip-again"):
            self._apply_skip(kind, c, payload, state)
        else:  # probed
            self._apply_probed(c, payload, state, by_hash, adds)

    def _apply_same(self, state) -> None:
        self.seen_ids.add(state[0])
        if state[3] == "missing":
            self.library.photos.update(state[0], status="ok")
            self.report.restored += 1
        else:
            self.report.unchanged += 1

    def _apply_skip(self, kind: str, c: _Candidate, reason: str, state) -> None:
        self.report.skipped.append({"path": display_path(c.path), "reason": reason})
        self.skipped_paths.add(c.path)
        if kind == "skip":
            self.library.photos.record_skip(c.path, reason, size=c.size, mtime_ns=c.mtime_ns)
        if state:  # a photo we had is now unusable at its path: keep it (and its captions), missing
            self.seen_ids.add(state[0])
            if state[3] == "ok":
                self.library.photos.mark_missing([state[0]])
                self.report.missing += 1

    def _apply_probed(self, c: _Candidate, pf: images.ProbedFile, state, by_hash, adds) -> None:
        info = pf.info
        fields = dict(size=pf.size, mtime_ns=pf.mtime_ns, content_hash=pf.content_hash, format=info.format,
                      width=info.width, height=info.height, orientation=info.orientation,
                      date_taken=info.date_taken)
        if state:
            self.seen_ids.add(state[0])
            others = [p for p in by_hash.get(pf.content_hash, ()) if p.id != state[0]]
            if state[3] == "ok" and others:   # another photo's content here: a swap? (decided at the end)
                self.swaps.append((c.path, state[0], others, fields))
                return
            self.library.photos.update(state[0], path=c.path, status="ok", **fields)
            if state[3] == "missing":
                self.report.restored += 1
            else:
                self.report.updated += 1
            return
        # A new path: a photo whose old path is gone takes it over (a move), else it is new. Rows
        # added earlier in this batch are never move targets: their files exist.
        target = self._move_target(by_hash.get(pf.content_hash, ()))
        if target is not None:
            self.seen_ids.add(target)
            self.library.photos.update(target, path=c.path, status="ok", **fields)
            self.report.moved += 1
        else:
            adds.append({"path": c.path, **fields})
            self.report.added += 1

    def _move_target(self, matches) -> int | None:
        for p in matches:
            if p.id in self.seen_ids or p.path_bytes in self.candidate_paths:
                continue
            if not os.path.exists(p.fs_path):
                return p.id
        return None

    # ---------------------------------------------------------------------- after the writes

    def resolve_swaps(self) -> None:
        """Photos exchanged by renames follow their content; other changed files are updated in place."""
        owner, content_of, cycle = _swap_cycle(self.swaps)
        photos, report = self.library.photos, self.report
        with self.library.transaction():
            for path in cycle:   # free the paths first (they are unique)
                photos.update(owner[path], path=b"\0swap\0" + str(owner[path]).encode())
            for path, pid, _others, fields in self.swaps:
                if path in cycle:
                    photos.update(content_of[path], path=path, status="ok", **fields)
                    report.moved += 1
                elif not report.cancelled:   # a copy over it, or an edit: as any changed file
                    photos.update(pid, path=path, status="ok", **fields)
                    report.updated += 1

    def mark_gone(self) -> None:
        """What the walk did not find is missing (the walk itself completed, even if processing was
        cancelled), except below a folder that looks like an unplugged drive's mount point."""
        unreadable = self.walk.unreadable_dirs
        gone = [(pb, pid) for pb, (pid, _size, _mtime, status) in self.states.items()
                if status == "ok" and pid not in self.seen_ids and pb not in self.candidate_paths
                and not _under_any(pb, unreadable)]
        held = self._held_folders(gone)
        if held:
            held_dirs = list(held)
            gone = [(pb, pid) for pb, pid in gone if not _under_any(pb, held_dirs)]
            for d, n in held.items():
                self.report.held += n
                self.report.skipped.append({"path": display_path(d), "reason": f"the folder is empty or not "
                                            f"mounted (unplugged drive?): its {n} photo(s) were not marked missing"})
                self.skipped_paths.add(d)
        ids = [pid for _pb, pid in gone]
        if ids:
            self.library.photos.mark_missing(ids)
            self.report.missing += len(ids)

    def _held_folders(self, gone: list[tuple[bytes, int]]) -> dict[bytes, int]:
        """Empty folders, unchanged since before their photos were imported -> how many photos they hold."""
        empty = self.walk.empty_dirs
        under_empty: dict[bytes, list[int]] = {}
        outermost_first = sorted(empty, key=len)   # the outermost empty folder counts
        for pb, pid in gone:
            top = next((d for d in outermost_first if _under_any(pb, [d])), None)
            if top is not None:
                under_empty.setdefault(top, []).append(pid)
        held: dict[bytes, int] = {}
        if under_empty:
            added = self.library.photos.added_at([pid for ids in under_empty.values() for pid in ids])
            for d, ids in under_empty.items():
                # a margin: file times come from a coarse clock (and FAT's are 2 s); a real mount point is
                # far older than the import of the drive it covered
                if empty[d] < min(added.get(i, 0.0) for i in ids) - HELD_MARGIN_SECONDS:
                    held[d] = len(ids)
        return held

    def forget_stale_skips(self) -> None:
        stale = [pb for pb in self.skips if pb not in self.candidate_paths and pb not in self.skipped_paths
                 and not _under_any(pb, self.walk.unreadable_dirs)]
        if stale:
            self.library.photos.forget_skips(stale)

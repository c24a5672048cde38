"""GUI latency benchmark (not a test): does the event loop stay responsive on a big library while captioning?

A probe QTimer fires every 5 ms on the GUI thread; the longest gap between two firings, minus the
interval, is the longest *stall* (the time a click or a repaint would have waited). Measured while:

  open      the album browser opens a generated 100,000-photo library (time until the grid is filled)
  scroll    the thumbnail grid (a QListView) scrolls from the top to the bottom of the 100k photos
  caption   a captioning run with the demo model (model worker thread) while the grid just sits there
  both      the grid scrolls while a captioning run is going
  (one-offs, reported apart: loading the model, "Unload model")

The grid is part A's `gui.browser.Browser` (PhotoListModel: ids in memory, rows paged in by primary key,
thumbnails on a thread pool) when it exists, else a minimal QAbstractListModel over
`lib.photos.list` pages (the output says which). Photos are inserted with plain SQL (`executemany`)
for speed; their files are hard links to a few hundred generated 320x240 JPEGs, so thumbnails are real.

Goals (issue 5): max stall <= 50 ms in every phase; opening the 100k library <= 2 s.

    python bench/gui_latency.py                   # 100,000 photos, 40 captions
    python bench/gui_latency.py --photos 20000    # quicker
Runs offscreen unless a display is set (QT_QPA_PLATFORM=offscreen is the default here).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

GOAL_STALL_MS = 50.0
GOAL_OPEN_S = 2.0




def check_binding() -> None:
    """Refuse to run on PySide6 6.12.0 + Python 3.11 (it corrupts None/True reference counts and aborts
    the interpreter during a long scroll); the app refuses the same way (gui.app.check_binding)."""
    try:
        from repic_desktop.gui.app import check_binding as app_check
    except ImportError:
        return
    app_check()


# ----------------------------------------------------------------------------------------- the probe

class StallProbe:
    """Fires every `interval_ms`; records the gaps between firings while running."""

    def __init__(self, interval_ms: int = 5):
        from PySide6.QtCore import QTimer, Qt

        self.interval = interval_ms / 1000
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []
        self._last: float | None = None

    def start(self) -> None:
        self.gaps, self._last = [], time.perf_counter()
        self.timer.start()

    def stop(self) -> dict[str, float]:
        self.timer.stop()
        self._tick()
        stalls = sorted(max(0.0, g - self.interval) * 1000 for g in self.gaps) or [0.0]
        return {"max_ms": stalls[-1], "p99_ms": stalls[min(len(stalls) - 1, int(len(stalls) * 0.99))],
                "median_ms": statistics.median(stalls), "ticks": len(stalls)}

    def _tick(self) -> None:
        t = time.perf_counter()
        if self._last is not None:
            self.gaps.append(t - self._last)
        self._last = t


def spin_until(app, cond, timeout_s: float) -> bool:
    from PySide6.QtCore import QEventLoop

    end = time.perf_counter() + timeout_s
    while not cond():
        if time.perf_counter() > end:
            return False
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 10)
    return True


def spin_for(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    spin_until(app, lambda: time.perf_counter() >= end, seconds + 1)


# ------------------------------------------------------------------------------------ the library

def make_library(root: Path, n_photos: int, n_files: int = 300) -> tuple[Path, list[int]]:
    """A library of `n_photos` photos in 100 folders (hard links to `n_files` JPEGs), a third captioned,
    two people with reference photos, every tenth photo tagged. Returns (library path, photo ids)."""
    from PIL import Image, ImageDraw

    from repic_desktop.core.library import Library
    from repic_desktop.core.stores.photos import PhotoStore

    src = root / "sources"
    src.mkdir(parents=True)
    sources = []
    for i in range(n_files):
        im = Image.new("RGB", (320, 240), ((i * 37) % 255, (i * 91) % 255, (i * 53) % 255))
        d = ImageDraw.Draw(im)
        d.ellipse([40 + i % 200, 40, 120 + i % 200, 120], fill=(250, 240, 200))
        d.rectangle([0, 180, 320, 240], fill=((i * 11) % 255, 140, 90))
        p = src / f"s{i}.jpg"
        im.save(p, quality=80)
        sources.append(p)
    album = root / "album"
    lib_path = root / "library.sqlite"
    rows = []
    per_folder = max(1, n_photos // 100)
    for i in range(n_photos):
        folder = album / f"{2000 + i // per_folder // 12:04d}-{i // per_folder % 12 + 1:02d}"
        if i % per_folder == 0:
            folder.mkdir(parents=True, exist_ok=True)
        p = folder / f"IMG_{i:06d}.jpg"
        s = sources[i % n_files]
        try:
            os.link(s, p)
        except OSError:
            shutil.copyfile(s, p)
        rows.append(PhotoStore._insert_row(p, size=s.stat().st_size, mtime_ns=0, content_hash=f"c{i % n_files:05d}",
                                          format="JPEG", width=320, height=240))
    with Library(lib_path) as lib:
        with lib.transaction():
            lib.conn.executemany(PhotoStore._INSERT, rows)
        ids = [r[0] for r in lib.conn.execute("SELECT id FROM photos ORDER BY id")]
        lib.concepts.add("Anya", "person", "A girl with pink hair.")
        lib.concepts.add_ref("Anya", photo_id=ids[0])
        lib.concepts.add("Bond", "pet", "A big white dog.")
        lib.concepts.add_ref("Bond", photo_id=ids[1])
        t = time.time()
        with lib.transaction():
            lib.conn.executemany("INSERT INTO photo_concepts (photo_id, concept_id, source, created_at)"
                                 " VALUES (?, 1, 'manual', ?)", [(pid, t) for pid in ids[::10]])
            words = ["beach", "park", "garden", "birthday", "snow", "kitchen", "lake", "forest"]
            lib.conn.executemany("INSERT INTO captions (photo_id, text, created_at) VALUES (?, ?, ?)",
                                 [(pid, f"<Anya> at the {words[pid % 8]} with a kite.", t) for pid in ids[::3]])
            lib.conn.execute("UPDATE photos SET current_caption_id = (SELECT max(id) FROM captions c"
                             " WHERE c.photo_id = photos.id)")
    return lib_path, ids


# ----------------------------------------------------------------------------------------- the grid

def make_grid(lib_path: Path, parent):
    """(widget, view, ready(), refresh_photo(pid), description)."""
    from repic_desktop.core.library import Library

    lib = Library(lib_path)
    try:
        from repic_desktop.gui.pages.browser import Browser
        from repic_desktop.gui.tasks import TaskRunner
        from repic_desktop.gui.widgets.thumbnails import ThumbnailLoader
        from repic_desktop.core.thumbnails import ThumbnailCache
    except ImportError:
        return make_minimal_grid(lib, parent)
    tasks = TaskRunner(parent)
    loader = ThumbnailLoader(ThumbnailCache(Path(os.environ["REPIC_CACHE_DIR"]) / "thumbnails"), parent=parent)
    browser = Browser(lib, tasks, loader, parent)
    state = {"loaded": False}
    browser.loaded.connect(lambda: state.__setitem__("loaded", True))
    return browser, browser.view, lambda: state["loaded"], browser.refresh_photo, \
        "part A's album browser (gui.browser.Browser: folder tree + PhotoListModel grid, thumbnails in a pool)"


def make_minimal_grid(lib, parent):
    from PySide6.QtCore import QAbstractListModel, QModelIndex, QSize, Qt
    from PySide6.QtWidgets import QListView

    class Model(QAbstractListModel):
        PAGE = 256

        def __init__(self):
            super().__init__()
            self.n = lib.counts()["photos"]
            self.pages: dict[int, list] = {}

        def rowCount(self, parent=QModelIndex()):
            return self.n

        def data(self, index, role=Qt.ItemDataRole.DisplayRole):
            if role != Qt.ItemDataRole.DisplayRole:
                return None
            page = index.row() // self.PAGE
            if page not in self.pages:
                self.pages[page] = lib.photos.list(limit=self.PAGE, offset=page * self.PAGE)
            rows = self.pages[page]
            i = index.row() - page * self.PAGE
            return rows[i].filename if i < len(rows) else None

    view = QListView(parent)
    view.setViewMode(QListView.ViewMode.IconMode)
    view.setUniformItemSizes(True)
    view.setGridSize(QSize(160, 160))
    view.setModel(Model())
    return view, view, lambda: True, lambda pid: None, "a minimal QAbstractListModel over lib.photos.list pages"


# ------------------------------------------------------------------------------------------ phases

def scroll_through(app, view, seconds: float) -> None:
    """Scroll from the top to the bottom in `seconds` (one step per frame, ~60 steps a second)."""
    from PySide6.QtCore import QTimer

    bar = view.verticalScrollBar()
    bar.setValue(0)
    steps = max(1, int(seconds * 60))
    top, bottom = bar.minimum(), bar.maximum()
    state = {"i": 0}
    timer = QTimer()
    timer.setInterval(16)

    def step():
        state["i"] += 1
        bar.setValue(top + (bottom - top) * state["i"] // steps)
        if state["i"] >= steps:
            timer.stop()

    timer.timeout.connect(step)
    timer.start()
    spin_until(app, lambda: not timer.isActive(), seconds * 10 + 30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=100_000)
    ap.add_argument("--caption-photos", type=int, default=40)
    ap.add_argument("--scroll-seconds", type=float, default=8.0)
    ap.add_argument("--keep", action="store_true", help="keep the generated library")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="repic-gui-latency-"))
    for var, sub in [("REPIC_CONFIG_DIR", "config"), ("REPIC_CACHE_DIR", "cache"), ("XDG_DATA_HOME", "data")]:
        os.environ[var] = str(root / sub)
    try:
        t = time.perf_counter()
        lib_path, ids = make_library(root / "lib", args.photos)
        print(f"generated a library of {args.photos:,} photos in {time.perf_counter() - t:.1f} s")

        from PySide6.QtCore import Qt
        from PySide6.QtWidgets import QApplication, QMainWindow

        app = QApplication.instance() or QApplication([sys.argv[0]])
        app.setStyle("Fusion")
        check_binding()
        from repic_desktop.captioning.demo_model import build_demo_model
        from repic_desktop.core.settings import Settings
        from repic_desktop.gui.captioning.model_worker import demo_model_dir

        build_demo_model(demo_model_dir())  # outside the measured phases (the app does this in a worker)
        s = Settings()
        s.model.source = str(demo_model_dir())
        s.extra.update(batch_size=4, max_new_tokens=32)
        s.save()

        win = QMainWindow()
        win.resize(1280, 800)
        probe = StallProbe()
        results: dict[str, dict] = {}

        # open -------------------------------------------------------------------------------------
        win.show()
        spin_for(app, 0.3)
        try:  # imports are not "opening the library": done before the clock starts
            import repic_desktop.gui.pages.browser  # noqa: F401
        except ImportError:
            pass
        probe.start()
        t0 = time.perf_counter()
        widget, view, ready, refresh_photo, grid_text = make_grid(lib_path, win)
        win.setCentralWidget(widget)
        ok = spin_until(app, lambda: ready() and view.model().rowCount() > 0, 60)
        open_s = time.perf_counter() - t0
        spin_for(app, 0.5)  # first thumbnails land
        results["open"] = probe.stop()
        rows = view.model().rowCount()
        print(f"grid: {grid_text}")
        print(f"open: {rows:,} rows shown in {open_s:.2f} s" + ("" if ok else " (TIMED OUT)"))

        # scroll -----------------------------------------------------------------------------------
        probe.start()
        scroll_through(app, view, args.scroll_seconds)
        results["scroll"] = probe.stop()

        # caption ----------------------------------------------------------------------------------
        from repic_desktop.gui.captioning.controller import CaptioningController

        ctrl = CaptioningController(lib_path)
        dock = ctrl.queue_dock()
        win.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        ctrl.caption_finished.connect(lambda pid, cid: refresh_photo(pid))
        spin_until(app, lambda: ctrl.jobs_loaded and ctrl.gpu_info is not None, 120)

        def run_job(photo_ids, scroll: bool) -> tuple[int, float]:
            done = []
            created = []
            ctrl.job_created.connect(created.append)
            ctrl.caption_finished.connect(lambda pid, cid: done.append(pid))
            ctrl.caption_photos(photo_ids, win)
            ctrl.active_dialog.accept()
            spin_until(app, lambda: bool(created), 60)
            job_id = created[0]
            t = time.perf_counter()
            if scroll:
                while ctrl.jobs[job_id].active:
                    scroll_through(app, view, 2.0)
            else:
                spin_until(app, lambda: not ctrl.jobs[job_id].active, 600)
            return len(done), time.perf_counter() - t

        # warm-up: load the model (measured separately: the worker imports torch and loads)
        probe.start()
        ctrl.load_model()
        spin_until(app, lambda: ctrl.model_state == "loaded", 300)
        results["model load"] = probe.stop()

        uncaptioned = [pid for pid in ids if pid % 3 != 1]  # every third photo has a caption (ids[::3])
        batch1 = uncaptioned[100:100 + args.caption_photos]
        probe.start()
        n, secs = run_job(batch1, scroll=False)
        results["caption"] = probe.stop()
        print(f"caption: {n} photos captioned in {secs:.1f} s ({n / secs * 60:.0f} photos/min, demo model)")

        batch2 = uncaptioned[1000:1000 + args.caption_photos]
        probe.start()
        n2, secs2 = run_job(batch2, scroll=True)
        results["both"] = probe.stop()
        print(f"both: {n2} photos captioned while scrolling, in {secs2:.1f} s")
        probe.start()
        ctrl.unload_model()
        spin_until(app, lambda: ctrl.model_state == "unloaded", 120)
        results["unload"] = probe.stop()
        ctrl.shutdown()

        import torch

        print(f"\nmachine: {os.cpu_count()} CPU cores, torch {torch.__version__}, "
              f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU (demo model on CPU)'}"
              f", Qt platform {app.platformName()}")
        print(f"{'phase':<12} {'max stall':>10} {'p99':>8} {'median':>8} {'ticks':>7}")
        worst = 0.0
        for name, r in results.items():
            print(f"{name:<12} {r['max_ms']:>8.1f}ms {r['p99_ms']:>6.1f}ms {r['median_ms']:>6.2f}ms {r['ticks']:>7}")
            if name not in ("model load", "unload"):
                worst = max(worst, r["max_ms"])
        print(f"\nopen 100k library: {open_s:.2f} s (goal <= {GOAL_OPEN_S:.0f} s): "
              f"{'OK' if open_s <= GOAL_OPEN_S else 'MISSED'}")
        print(f"max stall (open, scroll, caption, both): {worst:.1f} ms (goal <= {GOAL_STALL_MS:.0f} ms): "
              f"{'OK' if worst <= GOAL_STALL_MS else 'MISSED'}")
        print(f"one-offs on the user's request: model load max stall {results['model load']['max_ms']:.1f} ms, "
              f"unload {results['unload']['max_ms']:.1f} ms")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")


if __name__ == "__main__":
    sys.exit(main())

"""A stand-in face matcher that "detects" coloured squares (one colour = one identity, grey = a cat face
without identity), photos of such squares, and a library of them with the retrieval service patched to use
that matcher: suggestion tests that are fast and exact. Also small probes of the photo panel's chips."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from repic_desktop.core.library import Library

service = pytest.importorskip("repic_desktop.retrieval.service")
from repic_desktop.retrieval.base import Crop  # noqa: E402


COLORS = [(220, 40, 40), (40, 170, 60), (40, 70, 220)]   # red = Anya, green and blue = strangers
CAT = (128, 128, 128)
WAIT = 15_000


class SquareMatcher:
    """Finds squares of the known colours: a face per colour (its identity is the colour), grey = cat."""

    id = "dlib-faces"            # the matcher whose unknown faces the service clusters
    name = "Coloured squares (test)"
    fingerprint = "squares-1"
    threshold = 0.9
    cluster_threshold = 0.9
    max_side = 1024
    faithful = False

    def __init__(self):
        self.threads: set[int] = set()
        self.gate: threading.Semaphore | None = None   # when set by a test: each image waits for a permit
        self.entered = threading.Event()

    def crops(self, image):
        self.threads.add(threading.get_ident())
        self.entered.set()
        if self.gate is not None:
            assert self.gate.acquire(timeout=WAIT / 1000)
        a = np.asarray(image.convert("RGB")).astype(int)
        out = []
        for i, col in enumerate(COLORS + [CAT]):
            ys, xs = np.nonzero(np.abs(a - col).sum(axis=2) < 30)
            if len(xs) < 20:
                continue
            box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
            if col == CAT:
                out.append(Crop(box, "cat", 0.8, None))
            else:
                v = np.full(4, 0.05, np.float32)
                v[i] = 1.0
                out.append(Crop(box, "face", 0.99, v))
        return out

    def reference_crop(self, image, box):
        faces = [c for c in self.crops(image) if c.vector is not None]
        return faces[0] if faces else None


def square_photo(path, squares, size=(240, 180)):
    im = Image.new("RGB", size, (250, 250, 250))
    for color, (x, y, w, h) in squares:
        im.paste(color, (x, y, x + w, y + h))
    im.save(path)
    return path


def add(lib: Library, path) -> int:
    w, h = Image.open(path).size
    return lib.photos.add(path, size=path.stat().st_size, mtime_ns=1, content_hash=path.name, format="PNG",
                          width=w, height=h)


@pytest.fixture
def squares(tmp_path, monkeypatch):
    """A library: Anya (red) with a reference photo, Tom the cat (no reference), a party photo with Anya
    and a cat, two photos of a green stranger and one of a blue one. get_matcher gives the square matcher."""
    d = tmp_path / "photos"
    d.mkdir()
    lib = Library(tmp_path / "lib.sqlite")
    ids = {
        "anya": add(lib, square_photo(d / "anya.png", [(COLORS[0], (80, 40, 60, 60))])),
        "party": add(lib, square_photo(d / "party.png", [(COLORS[0], (30, 50, 50, 50)), (CAT, (150, 90, 40, 40))])),
        "green1": add(lib, square_photo(d / "green1.png", [(COLORS[1], (100, 60, 40, 40))])),
        "green2": add(lib, square_photo(d / "green2.png", [(COLORS[1], (20, 20, 60, 60))])),
        "blue": add(lib, square_photo(d / "blue.png", [(COLORS[2], (60, 60, 50, 50))])),
    }
    lib.concepts.add("Anya", "person", "my daughter")
    lib.concepts.add_ref("Anya", photo_id=ids["anya"])
    lib.concepts.add("Tom", "pet", "our grey cat")
    matcher = SquareMatcher()
    monkeypatch.setattr(service, "get_matcher", lambda matcher_id=None, settings=None: matcher)
    monkeypatch.setattr(service, "available_matchers", lambda settings=None: [
        {"id": "dlib-faces", "name": "Faces (offline, dlib)", "ready": True, "why": ""}])
    yield lib, ids, matcher
    lib.close()


def sugg_chips(panel):
    out = []
    for i in range(panel.sugg_chips.count()):
        w = panel.sugg_chips.itemAt(i).widget()
        if w is not None and w is not panel.find_btn:
            out.append(w)
    return out


def chip_names(panel):
    return [panel.chips.itemAt(i).widget().label.text() for i in range(panel.chips.count())
            if panel.chips.itemAt(i).widget() is not panel.add_btn]


def show(win, qtbot, photo_id):
    win.browser.select_photo(photo_id)
    assert win.panel.photo_id == photo_id
    qtbot.waitUntil(lambda: win.panel.preview.pixmap is not None, timeout=WAIT)

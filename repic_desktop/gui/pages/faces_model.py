"""Faces page data: face clusters loaded from the library, their thumbnails, and the models and delegate of
the cluster list and the face grid.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QStyledItemDelegate

from ...core.library import Box, Library
from ..widgets.painting import begin_row, draw_round_pixmap
from ..widgets.images import load_image_scaled
from ..widgets.thumbnails import ThumbnailLoader
from ..wording import count

log = logging.getLogger(__name__)
FACE_THUMB = 96          # decoded size of a face crop (drawn at 40-96 px)
ROW_FACES = 5            # faces shown in a cluster's row
DETAIL_LIMIT = 200       # faces shown for the selected cluster (a huge cluster is named by its best faces)
MARGIN = 0.25            # context around a detector box, as a fraction of its size: a bare box looks cut off


@dataclass(frozen=True)
class Face:
    crop_id: int
    photo_id: int
    path: str
    filename: str
    box: Box
    score: float


IGNORED_ROW = -1          # the id of the "Ignored faces" row (cluster ids are positive)


@dataclass
class ClusterRow:
    id: int
    size: int
    photos: int
    faces: list[Face] = field(default_factory=list)
    ignored: bool = False     # the "Ignored faces" row, not a cluster


def padded(box: Box, width: int | None, height: int | None, margin: float = MARGIN) -> Box:
    """`box` grown by `margin` on each side, kept inside the photo when its size is known."""
    dx, dy = int(box.w * margin), int(box.h * margin)
    x0, y0, x1, y1 = box.x - dx, box.y - dy, box.x + box.w + dx, box.y + box.h + dy
    if width and height:
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    return Box(x0, y0, max(1, x1 - x0), max(1, y1 - y0))


def load_clusters(lib: Library, service, min_size: int = 1, show_ignored: bool = False) -> list[ClusterRow]:
    """Worker side: the service's clusters with what painting them needs (paths, padded boxes); with
    show_ignored, the dismissed faces as a last row."""
    photos: dict[int, object] = {}

    def faces_of(members) -> list[Face]:
        faces = []
        for m in members:
            p = photos.get(m.photo_id)
            if p is None:
                p = photos[m.photo_id] = lib.photos.get(m.photo_id)
            faces.append(Face(m.crop_id, m.photo_id, p.fs_path, p.filename, padded(m.box, p.width, p.height),
                              m.score))
        return faces

    rows = []
    for c in service.face_clusters(lib, min_size=min_size):
        faces = faces_of(c.members)
        rows.append(ClusterRow(c.id, c.size, len({f.photo_id for f in faces}), faces))
    if show_ignored:
        faces = faces_of(service.ignored_faces(lib))
        if faces:
            rows.append(ClusterRow(IGNORED_ROW, len(faces), len({f.photo_id for f in faces}), faces, ignored=True))
    return rows


def face_key(face: Face) -> tuple:
    # SQLite may give a re-indexed photo's new crop the id of a deleted one: the id alone is not the pixels
    return face.crop_id, face.path, face.box


class FaceThumbs(QObject):
    """Face crops, made on the thumbnail pool when first asked for."""

    ready = Signal(int)      # crop id

    def __init__(self, loader: ThumbnailLoader, parent=None):
        super().__init__(parent)
        self.loader = loader
        self.pixmaps: dict[tuple, QPixmap] = {}      # face_key -> crop
        self.broken: set[tuple] = set()
        loader.ready.connect(self._ready)
        loader.failed.connect(self._failed)

    def get(self, face: Face) -> QPixmap | None:
        key = face_key(face)
        pm = self.pixmaps.get(key)
        if pm is None and key not in self.broken:
            path, box = face.path, face.box

            def make():
                img, _, _ = load_image_scaled(path, FACE_THUMB, box)
                return img

            self.loader.request(("face",) + key, make)
        return pm

    def keep_only(self, faces) -> None:
        """Forget the crops no cluster shows any more."""
        keys = {face_key(f) for f in faces}
        self.pixmaps = {k: v for k, v in self.pixmaps.items() if k in keys}
        self.broken &= keys

    def _ready(self, key, image) -> None:
        if isinstance(key, tuple) and key[0] == "face":
            self.pixmaps[key[1:]] = QPixmap.fromImage(image)
            self.ready.emit(key[1])

    def _failed(self, key, reason) -> None:
        if isinstance(key, tuple) and key[0] == "face":
            log.info("cannot show face %s: %s", key[1], reason)
            self.broken.add(key[1:])
            self.ready.emit(key[1])


class ClusterListModel(QAbstractListModel):
    """One row per unknown-face cluster, largest first (the service's order)."""

    ClusterRole = Qt.ItemDataRole.UserRole + 1

    def __init__(self, thumbs: FaceThumbs, parent=None):
        super().__init__(parent)
        self.thumbs = thumbs
        self.rows: list[ClusterRow] = []
        self._row_of_crop: dict[int, int] = {}
        thumbs.ready.connect(self._face_ready)

    def set_rows(self, rows: list[ClusterRow]) -> None:
        self.beginResetModel()
        self.rows = rows
        # only the faces a row paints can change it
        self._row_of_crop = {f.crop_id: i for i, r in enumerate(rows) for f in r.faces[:ROW_FACES]}
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def row_of(self, cluster_id: int) -> int | None:
        return next((i for i, r in enumerate(self.rows) if r.id == cluster_id), None)

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{r.size} ignored face{'s' if r.size != 1 else ''}" if r.ignored else \
                f"{r.size} face{'s' if r.size != 1 else ''}"
        if role == self.ClusterRole:
            return r
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{count(r.size, 'face')} in {count(r.photos, 'photo')}"
        return None

    def _face_ready(self, crop_id: int) -> None:
        row = self._row_of_crop.get(crop_id)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx)


class FaceGridModel(QAbstractListModel):
    """The faces of the selected cluster (icons come from FaceThumbs as they are painted)."""

    def __init__(self, thumbs: FaceThumbs, parent=None):
        super().__init__(parent)
        self.thumbs = thumbs
        self.faces: list[Face] = []
        self._row_of_crop: dict[int, int] = {}
        self._placeholder: QPixmap | None = None
        thumbs.ready.connect(self._face_ready)

    def placeholder(self) -> QPixmap:
        """Shown until a crop is decoded: an item without a picture has no size, so the view would lay
        the grid out empty and never ask for the faces."""
        if self._placeholder is None:
            pm = QPixmap(FACE_THUMB, FACE_THUMB)
            pm.fill(QColor(128, 128, 128, 40))
            self._placeholder = pm
        return self._placeholder

    def set_faces(self, faces: list[Face]) -> None:
        self.beginResetModel()
        self.faces = faces[:DETAIL_LIMIT]
        self._row_of_crop = {f.crop_id: i for i, f in enumerate(self.faces)}
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.faces)

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        f = self.faces[index.row()]
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbs.get(f) or self.placeholder()
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{f.filename} (face found with confidence {f.score:.2f})"
        if role == Qt.ItemDataRole.UserRole:
            return f.photo_id
        return None

    def _face_ready(self, crop_id: int) -> None:
        row = self._row_of_crop.get(crop_id)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])


def _draw_face(p: QPainter, rect: QRectF, pm: QPixmap | None, pal: QPalette) -> None:
    draw_round_pixmap(p, rect, pm, pal)
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.setPen(pal.color(QPalette.ColorRole.Window))  # a thin ring separates the overlapping faces
    p.drawEllipse(rect)


class ClusterDelegate(QStyledItemDelegate):
    """A row: up to five overlapping round faces, then '7 faces · 5 photos'."""

    FACE = 52

    def __init__(self, thumbs: FaceThumbs, parent=None):
        super().__init__(parent)
        self.thumbs = thumbs

    def sizeHint(self, option, index) -> QSize:
        return QSize(300, self.FACE + 16)

    def paint(self, p: QPainter, option, index) -> None:
        r = begin_row(p, option)
        pal = option.palette
        row: ClusterRow = index.data(ClusterListModel.ClusterRole)
        step = self.FACE * 0.72
        y = r.y() + (r.height() - self.FACE) / 2
        x = r.x() + 8
        for f in row.faces[:ROW_FACES]:
            _draw_face(p, QRectF(x, y, self.FACE, self.FACE), self.thumbs.get(f), pal)
            x += step
        x = r.x() + 8 + step * (min(ROW_FACES, len(row.faces)) - 1) + self.FACE + 14
        w = r.right() - x - 6
        f = option.font
        bold = type(f)(f)
        bold.setBold(True)
        p.setFont(bold)
        p.setPen(pal.color(QPalette.ColorRole.Text))
        fm = p.fontMetrics()
        ty = r.y() + (r.height() - 2 * fm.height()) / 2
        p.drawText(QRectF(x, ty, w, fm.height()), Qt.AlignmentFlag.AlignLeft, index.data())
        p.setFont(f)
        p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
        p.drawText(QRectF(x, ty + fm.height(), w, fm.height()), Qt.AlignmentFlag.AlignLeft,
                   f"in {row.photos} photo{'s' if row.photos != 1 else ''}")
        p.restore()

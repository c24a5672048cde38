"""People & Pets list: the item model over the library's concepts, its row delegate, and the reference-photo
thumbnails they share with the concept dialog.
"""
from __future__ import annotations

from PySide6.QtCore import QAbstractListModel, QModelIndex, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QStyledItemDelegate

from ...core.library import Box, Library, LibraryError
from ..widgets.painting import begin_row, draw_round_pixmap
from ..widgets.images import load_image_scaled
from ..widgets.thumbnails import ThumbnailLoader


KIND_LABELS = {"person": "Person", "pet": "Pet", "other": "Other"}
REF_THUMB = 112


def request_ref_thumb(loader: ThumbnailLoader, key, path: str, box: Box | None, side: int = REF_THUMB) -> None:
    def make():
        img, _, _ = load_image_scaled(path, side, box)
        return img
    loader.request(key, make)


class ConceptListModel(QAbstractListModel):
    ConceptRole = Qt.ItemDataRole.UserRole + 1

    def __init__(self, library: Library, loader: ThumbnailLoader, parent=None):
        super().__init__(parent)
        self.lib, self.loader = library, loader
        self.rows: list[dict] = []
        self.icons: dict[int, QPixmap] = {}
        self.broken: set[int] = set()
        loader.ready.connect(self._ready)
        loader.failed.connect(self._failed)

    def reload(self) -> None:
        self.beginResetModel()
        from ...core.training_photos import PhotoCounts, photo_counts

        # the photos training learns from (not references): the count Personalize and the trainer show
        counts = photo_counts(self.lib)
        tagged = self.lib.concepts.photo_counts()
        self.rows = []
        for c in self.lib.concepts.all():
            refs = self.lib.concepts.refs(c.id)
            n = counts.get(c.id) or PhotoCounts(0, len(refs), 0)
            self.rows.append({"concept": c, "refs": refs, "photos": n.photos, "counts": n,
                              "tagged": tagged.get(c.id, 0)})
        self.icons.clear()
        self.broken.clear()
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def row_of(self, concept_id: int) -> int | None:
        for i, r in enumerate(self.rows):
            if r["concept"].id == concept_id:
                return i
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        c = r["concept"]
        if role == Qt.ItemDataRole.DisplayRole:
            return c.name
        if role == self.ConceptRole:
            return r
        if role == Qt.ItemDataRole.DecorationRole:
            pm = self.icons.get(c.id)
            if pm is None and r["refs"] and c.id not in self.broken:
                ref = r["refs"][0]
                try:
                    from ...core.concepts import reference_path
                    path = reference_path(self.lib, ref)
                except LibraryError:
                    self.broken.add(c.id)
                    return None
                request_ref_thumb(self.loader, ("concept", c.id, ref.id), path, ref.box, 96)
            return pm
        if role == Qt.ItemDataRole.ToolTipRole:
            return c.info or None
        return None

    def _ready(self, key, image) -> None:
        if isinstance(key, tuple) and key[0] == "concept":
            self.icons[key[1]] = QPixmap.fromImage(image)
            self._changed(key[1])

    def _failed(self, key, reason) -> None:
        if isinstance(key, tuple) and key[0] == "concept":
            self.broken.add(key[1])
            self._changed(key[1])

    def _changed(self, cid: int) -> None:
        row = self.row_of(cid)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx)


def concept_meta(row: dict) -> str:
    """'3 photos  ·  1 reference', or '0 photos (all 4 tagged photos are references)  ·  4 references'."""
    counts, n_refs = row["counts"], len(row["refs"])
    head = counts.text() if counts.reference_only else f"{counts.photos} photo{'s' if counts.photos != 1 else ''}"
    return f"{head}  ·  {n_refs} reference{'s' if n_refs != 1 else ''}"


class ConceptDelegate(QStyledItemDelegate):
    """A row: round reference thumbnail, name, kind · photos · references, info."""

    SIZE = 64

    def sizeHint(self, option, index) -> QSize:
        return QSize(260, self.SIZE + 16)

    def paint(self, p: QPainter, option, index) -> None:
        r = begin_row(p, option)
        pal = option.palette
        row = index.data(ConceptListModel.ConceptRole)
        c = row["concept"]
        icon_r = QRectF(r.x() + 8, r.y() + (r.height() - self.SIZE) / 2, self.SIZE, self.SIZE)
        pm = index.data(Qt.ItemDataRole.DecorationRole)
        if not draw_round_pixmap(p, icon_r, pm if isinstance(pm, QPixmap) else None, pal):
            f = p.font()
            f.setPointSizeF(f.pointSizeF() * 1.6)
            p.setFont(f)
            p.setPen(pal.color(QPalette.ColorRole.Text))
            p.drawText(icon_r, Qt.AlignmentFlag.AlignCenter, c.name[:1].upper())
        x = icon_r.right() + 12
        w = r.right() - x - 6
        f = option.font
        bold = type(f)(f)
        bold.setBold(True)
        bold.setPointSizeF(f.pointSizeF() * 1.05)
        p.setFont(bold)
        p.setPen(pal.color(QPalette.ColorRole.Text))
        fm = p.fontMetrics()
        y = r.y() + 10
        p.drawText(QRectF(x, y, w, fm.height()), Qt.AlignmentFlag.AlignLeft,
                   fm.elidedText(c.name, Qt.TextElideMode.ElideRight, int(w)))
        y += fm.height() + 1
        p.setFont(f)
        fm = p.fontMetrics()
        n_refs = len(row["refs"])
        meta = f"{KIND_LABELS.get(c.kind, c.kind)}  ·  {concept_meta(row)}"
        p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
        p.drawText(QRectF(x, y, w, fm.height()), Qt.AlignmentFlag.AlignLeft, meta)
        y += fm.height() + 1
        if c.info:
            p.drawText(QRectF(x, y, w, fm.height()), Qt.AlignmentFlag.AlignLeft,
                       fm.elidedText(c.info, Qt.TextElideMode.ElideRight, int(w)))
        elif not n_refs:
            p.setPen(QColor("#d68a00"))
            p.drawText(QRectF(x, y, w, fm.height()), Qt.AlignmentFlag.AlignLeft, "⚠ no reference photo yet")
        p.restore()

"""The thumbnail grid: the view (a wrapping QListView with uniform item sizes) and the delegate that paints a
photo's tile.
"""
from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPoint, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPalette, QPen, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView, QFrame, QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem,
)

from ...core.photo_queries import RowInfo
from ..pages.photo_model import InfoRole, PhotoListModel


STATUS_COLORS = {"draft": QColor("#e0a100"), "accepted": QColor("#2e9d57"), "exported": QColor("#2e7bd1")}


class PhotoDelegate(QStyledItemDelegate):
    def __init__(self, parent=None, thumb: int = 150):
        super().__init__(parent)
        self.thumb = thumb

    def cell_size(self) -> QSize:
        fm = QFontMetrics(QFont())
        return QSize(self.thumb + 20, self.box_height() + 20 + 2 * fm.height() + 4)

    def box_height(self) -> int:
        return int(self.thumb * 0.8)

    def sizeHint(self, option, index) -> QSize:
        return self.cell_size()

    def paint(self, p: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        p.save()
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = option.palette
        r = QRectF(option.rect).adjusted(3, 3, -3, -3)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hover = bool(option.state & QStyle.StateFlag.State_MouseOver)
        if selected or hover:
            c = QColor(pal.color(QPalette.ColorRole.Highlight))
            c.setAlpha(90 if selected else 35)
            p.setPen(QPen(pal.color(QPalette.ColorRole.Highlight), 2) if selected else Qt.PenStyle.NoPen)
            p.setBrush(c)
            p.drawRoundedRect(r, 8, 8)

        info: RowInfo | None = index.data(InfoRole)
        box = QRectF(r.x() + (r.width() - self.thumb) / 2, r.y() + 7, self.thumb, self.box_height())
        pm = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(pm, QPixmap) and not pm.isNull():
            s = pm.size().scaled(int(box.width()), int(box.height()), Qt.AspectRatioMode.KeepAspectRatio)
            tr = QRectF(box.x() + (box.width() - s.width()) / 2, box.y() + (box.height() - s.height()) / 2,
                        s.width(), s.height())
            path = QPainterPath()
            path.addRoundedRect(tr, 4, 4)
            p.setClipPath(path)
            p.drawPixmap(tr.toRect(), pm)
            p.setClipping(False)
            img_rect = tr
        else:
            base = QColor(pal.color(QPalette.ColorRole.Mid))
            base.setAlpha(60)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(base)
            ph = box.adjusted(box.width() * 0.08, box.height() * 0.16, -box.width() * 0.08, -box.height() * 0.16)
            p.drawRoundedRect(ph, 6, 6)
            img_rect = ph
            broken = info is not None and index.model().is_broken(info.id)
            if broken:
                p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
                p.drawText(ph, Qt.AlignmentFlag.AlignCenter, "cannot show")

        if info is not None and info.caption_status:
            self._badge(p, img_rect, info.caption_status)

        fm = QFontMetrics(option.font)
        text_top = box.bottom() + 4
        p.setPen(pal.color(QPalette.ColorRole.HighlightedText if selected and False else QPalette.ColorRole.Text))
        name = info.filename if info else ""
        p.drawText(QRectF(r.x() + 6, text_top, r.width() - 12, fm.height()),
                   Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter,
                   fm.elidedText(name, Qt.TextElideMode.ElideMiddle, int(r.width() - 12)))
        sub = info.names if info and info.names else ("" if not info or info.caption_status else "no caption")
        if sub:
            small = QFont(option.font)
            small.setPointSizeF(max(7.0, option.font.pointSizeF() * 0.88))
            p.setFont(small)
            sfm = QFontMetrics(small)
            p.setPen(pal.color(QPalette.ColorRole.PlaceholderText) if not (info and info.names)
                     else pal.color(QPalette.ColorRole.Link))
            p.drawText(QRectF(r.x() + 6, text_top + fm.height(), r.width() - 12, sfm.height() + 2),
                       Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter,
                       sfm.elidedText(sub, Qt.TextElideMode.ElideRight, int(r.width() - 12)))
        p.restore()

    def _badge(self, p: QPainter, img: QRectF, status: str) -> None:
        color = STATUS_COLORS.get(status, QColor("#888"))
        label = "✓" if status in ("accepted", "exported") else "Review"
        f = QFont(p.font())
        f.setPointSizeF(max(7.0, f.pointSizeF() * 0.8))
        f.setBold(True)
        p.setFont(f)
        fm = QFontMetrics(f)
        w = fm.horizontalAdvance(label) + 10
        h = fm.height() + 2
        rect = QRectF(img.right() - w - 4, img.top() + 4, w, h)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(color)
        p.drawRoundedRect(rect, h / 2, h / 2)
        p.setPen(QColor("white"))
        p.drawText(rect, Qt.AlignmentFlag.AlignCenter, label)
        p.setFont(QFont())


class PhotoGridView(QListView):
    """The thumbnail grid. Tells the thumbnail loader which rows are on screen after each scroll."""

    activated_photo = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.ListMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)   # lays out 100k rows in slices, no stall
        self.setBatchSize(2000)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setMovement(QListView.Movement.Static)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setMouseTracking(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setSpacing(0)
        self.delegate = PhotoDelegate(self)
        self.setItemDelegate(self.delegate)
        self._retain_timer = QTimer(self, singleShot=True, interval=60)
        self._retain_timer.timeout.connect(self._retain_visible)
        self.verticalScrollBar().valueChanged.connect(lambda _: self._retain_timer.start())
        self.set_thumb_size(150)

    def setModel(self, model) -> None:
        old = self.model()
        if isinstance(old, PhotoListModel):
            old.row_changed.disconnect(self._repaint_row)
            old.rows_changed.disconnect(self.viewport().update)
        super().setModel(model)
        if isinstance(model, PhotoListModel):
            model.row_changed.connect(self._repaint_row)
            model.rows_changed.connect(self.viewport().update)

    def scroll_to_row(self, row: int) -> None:
        """scrollTo that waits for the batched layout to reach `row` (right after a reset only the first
        slices are laid out)."""
        self._scroll_target = row
        self._scroll_tries = 0
        self._try_scroll()

    def _try_scroll(self) -> None:
        model, row = self.model(), getattr(self, "_scroll_target", None)
        if model is None or row is None or not 0 <= row < model.rowCount():
            return
        idx = model.index(row)
        if self.rectForIndex(idx).isValid():
            self.scrollTo(idx)
            self._scroll_target = None
        elif self._scroll_tries < 200:
            self._scroll_tries += 1
            QTimer.singleShot(15, self._try_scroll)

    def _repaint_row(self, row: int) -> None:
        model = self.model()
        if model is not None and 0 <= row < model.rowCount():
            self.update(model.index(row))

    def set_thumb_size(self, px: int) -> None:
        self.delegate.thumb = px
        size = self.delegate.cell_size()
        self.setGridSize(size)
        self.verticalScrollBar().setSingleStep(max(20, size.height() // 3))
        self.doItemsLayout()

    def visible_rows(self) -> range:
        model = self.model()
        if model is None or model.rowCount() == 0:
            return range(0)
        vp = self.viewport().rect()
        first = self.indexAt(QPoint(8, 8))
        top = first.row() if first.isValid() else 0
        g = self.gridSize()
        per_row = max(1, vp.width() // max(1, g.width()))
        rows = vp.height() // max(1, g.height()) + 2
        return range(max(0, top - per_row), min(model.rowCount(), top + per_row * (rows + 1)))

    def _retain_visible(self) -> None:
        model = self.model()
        if not isinstance(model, PhotoListModel):
            return
        ids = [model.photo_id(r) for r in self.visible_rows()]
        model.loader.retain(ids)

    def resizeEvent(self, e) -> None:
        super().resizeEvent(e)
        self._retain_timer.start()

"""The photo preview: the picture scaled to fit, with the boxes of tagged people and pets and of suggestions
drawn on it.
"""
from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget

from .caption_highlighter import tag_colors
from .chips import SUGGESTION_COLOR, WEAK_COLOR


class PreviewWidget(QWidget):
    """The photo, scaled to fit, with people/pet regions outlined and named."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.pixmap: QPixmap | None = None
        self.full_size = QSize()
        self.regions: list[tuple[str, object]] = []   # (name, Box)
        self.suggestions: list[tuple[str, object, bool]] = []   # (label, Box, weak)
        self.message = ""
        self.setMinimumSize(200, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_image(self, pixmap: QPixmap | None, full_size: QSize = QSize(), message: str = "") -> None:
        self.pixmap, self.full_size, self.message = pixmap, full_size, message
        self.update()

    def set_regions(self, regions) -> None:
        self.regions = list(regions)
        self.update()

    def set_suggestions(self, suggestions) -> None:
        self.suggestions = list(suggestions)
        self.update()

    def image_rect(self) -> QRectF:
        if self.pixmap is None or self.pixmap.isNull():
            return QRectF()
        s = self.pixmap.size().scaled(self.width() - 16, self.height() - 16, Qt.AspectRatioMode.KeepAspectRatio)
        return QRectF((self.width() - s.width()) / 2, (self.height() - s.height()) / 2, s.width(), s.height())

    def paintEvent(self, e) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        if self.pixmap is None or self.pixmap.isNull():
            p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.message)
            return
        r = self.image_rect()
        p.drawPixmap(r.toRect(), self.pixmap)
        if self.suggestions and self.full_size.width() > 0:
            sx = r.width() / self.full_size.width()
            sy = r.height() / self.full_size.height()
            for label, box, weak in self.suggestions:
                color = WEAK_COLOR if weak else SUGGESTION_COLOR
                rr = QRectF(r.x() + box.x * sx, r.y() + box.y * sy, box.w * sx, box.h * sy)
                p.setBrush(Qt.BrushStyle.NoBrush)
                p.setPen(QPen(QColor(0, 0, 0, 140), 3.5))
                p.drawRect(rr)
                p.setPen(QPen(color, 2.2, Qt.PenStyle.DashLine))
                p.drawRect(rr)
                fm = p.fontMetrics()
                tag = QRectF(rr.x(), rr.y() - fm.height() - 4, fm.horizontalAdvance(label) + 10, fm.height() + 2)
                if tag.y() < r.y():      # no room above the box: label inside its top edge
                    tag.moveTop(rr.y() + 2)
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(color.darker(150))
                p.drawRoundedRect(tag, 4, 4)
                p.setPen(QColor("white"))
                p.drawText(tag, Qt.AlignmentFlag.AlignCenter, label)
        if self.regions and self.full_size.width() > 0:
            sx = r.width() / self.full_size.width()
            sy = r.height() / self.full_size.height()
            fg, _, _ = tag_colors(pal)
            for name, box in self.regions:
                rr = QRectF(r.x() + box.x * sx, r.y() + box.y * sy, box.w * sx, box.h * sy)
                p.setPen(QPen(QColor("white"), 3))
                p.setBrush(Qt.BrushStyle.NoBrush)
                p.drawRoundedRect(rr, 3, 3)
                p.setPen(QPen(QColor("#2f80ed"), 1.6))
                p.drawRoundedRect(rr, 3, 3)
                fm = p.fontMetrics()
                label = QRectF(rr.x(), rr.bottom() + 2, fm.horizontalAdvance(name) + 10, fm.height() + 2)
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(QColor(20, 20, 20, 170))
                p.drawRoundedRect(label, 4, 4)
                p.setPen(QColor("white"))
                p.drawText(label, Qt.AlignmentFlag.AlignCenter, name)

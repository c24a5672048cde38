"""Small painting helpers shared by the list delegates (People & Pets, Unknown Faces)."""
from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPalette, QPixmap
from PySide6.QtWidgets import QStyle, QStyleOptionViewItem


def begin_row(p: QPainter, option: QStyleOptionViewItem) -> QRectF:
    """Save the painter, turn on smooth drawing and paint the rounded selection background; returns the
    row's inner rectangle. The caller ends with p.restore()."""
    p.save()
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    r = QRectF(option.rect).adjusted(4, 2, -4, -2)
    if option.state & QStyle.StateFlag.State_Selected:
        c = QColor(option.palette.color(QPalette.ColorRole.Highlight))
        c.setAlpha(80)
        p.setBrush(c)
        p.setPen(Qt.PenStyle.NoPen)
        p.drawRoundedRect(r, 8, 8)
    return r


def draw_round_pixmap(p: QPainter, rect: QRectF, pm: QPixmap | None, pal: QPalette) -> bool:
    """The pixmap cropped to a circle (filling it, centred), or a soft grey disc while there is none.
    Returns whether a pixmap was drawn, so the caller can put a placeholder letter on the disc."""
    if pm is not None and not pm.isNull():
        path = QPainterPath()
        path.addEllipse(rect)
        p.save()
        p.setClipPath(path)
        s = pm.size().scaled(int(rect.width()), int(rect.height()), Qt.AspectRatioMode.KeepAspectRatioByExpanding)
        p.drawPixmap(QRectF(rect.center().x() - s.width() / 2, rect.center().y() - s.height() / 2,
                            s.width(), s.height()).toRect(), pm)
        p.restore()
        return True
    bg = QColor(pal.color(QPalette.ColorRole.Mid))
    bg.setAlpha(90)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(bg)
    p.drawEllipse(rect)
    return False

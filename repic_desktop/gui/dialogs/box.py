"""The box dialog: draw the box around one person or pet on a reference photo.
"""
from __future__ import annotations

import shiboken6
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from ...core.library import Box, LibraryError, check_box
from ..tasks import TaskRunner
from ..widgets.images import load_image_scaled
from ..widgets.inline_error import error_label, show_error


class BoxCanvas(QWidget):
    """Shows an image; drag to draw a box. `box` is in pixels of the full-size displayed photo."""

    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.pixmap: QPixmap | None = None
        self.full = QSize()
        self.box: Box | None = None
        self._drag: QPointF | None = None
        self.message = "Loading…"
        self.setMinimumSize(480, 360)
        self.setCursor(Qt.CursorShape.CrossCursor)

    def set_image(self, pixmap: QPixmap | None, full: QSize, message: str = "") -> None:
        self.pixmap, self.full, self.message = pixmap, full, message
        self.update()

    def set_box(self, box: Box | None) -> None:
        self.box = box
        self.update()
        self.changed.emit()

    def image_rect(self) -> QRectF:
        if self.pixmap is None:
            return QRectF()
        s = self.pixmap.size().scaled(self.width() - 12, self.height() - 12, Qt.AspectRatioMode.KeepAspectRatio)
        return QRectF((self.width() - s.width()) / 2, (self.height() - s.height()) / 2, s.width(), s.height())

    def _to_full(self, p: QPointF) -> QPointF:
        r = self.image_rect()
        x = min(max(p.x(), r.left()), r.right())
        y = min(max(p.y(), r.top()), r.bottom())
        return QPointF((x - r.x()) * self.full.width() / r.width(), (y - r.y()) * self.full.height() / r.height())

    def mousePressEvent(self, e) -> None:
        if self.pixmap is not None and e.button() == Qt.MouseButton.LeftButton:
            self._drag = self._to_full(e.position())
            self.set_box(None)

    def mouseMoveEvent(self, e) -> None:
        if self._drag is not None:
            self._set_from(self._drag, self._to_full(e.position()))

    def mouseReleaseEvent(self, e) -> None:
        if self._drag is not None:
            self._set_from(self._drag, self._to_full(e.position()))
            self._drag = None
            if self.box is not None and (self.box.w < 4 or self.box.h < 4):
                self.set_box(None)

    def _set_from(self, a: QPointF, b: QPointF) -> None:
        x0, x1 = sorted((a.x(), b.x()))
        y0, y1 = sorted((a.y(), b.y()))
        x0, y0 = max(0, int(round(x0))), max(0, int(round(y0)))
        x1 = min(self.full.width(), int(round(x1)))
        y1 = min(self.full.height(), int(round(y1)))
        self.set_box(Box(x0, y0, max(0, x1 - x0), max(0, y1 - y0)))

    def paintEvent(self, e) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        if self.pixmap is None:
            p.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.message)
            return
        r = self.image_rect()
        p.drawPixmap(r.toRect(), self.pixmap)
        if self.box is not None and self.full.width():
            sx, sy = r.width() / self.full.width(), r.height() / self.full.height()
            br = QRectF(r.x() + self.box.x * sx, r.y() + self.box.y * sy, self.box.w * sx, self.box.h * sy)
            shade = QColor(0, 0, 0, 110)
            for part in (QRectF(r.left(), r.top(), r.width(), br.top() - r.top()),
                         QRectF(r.left(), br.bottom(), r.width(), r.bottom() - br.bottom()),
                         QRectF(r.left(), br.top(), br.left() - r.left(), br.height()),
                         QRectF(br.right(), br.top(), r.right() - br.right(), br.height())):
                p.fillRect(part, shade)
            p.setPen(QPen(QColor("white"), 2, Qt.PenStyle.DashLine))
            p.drawRect(br)


class BoxDialog(QDialog):
    """'Draw a box around the face': returns a Box (or None: use the whole photo)."""

    def __init__(self, tasks: TaskRunner, path: str, title: str, full_size: tuple[int, int] | None = None,
                 box: Box | None = None, parent=None, hint: str | None = None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(760, 620)
        lay = QVBoxLayout(self)
        hint = QLabel(hint or "Drag a box around the face (or the whole pet). The model sees this crop as the "
                      "reference. Leave it empty to use the whole photo.", wordWrap=True)
        self.canvas = BoxCanvas()
        self.canvas.box = box
        self.info = QLabel()
        self.info.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.error = error_label()
        self.canvas.changed.connect(self._changed)
        bb = QDialogButtonBox()
        self.ok = bb.addButton("Use box", QDialogButtonBox.ButtonRole.AcceptRole)
        self.whole = bb.addButton("Use whole photo", QDialogButtonBox.ButtonRole.AcceptRole)
        bb.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.whole.clicked.connect(lambda: self.canvas.set_box(None))
        for b in (self.ok, self.whole):
            b.setAutoDefault(False)
        bb.accepted.connect(self.accept)
        bb.rejected.connect(self.reject)
        lay.addWidget(hint)
        lay.addWidget(self.canvas, 1)
        lay.addWidget(self.info)
        lay.addWidget(self.error)
        lay.addWidget(bb)
        self._changed()

        def work():
            return load_image_scaled(path, 1400, full_size=full_size)

        def done(result):
            if not shiboken6.isValid(self):  # closed (and deleted) before the photo was decoded
                return
            img, w, h = result
            self.canvas.set_image(QPixmap.fromImage(img), QSize(w, h))
            self._changed()

        def failed(message, details):
            if not shiboken6.isValid(self):
                return
            self.canvas.set_image(None, QSize(), f"Cannot show this photo:\n{message}")
            show_error(self.error, message)
            self.ok.setEnabled(False)

        tasks.run(work, done, failed)

    @property
    def box(self) -> Box | None:
        return self.canvas.box

    def _changed(self) -> None:
        b = self.canvas.box
        self.ok.setEnabled(b is not None)
        # Enter takes what is on screen: the drawn box, or the whole photo when there is none (two accept
        # buttons: Qt would otherwise make the first enabled one the default, and with a box drawn Enter
        # could throw it away)
        self.ok.setDefault(b is not None)
        self.whole.setDefault(b is None)
        if b is None:
            self.info.setText("No box: the whole photo is used.")
            show_error(self.error, None)
            return
        self.info.setText(f"Box: {b.w} × {b.h} pixels at ({b.x}, {b.y})")
        try:
            check_box(b, self.canvas.full.width() or None, self.canvas.full.height() or None)
            show_error(self.error, None)
        except LibraryError as exc:
            show_error(self.error, str(exc))
            self.ok.setEnabled(False)

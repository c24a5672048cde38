"""A small line chart drawn with QPainter: named series, axes with "nice" ticks, a legend.

PySide6-Essentials has no QtCharts and the training curves need no more than this, so no new dependency.
A point whose y is None is no measurement (a task missing from a batch is not a zero reward): the line
leaves a gap there, or with `connect_gaps` joins the measured points around it, which reads better when
gaps are frequent. The y range
follows the data, padded so a flat line is not drawn on the frame; `y_range` pins it (rewards are 0..1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

# Distinguishable in light and dark themes, and for the common colour-vision deficiencies (Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9")


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 × 10^k steps) covering lo..hi."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        return [lo]
    raw = (hi - lo) / max(1, target)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12) + 0.0)
        t += step
    return ticks


def tick_label(v: float, step: float) -> str:
    if abs(v) < step * 1e-6:
        return "0"  # not "-0.0000": float noise around zero
    if step >= 1 and abs(v - round(v)) < 1e-9:
        return f"{int(round(v))}"
    d = max(0, -math.floor(math.log10(step)))
    if abs(step * 10 ** d - round(step * 10 ** d)) > 1e-9:  # a 2.5 step needs one more digit
        d += 1
    if d > 4:  # GRPO losses near zero (1e-6 steps): fixed point would print every tick alike
        mantissa = step / 10 ** math.floor(math.log10(step))
        return f"{v:.{0 if abs(mantissa - round(mantissa)) < 1e-9 else 1}e}"
    return f"{v:.{d}f}"


@dataclass
class Series:
    name: str
    color: QColor
    xs: list[float] = field(default_factory=list)
    ys: list[float | None] = field(default_factory=list)


class LineChart(QWidget):
    def __init__(self, title: str = "", *, x_label: str = "", y_range: tuple[float, float] | None = None,
                 connect_gaps: bool = False, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = title
        self.connect_gaps = connect_gaps
        self.x_label = x_label
        self.y_range = y_range
        self.series: list[Series] = []
        self.placeholder = "No data yet"
        self.setMinimumSize(260, 180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(420, 240)

    # ------------------------------------------------------------------ data
    def add_series(self, name: str, color: str | QColor | None = None) -> Series:
        s = Series(name, QColor(color or PALETTE[len(self.series) % len(PALETTE)]))
        self.series.append(s)
        self.update()
        return s

    def get(self, name: str) -> Series:
        for s in self.series:
            if s.name == name:
                return s
        return self.add_series(name)

    def append(self, name: str, x: float, y: float | None) -> None:
        s = self.get(name)
        s.xs.append(float(x))
        s.ys.append(None if y is None or not math.isfinite(y) else float(y))
        self.update()

    def clear(self) -> None:
        for s in self.series:
            s.xs.clear()
            s.ys.clear()
        self.update()

    def has_data(self) -> bool:
        return any(y is not None for s in self.series for y in s.ys)

    def bounds(self) -> tuple[float, float, float, float]:
        xs = [x for s in self.series for x, y in zip(s.xs, s.ys) if y is not None]
        ys = [y for s in self.series for y in s.ys if y is not None]
        x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
        if x1 == x0:
            x0, x1 = x0 - 0.5, x1 + 0.5
        if self.y_range is not None:
            y0, y1 = self.y_range
            if ys:  # a pinned range still grows to show a point outside it rather than clip it
                y0, y1 = min(y0, min(ys)), max(y1, max(ys))
        else:
            y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
            pad = (y1 - y0) * 0.08 or max(abs(y0) * 0.1, 0.05)
            y0, y1 = y0 - pad, y1 + pad
        return x0, x1, y0, y1

    # ------------------------------------------------------------------ drawing
    def paintEvent(self, _e) -> None:
        p = QPainter(self)
        try:
            self.render_chart(p, QRectF(self.rect()))
        finally:
            p.end()

    def render_chart(self, p: QPainter, area: QRectF) -> None:
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        text_c = pal.color(QPalette.ColorRole.WindowText)
        base_c = pal.color(QPalette.ColorRole.Base)
        grid_c = QColor(text_c)
        grid_c.setAlphaF(0.12)
        axis_c = QColor(text_c)
        axis_c.setAlphaF(0.55)
        p.fillRect(area, base_c)
        font = QFont(self.font())
        small = QFont(font)
        small.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        fm, sfm = QFontMetricsF(font), QFontMetricsF(small)

        top = area.top() + 6
        if self.title:
            bold = QFont(font)
            bold.setBold(True)
            p.setFont(bold)
            p.setPen(text_c)
            p.drawText(QRectF(area.left() + 8, top, area.width() - 16, fm.height()),
                       Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, self.title)
            top += fm.height() + 2

        # legend: one row of swatches under the title, wrapping when narrow
        p.setFont(small)
        x, row_h = area.left() + 8, sfm.height() + 2
        for s in self.series:
            w = 18 + sfm.horizontalAdvance(s.name) + 14
            if x + w > area.right() - 8 and x > area.left() + 8:
                x, top = area.left() + 8, top + row_h
            y_mid = top + row_h / 2
            p.setPen(QPen(s.color, 2.5))
            p.drawLine(QPointF(x, y_mid), QPointF(x + 14, y_mid))
            p.setPen(text_c)
            p.drawText(QRectF(x + 18, top, w, row_h), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                       s.name)
            x += w
        if self.series:
            top += row_h + 4

        x0, x1, y0, y1 = self.bounds()
        yt = nice_ticks(y0, y1, 4)
        ystep = yt[1] - yt[0] if len(yt) > 1 else 1.0
        ylabels = [tick_label(v, ystep) for v in yt]
        left = area.left() + 8 + max((sfm.horizontalAdvance(t) for t in ylabels), default=0) + 6
        bottom = area.bottom() - 6 - sfm.height() - (sfm.height() if self.x_label else 0) - 4
        plot = QRectF(left, top + 4, max(10.0, area.right() - 12 - left), max(10.0, bottom - top - 4))

        def px(v: float) -> float:
            return plot.left() + (v - x0) / (x1 - x0) * plot.width()

        def py(v: float) -> float:
            return plot.bottom() - (v - y0) / (y1 - y0) * plot.height()

        # grid, y ticks
        for v, t in zip(yt, ylabels):
            yy = py(v)
            p.setPen(QPen(grid_c, 1))
            p.drawLine(QPointF(plot.left(), yy), QPointF(plot.right(), yy))
            p.setPen(axis_c)
            p.drawText(QRectF(area.left(), yy - sfm.height() / 2, plot.left() - area.left() - 6, sfm.height()),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, t)
        # x ticks: whole steps only (a step is an integer)
        xt = [v for v in nice_ticks(x0, x1, max(2, int(plot.width() // 70))) if v >= x0 - 1e-9]
        if x1 - x0 > 1:
            xt = [v for v in xt if abs(v - round(v)) < 1e-9]
        xstep = xt[1] - xt[0] if len(xt) > 1 else 1.0
        p.setPen(axis_c)
        for v in xt:
            xx = px(v)
            p.drawLine(QPointF(xx, plot.bottom()), QPointF(xx, plot.bottom() + 4))
            p.drawText(QRectF(xx - 40, plot.bottom() + 4, 80, sfm.height()), Qt.AlignmentFlag.AlignHCenter,
                       tick_label(v, xstep))
        if self.x_label:
            p.drawText(QRectF(plot.left(), plot.bottom() + 4 + sfm.height(), plot.width(), sfm.height()),
                       Qt.AlignmentFlag.AlignHCenter, self.x_label)
        p.setPen(QPen(axis_c, 1))
        p.drawLine(plot.bottomLeft(), plot.bottomRight())
        p.drawLine(plot.bottomLeft(), plot.topLeft())

        if not self.has_data():
            p.setFont(font)
            p.setPen(axis_c)
            p.drawText(plot, Qt.AlignmentFlag.AlignCenter, self.placeholder)
            return

        p.save()
        p.setClipRect(plot.adjusted(-3, -3, 3, 3))
        for s in self.series:
            path, pen_down, lone = QPainterPath(), False, []
            pts = [(px(xv), py(yv)) if yv is not None else None for xv, yv in zip(s.xs, s.ys)]
            if self.connect_gaps:
                pts = [pt for pt in pts if pt is not None]
            for i, pt in enumerate(pts):
                if pt is None:
                    pen_down = False
                    continue
                if pen_down:
                    path.lineTo(*pt)
                else:
                    path.moveTo(*pt)
                    pen_down = True
                    # a point with no neighbour would be invisible as a path: draw it as a dot
                    if (i + 1 >= len(pts) or pts[i + 1] is None):
                        lone.append(pt)
            p.setPen(QPen(s.color, 2, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawPath(path)
            p.setBrush(s.color)
            for xx, yy in lone:
                p.drawEllipse(QPointF(xx, yy), 2.5, 2.5)
        p.restore()

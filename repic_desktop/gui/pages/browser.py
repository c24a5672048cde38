"""Album browser: folder tree + thumbnail grid with filters, search, import (drag and drop) and rescan.

Why it is shaped like this (it must stay smooth on 100,000 photos):
- The grid's model holds only the *ids* of the photos that match the filter (an array of ints, queried
  in a worker with its own Library connection). Row data (file name, caption status, names) is fetched
  on demand in pages of PAGE_SIZE rows by primary key (a ~1 ms read) and kept in a small LRU of pages;
  nothing is created per photo, no widget per photo.
- The view is a QListView in wrapping list mode with uniform item sizes, so Qt lays out by arithmetic
  and only asks `data()` for rows it paints; thumbnails are requested from there (visible rows only)
  and made on the ThumbnailLoader's pool, a grey placeholder is painted until they arrive.
- Filter/search queries and the folder tree's counts run in workers; a newer query supersedes older
  ones (generation counter), so typing in the search field never queues up stale results.
- Imports run scan_folder in a worker with its own Library; progress arrives by signal, throttled.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel, QItemSelectionModel, QModelIndex, QPoint, QRectF, QSize, Qt, QTimer, Signal,
)
from PySide6.QtGui import (
    QColor, QFont, QFontMetrics, QIcon, QPainter, QPainterPath, QPalette, QPen, QPixmap,
    QStandardItem, QStandardItemModel,
)
from PySide6.QtWidgets import (
    QAbstractItemView, QButtonGroup, QComboBox, QDialog, QDialogButtonBox, QFrame, QHBoxLayout, QHeaderView,
    QLabel, QLineEdit, QListView, QMenu, QProgressBar, QPushButton, QSlider,
    QStackedWidget, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QTableWidget, QTableWidgetItem,
    QToolButton, QTreeView, QVBoxLayout, QWidget,
)

from ...core.library import Library, LibraryError, fts_query
from ...core.photo_queries import PhotoFilter, RowInfo, fetch_rows, query_photo_ids  # noqa: F401 (re-exported)
from .layout import heading, split_page
from ..tasks import TaskRunner
from ..widgets.thumbnails import ThumbnailLoader
from ..wording import count

log = logging.getLogger(__name__)

PAGE_SIZE = 128
MAX_PAGES = 64                 # 8192 rows of text data cached
MAX_PIXMAPS = 1200             # thumbnails kept as pixmaps (at 160 px: ~100 MB worst case)
STATUS_FILTERS = (("all", "All"), ("uncaptioned", "Uncaptioned"), ("draft", "Needs review"),
                  ("accepted", "Accepted"))

SEGMENT_STYLE = """
QToolButton#segment { padding: 3px 8px; border: 1px solid palette(mid); background: palette(button);
                      margin-left: -1px; }
QToolButton#segment[edge="first"] { border-top-left-radius: 5px; border-bottom-left-radius: 5px; margin-left: 0; }
QToolButton#segment[edge="last"] { border-top-right-radius: 5px; border-bottom-right-radius: 5px; }
QToolButton#segment:hover { background: palette(midlight); }
QToolButton#segment:checked { background: palette(highlight); color: palette(highlighted-text);
                              border-color: palette(highlight); }
"""

SUGGESTED = "suggested"       # the person filter's "Suggested" item (photos with suggestions waiting)
PhotoIdRole = Qt.ItemDataRole.UserRole + 1
InfoRole = Qt.ItemDataRole.UserRole + 2
FolderRole = Qt.ItemDataRole.UserRole + 3


# --------------------------------------------------------------------------------------------------
# Folder tree (the grid's queries are in core/photo_queries.py)
# --------------------------------------------------------------------------------------------------

@dataclass
class FolderNode:
    path: str                    # full folder path
    label: str                   # what the tree shows (single-child chains are collapsed: "home/me/Pictures")
    own: int = 0                 # photos directly in this folder
    total: int = 0               # photos here and below
    children: list["FolderNode"] = field(default_factory=list)


def folder_tree(lib: Library) -> tuple[int, list[FolderNode]]:
    """(number of photos, top-level folder nodes) for the tree, from one GROUP BY."""
    rows = lib.photos.folder_counts()
    root = FolderNode("", "")
    index: dict[str, FolderNode] = {"": root}
    for folder, n in rows:
        parts = [x for x in folder.split("/") if x]
        path = ""
        node = root
        for part in parts:
            path = f"{path}/{part}"
            child = index.get(path)
            if child is None:
                child = FolderNode(path, part)
                index[path] = child
                node.children.append(child)
            node = child
        node.own += n

    def finish(node: FolderNode) -> int:
        node.children.sort(key=lambda c: c.label.casefold())
        node.total = node.own + sum(finish(c) for c in node.children)
        return node.total

    total = finish(root)

    def collapse(node: FolderNode) -> FolderNode:
        while node.own == 0 and len(node.children) == 1:
            child = node.children[0]
            node = replace(child, label=f"{node.label}/{child.label}" if node.label else child.label)
        node.children = [collapse(c) for c in node.children]
        return node

    tops = [collapse(c) for c in root.children]
    for t in tops:  # a top folder shows its own name; the full path is in its tooltip
        t.label = t.path.rstrip("/").rsplit("/", 1)[-1] or t.path
    return total, tops


def import_roots(lib: Library) -> list[str]:
    """The topmost folders that hold photos: what "Rescan" walks when no folder is selected."""
    folders = lib.photos.folders()
    roots: list[str] = []
    for f in folders:
        if not any(f == r or f.startswith(r.rstrip("/") + "/") for r in roots):
            roots.append(f)
    return roots


# --------------------------------------------------------------------------------------------------
# The grid's model
# --------------------------------------------------------------------------------------------------

class PhotoListModel(QAbstractListModel):
    """Lazy list of photos: ids in memory, row data paged in from the library, thumbnails from a pool.

    A changed row (new thumbnail, new caption) is announced with `row_changed(row)`, which the grid turns
    into a repaint of that one cell, instead of `dataChanged`: QListView answers every dataChanged, even
    for one index, with a walk over all rows (100,000 Python `rowCount` calls, ~150 ms on 100k photos),
    which would stall the GUI once per arriving thumbnail or finished caption."""

    row_changed = Signal(int)
    rows_changed = Signal()

    def __init__(self, library: Library, loader: ThumbnailLoader, parent=None):
        super().__init__(parent)
        self.lib = library
        self.loader = loader
        self._ids = array("q")
        self._row_of: dict[int, int] | None = None
        self._pages: OrderedDict[int, list[RowInfo | None]] = OrderedDict()
        self._pixmaps: OrderedDict[int, QPixmap] = OrderedDict()
        self._broken: dict[int, str] = {}
        loader.ready.connect(self._thumb_ready)
        loader.failed.connect(self._thumb_failed)

    # ------------------------------------------------------------------ content
    def set_ids(self, ids: array, row_of: dict[int, int] | None = None) -> None:
        self.beginResetModel()
        self._ids = ids
        self._row_of = row_of
        self._pages.clear()
        self.endResetModel()

    def ids(self) -> array:
        return self._ids

    def photo_id(self, row: int) -> int:
        return self._ids[row]

    def row_of(self, photo_id: int) -> int | None:
        if self._row_of is None:
            self._row_of = {pid: i for i, pid in enumerate(self._ids)}
        return self._row_of.get(photo_id)

    def info(self, row: int) -> RowInfo | None:
        if not 0 <= row < len(self._ids):
            return None
        page_no = row // PAGE_SIZE
        page = self._pages.get(page_no)
        if page is None:
            lo = page_no * PAGE_SIZE
            chunk = self._ids[lo:lo + PAGE_SIZE]
            try:
                got = fetch_rows(self.lib, chunk)
            except LibraryError as exc:  # never raise inside a paint
                log.warning("cannot read photos: %s", exc)
                got = {}
            page = [got.get(pid) for pid in chunk]
            self._pages[page_no] = page
            while len(self._pages) > MAX_PAGES:
                self._pages.popitem(last=False)
        else:
            self._pages.move_to_end(page_no)
        return page[row - page_no * PAGE_SIZE]

    def refresh_photo(self, photo_id: int) -> None:
        """Re-read one photo's row (its caption or names changed)."""
        row = self.row_of(photo_id)
        if row is None:
            return
        page_no = row // PAGE_SIZE
        page = self._pages.get(page_no)
        if page is not None:
            got = fetch_rows(self.lib, [photo_id])
            page[row - page_no * PAGE_SIZE] = got.get(photo_id)
        self.row_changed.emit(row)

    def refresh_all(self) -> None:
        self._pages.clear()
        self.rows_changed.emit()

    def forget_thumbnails(self) -> None:
        self._pixmaps.clear()
        self._broken.clear()

    # ------------------------------------------------------------------ Qt model API
    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._ids)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = index.row()
        if role == PhotoIdRole:
            return self._ids[row]
        info = self.info(row)
        if info is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return info.filename
        if role == InfoRole:
            return info
        if role == Qt.ItemDataRole.DecorationRole:
            pm = self._pixmaps.get(info.id)
            if pm is not None:
                self._pixmaps.move_to_end(info.id)
                return pm
            if info.id not in self._broken and info.content_hash:
                self.loader.request_photo(info.id, info.path, info.content_hash)
            return None
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [f"<b>{_esc(info.filename)}</b>"]
            if info.names:
                lines.append(_esc(info.names))
            if info.caption:
                lines.append(f"<i>{_esc(info.caption[:300])}</i>")
            elif info.id in self._broken:
                lines.append(f"Cannot show this photo: {_esc(self._broken[info.id])}")
            else:
                lines.append("No caption yet")
            return "<br>".join(lines)
        return None

    def flags(self, index: QModelIndex):
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable if index.isValid() else Qt.ItemFlag.NoItemFlags

    def is_broken(self, photo_id: int) -> str | None:
        return self._broken.get(photo_id)

    # ------------------------------------------------------------------ thumbnails
    def _thumb_ready(self, key, image) -> None:
        if not isinstance(key, int):
            return
        self._pixmaps[key] = QPixmap.fromImage(image)
        while len(self._pixmaps) > MAX_PIXMAPS:
            self._pixmaps.popitem(last=False)
        self._changed(key)

    def _thumb_failed(self, key, reason: str) -> None:
        if not isinstance(key, int):
            return
        self._broken[key] = reason
        self._changed(key)

    def _changed(self, photo_id: int) -> None:
        row = self.row_of(photo_id)
        if row is not None:
            self.row_changed.emit(row)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --------------------------------------------------------------------------------------------------
# Painting a grid cell
# --------------------------------------------------------------------------------------------------

STATUS_COLORS = {"draft": QColor("#e0a100"), "accepted": QColor("#2e9d57"), "exported": QColor("#2e7bd1")}
STATUS_LABELS = {"draft": "Review", "accepted": "Accepted", "exported": "Exported"}


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


# --------------------------------------------------------------------------------------------------
# Small widgets: empty states, banners, import report
# --------------------------------------------------------------------------------------------------

class EmptyState(QWidget):
    """A friendly centred message with optional buttons (for "no photos yet", "nothing matches")."""

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.addStretch(2)
        self.icon = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.title = heading(QLabel(alignment=Qt.AlignmentFlag.AlignCenter), 1.5)
        self.text = QLabel(alignment=Qt.AlignmentFlag.AlignCenter, wordWrap=True)
        self.text.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.text.setFixedWidth(440)
        self.buttons = QHBoxLayout()
        self.buttons.addStretch(1)
        self.buttons.addStretch(1)
        lay.addWidget(self.icon)
        lay.addWidget(self.title)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.text)
        row.addStretch(1)
        lay.addLayout(row)
        lay.addSpacing(10)
        lay.addLayout(self.buttons)
        lay.addStretch(3)
        self._buttons: list[QPushButton] = []

    def set(self, title: str, text: str, buttons: list[tuple[str, Any]] = (), icon: QIcon | None = None) -> None:
        self.title.setText(title)
        self.text.setText(text)
        if icon is not None:
            self.icon.setPixmap(icon.pixmap(72, 72))
        for b in self._buttons:
            b.hide()            # at once: deleteLater waits for the event loop, and both rows showed meanwhile
            b.deleteLater()
        self._buttons = []
        for i, (label, slot) in enumerate(buttons):
            b = QPushButton(label)
            b.clicked.connect(slot)
            if i == 0:
                b.setDefault(True)
            self.buttons.insertWidget(1 + i, b)
            self._buttons.append(b)


class Banner(QFrame):
    """A slim bar above the grid: import progress with Cancel, then a summary with Details."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("banner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 4, 6, 4)
        self.label = QLabel()
        self.bar = QProgressBar(maximumWidth=260, textVisible=True)
        self.action = QPushButton()
        self.close_btn = QToolButton(text="✕", autoRaise=True, toolTip="Dismiss")
        self.close_btn.clicked.connect(self.hide)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.bar)
        lay.addWidget(self.action)
        lay.addWidget(self.close_btn)
        self._slot = None
        self.hide()

    def show_message(self, text: str, progress: tuple[int, int] | None = None, action: str | None = None,
                     slot=None, closable: bool = True) -> None:
        self.label.setText(text)
        self.bar.setVisible(progress is not None)
        if progress is not None:
            done, total = progress
            self.bar.setRange(0, max(total, 0))
            self.bar.setValue(done)
            self.bar.setFormat("%v / %m" if total else "finding photos…")
        if self._slot is not None:
            self.action.clicked.disconnect(self._slot)
            self._slot = None
        self.action.setVisible(action is not None)
        if action is not None:
            self.action.setText(action)
            self.action.clicked.connect(slot)
            self._slot = slot
        self.close_btn.setVisible(closable)
        self.show()


class ImportReportDialog(QDialog):
    """What an import did, and every skipped file with its reason."""

    def __init__(self, reports: list[dict], parent=None):
        super().__init__(parent)
        self.setWindowTitle("Import report")
        self.resize(760, 420)
        lay = QVBoxLayout(self)
        added = sum(r.get("added", 0) for r in reports)
        skipped = [s for r in reports for s in r.get("skipped", [])]
        parts = [f"<b>{count(added, 'photo')}</b> added"]
        for key, label in (("updated", "updated"), ("moved", "found at a new place"), ("missing", "now missing"),
                           ("unchanged", "unchanged")):
            n = sum(r.get(key, 0) for r in reports)
            if n:
                parts.append(f"{n} {label}")
        head = QLabel(", ".join(parts) + ".", wordWrap=True)
        lay.addWidget(head)
        if skipped:
            lay.addWidget(QLabel(f"{count(len(skipped), 'file')} could not be imported:"))
            self.table = QTableWidget(len(skipped), 2)
            self.table.setHorizontalHeaderLabels(["File", "Reason"])
            self.table.verticalHeader().hide()
            self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
            self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
            self.table.horizontalHeader().setStretchLastSection(True)
            for i, s in enumerate(skipped):
                self.table.setItem(i, 0, QTableWidgetItem(s["path"]))
                self.table.setItem(i, 1, QTableWidgetItem(s["reason"]))
            self.table.setColumnWidth(0, 380)
            lay.addWidget(self.table, 1)
        else:
            self.table = None
            lay.addStretch(1)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        bb.rejected.connect(self.reject)
        bb.accepted.connect(self.accept)
        lay.addWidget(bb)


# --------------------------------------------------------------------------------------------------
# The browser page
# --------------------------------------------------------------------------------------------------

class Browser(QWidget):
    """Folder tree | filter bar + grid. Owns the photo model and the import/rescan flow."""

    current_photo_changed = Signal(object)     # photo id or None
    selection_changed = Signal(list)           # photo ids
    library_changed = Signal()                 # photos were imported/rescanned (counts may differ)
    loaded = Signal()                          # first query finished (used by --screenshot and tests)
    photos_loaded = Signal()                   # every query finished (the grid shows the current filter)
    context_menu_requested = Signal(QMenu, list)   # the main window adds its actions

    def __init__(self, library: Library, tasks: TaskRunner, loader: ThumbnailLoader, parent=None):
        super().__init__(parent)
        self.lib = library
        self.library_path = library.path
        self.tasks = tasks
        self.loader = loader
        self.filter = PhotoFilter()
        self._generation = 0
        self._folder_generation = 0
        self._first_load_done = False
        self._importing: threading.Event | None = None
        self._import_reports: list[dict] = []
        self.import_queue: list[str] = []
        self._last_reload = 0.0
        self._after_load: list = []

        # folder tree
        self.folder_model = QStandardItemModel(self)
        self.tree = QTreeView()
        self.tree.setModel(self.folder_model)
        self.tree.setHeaderHidden(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.setFrameShape(QFrame.Shape.NoFrame)
        self.tree.selectionModel().currentChanged.connect(self._folder_chosen)
        tree_box = QWidget()
        tl = QVBoxLayout(tree_box)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.setSpacing(0)
        hdr = QLabel("  Folders")
        hdr.setObjectName("sectionHeader")
        hf = hdr.font()
        hf.setBold(True)
        hdr.setFont(hf)
        hdr.setContentsMargins(4, 8, 4, 6)
        tl.addWidget(hdr)
        tl.addWidget(self.tree, 1)
        tree_box.setMinimumWidth(150)

        # filter bar
        bar = QWidget()
        bl = QHBoxLayout(bar)
        bl.setContentsMargins(8, 6, 8, 6)
        bl.setSpacing(6)
        self.status_group = QButtonGroup(self)
        self.status_buttons: dict[str, QToolButton] = {}
        seg = QHBoxLayout()
        seg.setSpacing(0)
        for i, (key, label) in enumerate(STATUS_FILTERS):
            b = QToolButton(text=label, checkable=True)
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            b.setProperty("filterKey", key)
            b.setObjectName("segment")
            b.setProperty("edge", "first" if i == 0 else "last" if i == len(STATUS_FILTERS) - 1 else "mid")
            b.setCursor(Qt.CursorShape.PointingHandCursor)
            self.status_group.addButton(b)
            self.status_buttons[key] = b
            seg.addWidget(b)
        self.status_buttons["all"].setChecked(True)
        bar.setStyleSheet(SEGMENT_STYLE)
        self.status_group.buttonClicked.connect(lambda b: self.set_filter(status=b.property("filterKey")))
        bl.addLayout(seg)
        bl.addSpacing(8)
        self.person_combo = QComboBox()
        self.person_combo.setMinimumContentsLength(12)
        self.person_combo.setToolTip("Only photos with this person or pet")
        self.person_combo.currentIndexChanged.connect(self._person_chosen)
        bl.addWidget(self.person_combo)
        self.search = QLineEdit(placeholderText="Search captions…", clearButtonEnabled=True)
        self.search.setMinimumWidth(140)
        self.search.textChanged.connect(lambda _: self._search_timer.start())
        self._search_timer = QTimer(self, singleShot=True, interval=250)
        self._search_timer.timeout.connect(lambda: self.set_filter(search=self.search.text()))
        bl.addWidget(self.search, 1)
        self.size_slider = QSlider(Qt.Orientation.Horizontal, minimum=90, maximum=280, value=150)
        self.size_slider.setFixedWidth(90)
        self.size_slider.setToolTip("Thumbnail size")
        self.size_slider.valueChanged.connect(self._thumb_size_changed)
        bl.addWidget(self.size_slider)

        # grid + empty states
        self.model = PhotoListModel(library, loader, self)
        self.view = PhotoGridView()
        self.view.setModel(self.model)
        self.view.selectionModel().selectionChanged.connect(self._selection_changed)
        self.view.selectionModel().currentChanged.connect(self._current_changed)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.empty = EmptyState()
        self.stack = QStackedWidget()
        self.stack.addWidget(self.view)
        self.stack.addWidget(self.empty)
        self.banner = Banner()
        self.count_label = QLabel()
        self.count_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.count_label.setContentsMargins(10, 2, 10, 4)

        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.setSpacing(0)
        rl.addWidget(bar)
        rl.addWidget(self.banner)
        rl.addWidget(self.stack, 1)
        rl.addWidget(self.count_label)

        self.splitter = split_page(self, tree_box, right, (220, 800))

        self.add_folder_handler = None    # set by the main window: opens the folder chooser
        self.reload_concepts()
        self.reload()

    # ------------------------------------------------------------------ filters
    def set_filter(self, **changes) -> bool:
        """Change filters; returns False when nothing changed (no new query)."""
        # one combo shows both: a person, or the photos with suggestions waiting (never the two at once)
        if changes.get("concept_id") is not None:
            changes.setdefault("suggested", False)
        if changes.get("suggested"):
            changes.setdefault("concept_id", None)
        new = replace(self.filter, **changes)
        if new == self.filter:
            return False
        self.filter = new
        if "status" in changes:
            btn = self.status_buttons.get(new.status)
            if btn is not None and not btn.isChecked():
                btn.setChecked(True)
        if "concept_id" in changes or "suggested" in changes:
            i = self.person_combo.findData(SUGGESTED if new.suggested else new.concept_id)
            if i >= 0 and i != self.person_combo.currentIndex():
                self.person_combo.blockSignals(True)
                self.person_combo.setCurrentIndex(i)
                self.person_combo.blockSignals(False)
        if "search" in changes and self.search.text() != new.search:
            self.search.blockSignals(True)
            self.search.setText(new.search)
            self.search.blockSignals(False)
        self.reload_photos()
        return True

    def clear_filters(self) -> None:
        self.tree.setCurrentIndex(self.folder_model.index(0, 0))
        self.set_filter(status="all", concept_id=None, search="", folder=None, suggested=False)

    def _person_chosen(self, i: int) -> None:
        data = self.person_combo.itemData(i)
        if data == SUGGESTED:
            self.set_filter(concept_id=None, suggested=True)
        else:
            self.set_filter(concept_id=data, suggested=False)

    def _folder_chosen(self, current: QModelIndex, _prev=None) -> None:
        self.set_filter(folder=current.data(FolderRole) if current.isValid() else None)

    def reload_concepts(self) -> None:
        """Refill the person/pet filter (after concepts were added, renamed or removed)."""
        keep = self.filter.concept_id
        self.person_combo.blockSignals(True)
        self.person_combo.clear()
        self.person_combo.addItem("Everyone", None)
        # Not a person but "whose suggestions wait": in this combo, the filter bar gets no wider (a wider
        # bar squeezed the photo panel on a 1280-pixel screen)
        self.person_combo.addItem("Suggested", SUGGESTED)
        self.person_combo.setItemData(1, "Photos where RePIC suggests who is in them and waits for you to "
                                      "confirm or reject (after Index Faces in Library)", Qt.ItemDataRole.ToolTipRole)
        self.person_combo.insertSeparator(2)
        for c in self.lib.concepts.all():
            self.person_combo.addItem(c.name, c.id)
        i = self.person_combo.findData(SUGGESTED if self.filter.suggested else keep)
        self.person_combo.setCurrentIndex(max(0, i))
        self.person_combo.blockSignals(False)
        if keep is not None and i < 0:
            self.set_filter(concept_id=None)

    # ------------------------------------------------------------------ loading
    def reload(self) -> None:
        self.reload_photos()
        self.reload_folders()

    def reload_photos(self, keep_selection: bool = True) -> None:
        self._generation += 1
        gen = self._generation
        f = self.filter
        path = self.library_path
        if f.search.strip():
            try:
                fts_query(f.search)
            except LibraryError:
                f = replace(f, search="")

        def work(lib):
            ids = query_photo_ids(lib, f)
            total = lib.photos.count()
            return ids, {pid: i for i, pid in enumerate(ids)}, total

        selected = self.selected_ids() if keep_selection else []
        current = self.current_id() if keep_selection else None
        self._last_reload = time.monotonic()
        self.tasks.run(work, lambda r: self._photos_loaded(gen, r, selected, current),
                       lambda m, d: self._query_failed(gen, m, d), library=path)

    def _photos_loaded(self, gen: int, result, selected: list[int], current: int | None) -> None:
        if gen != self._generation:
            return
        ids, row_of, total = result
        self.model.set_ids(ids, row_of)
        self._library_total = total
        sel = self.view.selectionModel()
        if selected or current is not None:
            for pid in selected:
                row = row_of.get(pid)
                if row is not None:
                    sel.select(self.model.index(row), QItemSelectionModel.SelectionFlag.Select)
            if current is not None and current in row_of:
                sel.setCurrentIndex(self.model.index(row_of[current]), QItemSelectionModel.SelectionFlag.NoUpdate)
                self.view.scroll_to_row(row_of[current])
        if not self.view.currentIndex().isValid() and len(ids):
            sel.setCurrentIndex(self.model.index(0), QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self._update_empty(len(ids), total)
        self._selection_changed()
        after, self._after_load = self._after_load, []
        for fn in after:
            fn()
        if not self._first_load_done:
            self._first_load_done = True
            self.loaded.emit()
        self.photos_loaded.emit()

    def loaded_once_then(self, fn) -> None:
        """Run fn after the next photo query lands (e.g. select a photo once a new filter is shown)."""
        self._after_load.append(fn)

    def _query_failed(self, gen: int, message: str, details: str) -> None:
        if gen != self._generation:
            return
        log.error("photo query failed: %s\n%s", message, details)
        self.banner.show_message(f"Cannot list photos: {message}")

    def _update_empty(self, n: int, total: int) -> None:
        if n:
            self.stack.setCurrentWidget(self.view)
        elif total == 0:
            self.empty.set("No photos yet",
                           "Drop a folder of photos onto this window, or choose one. Your files stay where they "
                           "are: RePIC Desktop only reads them.",
                           [("Add a photo folder…", self._ask_folder)], self.window().windowIcon())
            self.stack.setCurrentWidget(self.empty)
        else:
            self.empty.set("No photos match", "Try another filter or search, or show everything.",
                           [("Clear filters", self.clear_filters)])
            self.stack.setCurrentWidget(self.empty)
        self._update_count(n, total)

    def _update_count(self, n: int | None = None, total: int | None = None) -> None:
        n = self.model.rowCount() if n is None else n
        total = getattr(self, "_library_total", n) if total is None else total
        sel = len(self.view.selectionModel().selectedIndexes())
        text = f"{n:,} photo{'s' if n != 1 else ''}"
        if n != total:
            text += f" of {total:,}"
        if sel > 1:
            text += f"  ·  {sel:,} selected"
        self.count_label.setText(text)

    def _ask_folder(self) -> None:
        if self.add_folder_handler is not None:
            self.add_folder_handler()

    def reload_folders(self) -> None:
        self._folder_generation += 1
        gen = self._folder_generation
        path = self.library_path

        def work(lib):
            return folder_tree(lib)

        self.tasks.run(work, lambda r: self._folders_loaded(gen, r), library=path)

    def _folders_loaded(self, gen: int, result) -> None:
        if gen != self._folder_generation:
            return
        total, tops = result
        keep = self.filter.folder
        self.tree.selectionModel().blockSignals(True)
        self.folder_model.clear()
        all_item = QStandardItem(f"All photos  ({total:,})")
        all_item.setData(None, FolderRole)
        f = all_item.font()
        f.setBold(True)
        all_item.setFont(f)
        self.folder_model.appendRow(all_item)
        found = None

        def add(parent: QStandardItem, node: FolderNode):
            nonlocal found
            it = QStandardItem(f"{node.label}  ({node.total:,})")
            it.setData(node.path, FolderRole)
            it.setToolTip(node.path)
            parent.appendRow(it)
            if node.path == keep:
                found = it
            for c in node.children:
                add(it, c)

        root = self.folder_model.invisibleRootItem()
        for t in tops:
            add(root, t)
        self.tree.expandToDepth(0)
        target = found.index() if found is not None else self.folder_model.index(0, 0)
        self.tree.setCurrentIndex(target)
        self.tree.selectionModel().blockSignals(False)
        if found is None and keep is not None:
            self.set_filter(folder=None)

    # ------------------------------------------------------------------ selection
    def selected_ids(self) -> list[int]:
        rows = sorted(i.row() for i in self.view.selectionModel().selectedIndexes())
        return [self.model.photo_id(r) for r in rows]

    def current_id(self) -> int | None:
        idx = self.view.currentIndex()
        return self.model.photo_id(idx.row()) if idx.isValid() else None

    def select_photo(self, photo_id: int) -> bool:
        row = self.model.row_of(photo_id)
        if row is None:
            return False
        idx = self.model.index(row)
        self.view.selectionModel().setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.view.scroll_to_row(row)
        return True

    def step(self, delta: int) -> None:
        """Next (+1) / previous (-1) photo in the grid."""
        n = self.model.rowCount()
        if n == 0:
            return
        cur = self.view.currentIndex()
        row = (cur.row() + delta) if cur.isValid() else 0
        row = max(0, min(n - 1, row))
        idx = self.model.index(row)
        self.view.selectionModel().setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.view.scroll_to_row(row)

    def _current_changed(self, current: QModelIndex, _prev) -> None:
        self.current_photo_changed.emit(self.model.photo_id(current.row()) if current.isValid() else None)

    def _selection_changed(self, *_):
        self._update_count()
        self.selection_changed.emit(self.selected_ids())

    def _context_menu(self, pos: QPoint) -> None:
        ids = self.selected_ids()
        if not ids:
            return
        menu = QMenu(self)
        self.context_menu_requested.emit(menu, ids)
        if not menu.isEmpty():
            menu.exec(self.view.viewport().mapToGlobal(pos))

    def _thumb_size_changed(self, v: int) -> None:
        self.view.set_thumb_size(v)
        self.loader.display_size = max(96, v)
        self.model.forget_thumbnails()
        self.loader.clear()

    def refresh_photo(self, photo_id: int) -> None:
        self.model.refresh_photo(photo_id)

    # ------------------------------------------------------------------ import / rescan
    @property
    def importing(self) -> bool:
        return self._importing is not None

    def import_folders(self, folders: list[str]) -> None:
        """Import (or rescan) folders one after the other in a worker; progress in the banner."""
        folders = [os.path.abspath(f) for f in folders]
        self.import_queue.extend(folders)
        if self._importing is None:
            self._import_reports = []
            self._next_import()

    def rescan(self) -> None:
        """Rescan the folder chosen in the tree, or every imported top folder."""
        if self.filter.folder is not None:
            self.import_folders([self.filter.folder])
            return
        path = self.library_path

        def work(lib):
            return import_roots(lib)

        def done(roots: list[str]) -> None:
            if roots:
                self.import_folders(roots)
            else:
                self.banner.show_message("Nothing to rescan yet: add a photo folder first.")

        self.tasks.run(work, done, library=path)

    def cancel_import(self) -> None:
        if self._importing is not None:
            self._importing.set()
            self.import_queue.clear()

    def _next_import(self) -> None:
        if not self.import_queue:
            self._importing = None
            self._import_finished()
            return
        folder = self.import_queue.pop(0)
        cancel = threading.Event()
        self._importing = cancel
        path = self.library_path
        name = os.path.basename(folder.rstrip("/")) or folder

        def work(lib, progress):
            from ...core.scanner import scan_folder
            last = [0.0]

            def on_progress(done: int, total: int, p: str) -> None:
                t = time.monotonic()
                if done == total or t - last[0] > 0.1:
                    last[0] = t
                    progress((done, total))

            progress((0, 0))
            return scan_folder(lib, folder, progress=on_progress, cancel=cancel.is_set).as_dict()

        def on_progress(value) -> None:
            done, total = value
            self.banner.show_message(f"Importing <b>{_esc(name)}</b>…", (done, total), "Cancel",
                                     self.cancel_import, closable=False)
            if time.monotonic() - self._last_reload > 2.0:  # let photos appear while a big import runs
                self.reload_photos()

        def on_error(message: str, details: str) -> None:
            log.warning("import of %s failed: %s", folder, message)
            self._import_reports.append({"root": folder, "error": message, "added": 0,
                                         "skipped": [{"path": folder, "reason": message}]})
            self._next_import()

        def on_done(report: dict) -> None:
            self._import_reports.append(report)
            self._next_import()

        self.banner.show_message(f"Importing <b>{_esc(name)}</b>…", (0, 0), "Cancel", self.cancel_import,
                                 closable=False)
        self.tasks.run(work, on_done, on_error, on_progress, library=path)

    def _import_finished(self) -> None:
        reports = self._import_reports
        added = sum(r.get("added", 0) for r in reports)
        skipped = sum(len(r.get("skipped", [])) for r in reports)
        cancelled = any(r.get("cancelled") for r in reports)
        other = sum(r.get(k, 0) for r in reports for k in ("updated", "moved", "missing", "restored"))
        text = f"Import {'cancelled' if cancelled else 'finished'}: {count(added, 'photo')} added"
        if other:
            text += f", {other:,} updated/moved/missing"
        if skipped:
            text += f", <b>{count(skipped, 'file')} skipped</b>"
        self.banner.show_message(text + ".", None, "Details…", self.show_import_report)
        self.reload()
        self.library_changed.emit()

    def show_import_report(self) -> ImportReportDialog:
        dlg = ImportReportDialog(self._import_reports, self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.show()
        self._report_dialog = dlg
        return dlg

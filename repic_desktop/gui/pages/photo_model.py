"""The photo grid's item model: the ids of the photos that match the filter, with row data fetched on demand
in pages (see browser.py for why).
"""
from __future__ import annotations

import logging
from array import array
from collections import OrderedDict

from PySide6.QtCore import QAbstractListModel, QModelIndex, Qt, Signal
from PySide6.QtGui import QPixmap

from ...core.library import Library, LibraryError
from ...core.photo_queries import RowInfo, fetch_rows
from ..widgets.thumbnails import ThumbnailLoader

log = logging.getLogger(__name__)
PAGE_SIZE = 128
MAX_PAGES = 64                 # 8192 rows of text data cached
MAX_PIXMAPS = 1200             # thumbnails kept as pixmaps (at 160 px: ~100 MB worst case)
PhotoIdRole = Qt.ItemDataRole.UserRole + 1
InfoRole = Qt.ItemDataRole.UserRole + 2


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
            lines = [f"<b>{esc(info.filename)}</b>"]
            if info.names:
                lines.append(esc(info.names))
            if info.caption:
                lines.append(f"<i>{esc(info.caption[:300])}</i>")
            elif info.id in self._broken:
                lines.append(f"Cannot show this photo: {esc(self._broken[info.id])}")
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


def esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

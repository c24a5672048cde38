"""The import report: what an import did, and every file it skipped with the reason."""
from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractItemView, QDialog, QDialogButtonBox, QHeaderView, QLabel, QTableWidget, QTableWidgetItem,
    QVBoxLayout,
)

from ..wording import count


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

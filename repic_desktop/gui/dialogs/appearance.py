"""Settings → Appearance: the colour theme (system / light / dark), shown live while the dialog is open,
kept with Save and put back with Cancel."""
from __future__ import annotations

from PySide6.QtWidgets import QApplication, QButtonGroup, QDialog, QLabel, QRadioButton, QVBoxLayout, QWidget

from ..theme import THEMES, saved_theme, set_theme


class AppearanceTab(QWidget):
    def __init__(self, dialog: QDialog, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("appearanceTab")
        self.original = saved_theme()
        # what is shown now (REPIC_THEME may override the saved choice): what Cancel goes back to
        self.applied = getattr(QApplication.instance(), "_repic_scheme", "") or self.original
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Theme"))
        self.group = QButtonGroup(self)
        self.buttons: dict[str, QRadioButton] = {}
        for key, label in THEMES:
            b = QRadioButton(label, self)
            b.setProperty("theme", key)
            self.group.addButton(b)
            self.buttons[key] = b
            lay.addWidget(b)
        self.buttons[self.original].setChecked(True)
        lay.addStretch(1)
        self.group.buttonToggled.connect(lambda b, on: on and self._preview(b.property("theme")))
        dialog.accepted.connect(self._keep)
        dialog.rejected.connect(self._put_back)

    def choice(self) -> str:
        b = self.group.checkedButton()
        return b.property("theme") if b is not None else "system"

    def _preview(self, name: str) -> None:
        set_theme(QApplication.instance(), name, save=False)

    def _keep(self) -> None:
        set_theme(QApplication.instance(), self.choice(), save=True)

    def _put_back(self) -> None:
        if self.choice() != self.applied:
            set_theme(QApplication.instance(), self.applied, save=False)

"""Scrolling a form with the mouse wheel must scroll the form, never change the combo box or number box
that happens to pass under the pointer (a silent change of the base model or the step count).

`guard_wheel(container)` installs one filter on every combo and spin box inside `container`: without
keyboard focus they hand the wheel event to the scroll area around them; once the user clicked or
tabbed into one, the wheel changes it as usual.
"""
from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractScrollArea, QAbstractSpinBox, QComboBox, QWidget


class WheelGuard(QObject):
    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() != QEvent.Type.Wheel or not isinstance(obj, QWidget) or obj.hasFocus():
            return False
        area = obj.parentWidget()
        while area is not None and not isinstance(area, QAbstractScrollArea):
            area = area.parentWidget()
        if area is not None:
            QCoreApplication.sendEvent(area.viewport(), event)
        else:
            event.ignore()
        return True            # the combo / spin box itself never sees it


def guard_wheel(container: QWidget) -> WheelGuard:
    guard = WheelGuard(container)
    for w in container.findChildren(QWidget):
        if isinstance(w, (QComboBox, QAbstractSpinBox)):
            w.setFocusPolicy(Qt.FocusPolicy.StrongFocus)   # the wheel alone never focuses it
            w.installEventFilter(guard)
    return guard

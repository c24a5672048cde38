"""Caption highlighting: the names of tagged people and pets, coloured in the caption editor."""
from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QPalette, QSyntaxHighlighter, QTextCharFormat

from ...captioning.prompt import TAG_RE


def tag_colors(palette: QPalette) -> tuple[QColor, QColor, QColor]:
    """(known tag text, known tag background, unknown/missing warning) for the current palette."""
    dark = palette.color(QPalette.ColorRole.Base).lightness() < 128
    if dark:
        return QColor("#8cc8ff"), QColor(60, 110, 170, 90), QColor("#ffb74d")
    return QColor("#0b5cad"), QColor(40, 120, 220, 38), QColor("#b26a00")


class CaptionHighlighter(QSyntaxHighlighter):
    """Highlights `<Name>` tags: known names as name chips, unknown ones with an orange wavy underline."""

    def __init__(self, document, palette: QPalette):
        super().__init__(document)
        self.known: dict[str, str] = {}
        self.palette = palette

    def set_known(self, names) -> None:
        self.known = {n.casefold(): n for n in names}
        self.rehighlight()

    def set_palette(self, palette: QPalette) -> None:
        self.palette = palette
        self.rehighlight()

    def highlightBlock(self, text: str) -> None:
        fg, bg, warn = tag_colors(self.palette)
        known = QTextCharFormat()
        known.setForeground(fg)
        known.setBackground(bg)
        known.setFontWeight(QFont.Weight.DemiBold)
        unknown = QTextCharFormat()
        unknown.setForeground(warn)
        unknown.setUnderlineStyle(QTextCharFormat.UnderlineStyle.WaveUnderline)
        unknown.setUnderlineColor(warn)
        unknown.setToolTip("no person or pet with this name")
        for m in TAG_RE.finditer(text):
            fmt = known if m.group(1).strip().casefold() in self.known else unknown
            self.setFormat(m.start(), m.end() - m.start(), fmt)

"""The application layer: decisions the CLI and the GUI share (which caption job a selection makes, what a
caption review step changes), so the two fronts cannot drift apart. No Qt and no torch at import."""

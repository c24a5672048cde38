"""Entry point of the PyInstaller bundle: one executable for `repic`, `repic-train` and the GUI.

A frozen app has no Python interpreter to run `python -m trainer`, yet the GUI starts training as
`[sys.executable, "-m", "trainer", ...]` (a child process, so a crash in training never takes the
window with it). In the bundle sys.executable is this program, so it accepts `-m trainer` (and
`-m repic_desktop`) itself, plus `train ...` as the spelling a person would type.
"""
from __future__ import annotations

import multiprocessing
import sys


def _run(argv: list[str]) -> int:
    if argv[:2] == ["-m", "trainer"] or argv[:1] == ["train"]:
        rest = argv[2:] if argv[0] == "-m" else argv[1:]
        from trainer.__main__ import main as train_main
        sys.argv = ["repic-train", *rest]
        return train_main(rest)
    if argv[:2] == ["-m", "repic_desktop"]:
        argv = argv[2:]
    if argv[:1] == ["-c"]:
        # Libraries that probe their interpreter with `sys.executable -c ...` get a clear refusal
        # instead of a second GUI.
        print("repic (bundle): -c is not supported in the frozen app", file=sys.stderr)
        return 2
    from repic_desktop.cli import main as cli_main
    sys.argv = ["repic", *argv]
    return cli_main(argv)


if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(_run(sys.argv[1:]))

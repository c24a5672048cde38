"""`repic` run in-process for tests: (exit code, stdout, stderr), or the parsed --json output of a command
that must succeed."""
from __future__ import annotations

import json

from repic_desktop.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])  # paths may be given as Path
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)

"""`repic eval`: RePIC's caption-level name precision/recall/F1 over results files or the library's
accepted captions (the metric lives in captioning/evaluate.py; this is only the command line)."""
from __future__ import annotations

import argparse
from typing import Any

from ..captioning.evaluate import RULE_HELP, RULES, EvalError, evaluate_file, evaluate_library, load_database
from ..core import paths
from ..core.arg_types import nonempty_text
from ..core.library import Library
from .common import UserError
from .output import emit as _emit


def add_eval_command(subparsers, common_parent: argparse.ArgumentParser) -> None:
    s = subparsers.add_parser(
        "eval", parents=[common_parent], help="name precision/recall/F1 of captions (RePIC's metric)",
        description="Score captions the way RePIC's evaluation scripts do: is every ground-truth person/pet "
                    "named? Reads RePIC results files (JSON rows [image_path, [gt keys], caption, question]) "
                    "or, with --library-captions or no file, the library's accepted captions.")
    s.add_argument("results", nargs="*", metavar="RESULTS.json", help="RePIC results file(s), scored one by one")
    s.add_argument("--rule", choices=RULES, default="name-aware",
                   help="; ".join(f"{k}: {v}" for k, v in RULE_HELP.items()) + " (default: name-aware)")
    s.add_argument("--database", type=nonempty_text, metavar="database.json",
                   help="RePIC database.json whose display names the name-aware rule also accepts")
    s.add_argument("--library-captions", action="store_true",
                   help="score the library's accepted/exported captions against the photos' tagged concepts")
    s.add_argument("--details", action="store_true", help="per-sample results (all in --json, misses in text)")
    s.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    results = []
    try:
        names = load_database(args.database) if args.database else None
        for path in args.results:
            results.append(evaluate_file(path, args.rule, database=names, details=args.details))
    except EvalError as exc:
        raise UserError(str(exc)) from None
    if args.library_captions or not args.results:
        lib_path = paths.resolve_library_path(getattr(args, "library", None))
        if not lib_path.exists():
            raise UserError(f"no library at {lib_path} (give a RESULTS.json, or --library PATH)")
        with Library(lib_path) as lib:
            r = evaluate_library(lib, args.rule, details=args.details)
        if r.samples == 0:
            raise UserError(f"the library {lib_path} has no accepted captions to evaluate "
                            f"(accept or export some captions first)")
        results.append(r)
    data: dict[str, Any] = {"rule": args.rule, "results": [r.as_dict() for r in results]}
    if args.database:
        data["database"] = args.database
    _emit(args, data, lambda: _table(args, results))
    return 0


def _table(args: argparse.Namespace, results: list) -> str:
    note = RULE_HELP[args.rule]
    if args.database and args.rule != "name-aware":
        note += "; --database is not used by this rule"
    width = max(12, *(len(r.source) for r in results))
    head = (f"{'source':<{width}}  {'P':>5}  {'R':>5}  {'F1':>5}  {'correct':>7}  {'predicted':>9}  "
            f"{'gt':>5}  {'miss':>5}  {'none':>5}  {'samples':>7}")
    lines = [f"rule {args.rule} ({note})", head]
    for r in results:
        lines.append(f"{r.source:<{width}}  {r.precision * 100:5.1f}  {r.recall * 100:5.1f}  {r.f1 * 100:5.1f}  "
                     f"{r.correct:>7}  {r.predicted:>9}  {r.gt:>5}  {r.miss:>5}  {r.none:>5}  {r.samples:>7}")
    lines.append("P = correct / predicted (MISS counts), R = correct / gt, in percent")
    if args.details:
        for r in results:
            for d in r.details or []:
                bad = [f"{p['concept']} {p['result']}" for p in d["predictions"] if p["result"] != "correct"]
                if bad:
                    ref = f"photo {d['photo_id']}" if "photo_id" in d else d["image"]
                    lines.append(f"{r.source}: {ref}: {', '.join(bad)}")
    return "\n".join(lines)

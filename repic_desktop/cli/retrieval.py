"""`repic suggest`, `repic index`, `repic faces ...`: who is in a photo (suggestions the user confirms)."""
from __future__ import annotations

import argparse
from typing import Any

from ..core import paths
from ..core.arg_types import nonempty_text, record_id, whole_number
from ..core.images import UnusableImage
from ..core.library import Library
from ..core.training_photos import photo_counts
from ..retrieval import service
from ..retrieval.base import MatcherUnavailable
from ..retrieval.registry import DEFAULT_MATCHER, FACE_MATCHER, MATCHERS
from .common import UserError
from .output import bar_progress, emit as _emit, progress_bar


def _user_error(msg: str) -> Exception:
    return UserError(msg)


def _matcher(args: argparse.Namespace):
    try:
        return service.get_matcher(args.matcher)
    except MatcherUnavailable as exc:
        raise _user_error(str(exc)) from None


TOP_K_MAX = 1000  # concepts per photo; a larger K would overflow SQLite when the job stores it


def _check_match_options(args: argparse.Namespace) -> None:
    """--top-k and --threshold, checked before anything is opened (one-line errors, no traceback)."""
    if getattr(args, "top_k", None) is not None and not 1 <= args.top_k <= TOP_K_MAX:
        raise _user_error(f"--top-k must be from 1 to {TOP_K_MAX} (got {args.top_k})")
    thr = getattr(args, "threshold", None)
    if thr is not None and not 0 < thr <= 1:
        raise _user_error(f"--threshold is a cosine similarity above 0 and at most 1 (got {thr:g})")


def _open(args: argparse.Namespace) -> Library:
    return Library(paths.resolve_library_path(args.library))


def _suggestion_line(s) -> str:
    if s.weak:
        where = f" at {','.join(map(str, s.box.as_list()))}" if s.box else ""
        return f"  <{s.concept_name}>  weak hint: a cat was seen{where}, not recognised  [{s.status}]"
    where = f"  {s.kind} at {','.join(map(str, s.box.as_list()))}" if s.box else ""
    return f"  <{s.concept_name}>  score {s.score:.3f} (distance {s.distance:.3f}){where}  [{s.status}]"


def cmd_suggest(args: argparse.Namespace) -> int:
    if args.confirm or args.reject or args.reset:
        if args.photos:
            raise _user_error("--confirm/--reject/--reset take PHOTO NAME themselves: give no other photos")
        photo_ref, name = args.confirm or args.reject or args.reset
        with _open(args) as lib:
            photo = lib.photos.resolve(photo_ref)
            s = service.find_suggestion(lib, photo.id, name)
            if args.reset:
                if s.status == "pending":
                    raise _user_error(f"<{s.concept_name}> on {photo.path} is already pending: nothing to reset")
                undone = service.reset_suggestion(lib, s.id)
            elif args.confirm:
                service.confirm_suggestion(lib, s.id)
            else:
                service.reject_suggestion(lib, s.id)
            status = "pending" if args.reset else "confirmed" if args.confirm else "rejected"
            data = {"photo": photo.id, "concept": s.concept_name, "status": status,
                    "concepts": [c.name for c in lib.concepts.of_photo(photo.id)]}
        if args.reset:
            data.update(was=undone["was"], untagged=undone["untagged"], regions_removed=undone["regions_removed"])
            note = (" (its tag was removed)" if undone["untagged"] else
                    " (the tag stays: it was there before the confirmation)" if undone["was"] == "confirmed" else "")
            _emit(args, data, f"<{s.concept_name}> on {photo.path} is a pending suggestion again (was {undone['was']})"
                              + note)
            return 0
        _emit(args, data, f"{status} <{s.concept_name}> on {photo.path}"
                          + (" (tagged)" if args.confirm else " (it will not be suggested again)"))
        return 0
    if not args.photos:
        raise _user_error("say which photos: repic suggest PHOTO ... (or --confirm/--reject/--reset PHOTO NAME)")
    _check_match_options(args)
    failed = 0
    with _open(args) as lib:
        photos = [lib.photos.resolve(p) for p in args.photos]
        matcher = _matcher(args)
        rows: list[dict[str, Any]] = []
        for p in photos:
            row: dict[str, Any] = {"photo": p.id, "path": p.path, "matcher": matcher.id}
            try:
                found = service.suggest_photo(lib, p.id, matcher, top_k=args.top_k, threshold=args.threshold)
                row["suggestions"] = [s.as_dict() for s in found]
                row["_obj"] = found
            except UnusableImage as exc:
                row["error"] = str(exc)
                row["suggestions"], row["_obj"] = [], []
                failed += 1
            rows.append(row)

    def text() -> str:
        lines = []
        for r in rows:
            lines.append(f"{r['path']}  (id {r['photo']})")
            if "error" in r:
                lines.append(f"  cannot read it: {r['error']}")
            elif not r["_obj"]:
                lines.append("  no known person or pet found")
            lines += [_suggestion_line(s) for s in r["_obj"]]
        return "\n".join(lines)

    data = [{k: v for k, v in r.items() if k != "_obj"} for r in rows]
    _emit(args, data if len(data) != 1 else data[0], text)
    return 3 if failed else 0


def cmd_index(args: argparse.Namespace) -> int:
    _check_match_options(args)
    with _open(args) as lib:
        photo_ids = [lib.photos.resolve(p).id for p in args.photos] if args.photos else None
        matcher = _matcher(args)
        bar = progress_bar(args, f"indexing ({matcher.id})")
        draw = bar_progress(bar)
        try:
            summary = service.run_index_job(lib, matcher, photo_ids=photo_ids, top_k=args.top_k,
                                            threshold=args.threshold,
                                            progress=lambda done, total, pid: draw(done, total, str(pid)))
        finally:
            if bar is not None:
                bar.close()
        names = {p.id: p.path for p in lib.photos.list(include_missing=True)} if summary["errors"] else {}
        counts = lib.retrieval.counts(matcher.id)
    summary["errors"] = {str(k): v for k, v in summary["errors"].items()}
    summary["counts"] = counts

    def text() -> str:
        lines = [f"job {summary['job_id']} ({matcher.id}): {summary['indexed']} indexed, {summary['skipped']} "
                 f"unchanged, {summary['failed']} failed; {counts['pending']} suggestion(s) waiting for review"]
        if summary.get("superseded"):
            lines.append(f"  (replaces interrupted job(s) {', '.join(map(str, summary['superseded']))}; "
                         f"what they finished was kept)")
        refs = summary.get("references", {})
        if refs.get("failed"):
            lines.append(f"  {refs['failed']} reference photo(s) had nothing to match (no face found?)")
        for pid, err in summary["errors"].items():
            lines.append(f"  {names.get(int(pid), pid)}: {err}")
        return "\n".join(lines)

    _emit(args, summary, text)
    return 0


def cmd_faces_clusters(args: argparse.Namespace) -> int:
    with _open(args) as lib:
        clusters = service.face_clusters(lib, min_size=args.min_size)
        paths_ = {p.id: p.path for p in lib.photos.list(include_missing=True)}
    data = [c.as_dict() for c in clusters]

    def text() -> str:
        if not clusters:
            return "no unknown faces (run `repic index` first, or every face already has a name)"
        lines = []
        for c in clusters:
            lines.append(f"cluster {c.id}: {c.size} face(s)")
            for m in c.members[:args.show]:
                lines.append(f"  face {m.crop_id}: {paths_.get(m.photo_id, m.photo_id)}  at "
                             f"{','.join(map(str, m.box.as_list()))}")
            if c.size > args.show:
                lines.append(f"  ... and {c.size - args.show} more")
        lines.append("name one with `repic faces name CLUSTER NAME`; dismiss strangers or false detections with "
                     "`repic faces ignore CLUSTER` (or --face ID)")
        return "\n".join(lines)

    _emit(args, data, text)
    return 0


def cmd_faces_name(args: argparse.Namespace) -> int:
    with _open(args) as lib:
        size = len(lib.retrieval.face_cluster_members(args.cluster))
        c = service.name_cluster(lib, args.cluster, args.name, kind=args.kind)
        refs = len(lib.concepts.refs(c.id))
        counts = photo_counts(lib)[c.id]
    # "photos" is the count every list and the trainer show: tagged photos that are not references
    data = {"cluster": args.cluster, "concept": c.as_dict(), "faces": size, "references": refs,
            "photos": counts.photos}
    _emit(args, data, f"named cluster {args.cluster} <{c.name}>: {size} photo(s) tagged, now {counts.text()}; "
                      f"run `repic index` to find them elsewhere")
    return 0


def cmd_faces_ignore(args: argparse.Namespace) -> int:
    if (args.cluster is None) == (not args.face):
        raise _user_error("say what to ignore: a CLUSTER, or --face ID ... (not both)")
    with _open(args) as lib:
        if args.cluster is not None:
            n = service.ignore_cluster(lib, args.cluster)
        else:
            n = service.ignore_faces(lib, args.face)
    what = f"cluster {args.cluster}" if args.cluster is not None else f"face(s) {', '.join(map(str, args.face))}"
    _emit(args, {"cluster": args.cluster, "faces": args.face, "ignored": n},
          f"ignored {what}: {n} face(s) will not be suggested or grouped again "
          f"(`repic faces ignored` lists them, `repic faces unignore` brings them back)")
    return 0


def cmd_faces_unignore(args: argparse.Namespace) -> int:
    if bool(args.faces) == args.all:
        raise _user_error("say which faces: FACE_ID ... or --all")
    with _open(args) as lib:
        n = service.unignore_faces(lib, None if args.all else args.faces)
    _emit(args, {"unignored": n}, f"{n} face(s) are unknown faces again (see `repic faces clusters`)")
    return 0


def cmd_faces_ignored(args: argparse.Namespace) -> int:
    with _open(args) as lib:
        faces = service.ignored_faces(lib)
        paths_ = {p.id: p.path for p in lib.photos.list(include_missing=True)}
    data = [dict(f.as_dict(), path=paths_.get(f.photo_id)) for f in faces]

    def text() -> str:
        if not faces:
            return "no ignored faces"
        lines = [f"face {f.crop_id}: {paths_.get(f.photo_id, f.photo_id)}  at {','.join(map(str, f.box.as_list()))}"
                 for f in faces]
        lines.append("bring one back with `repic faces unignore FACE_ID` (or --all)")
        return "\n".join(lines)

    _emit(args, data, text)
    return 0


def add_retrieval_commands(sub, common: argparse.ArgumentParser) -> None:
    def matcher_opts(s):
        s.add_argument("--matcher", type=nonempty_text, metavar="ID",
                       help=", ".join(MATCHERS) + f" (default: Settings' matcher, else {DEFAULT_MATCHER})")
        s.add_argument("--top-k", type=int, metavar="K",
                       help="at most K concepts per photo (default: Settings' top-K, else 5)")
        s.add_argument("--threshold", type=float, metavar="SIM",
                       help="cosine similarity needed for a match, 0-1 (default: Settings' threshold for the "
                            f"default matcher, else the matcher's own, {MATCHERS[FACE_MATCHER].threshold} for faces)")

    s = sub.add_parser("suggest", parents=[common], help="who is probably in these photos (suggestions to review)")
    s.add_argument("photos", nargs="*", metavar="PHOTO", help="photo ids or paths")
    matcher_opts(s)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--confirm", nargs=2, metavar=("PHOTO", "NAME"), help="accept a suggestion: tag the photo")
    g.add_argument("--reject", nargs=2, metavar=("PHOTO", "NAME"), help="reject a suggestion for good")
    g.add_argument("--reset", nargs=2, metavar=("PHOTO", "NAME"),
                   help="undo a confirm or reject: the suggestion is pending again (a tag the confirmation "
                        "added is removed; one you added yourself stays)")
    s.set_defaults(func=cmd_suggest)

    s = sub.add_parser("index", parents=[common],
                       help="find known people and pets in the whole library (resumable background job)")
    s.add_argument("photos", nargs="*", metavar="PHOTO", help="only these photos (default: all)")
    matcher_opts(s)
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_index)

    faces = sub.add_parser("faces", help="unknown faces").add_subparsers(dest="sub", metavar="SUBCOMMAND")
    faces.required = True
    s = faces.add_parser("clusters", parents=[common], help="groups of faces that match no one yet")
    s.add_argument("--min-size", type=whole_number(1, 10 ** 6), default=1, help="hide smaller clusters")
    s.add_argument("--show", type=whole_number(1, 10 ** 6), default=5, help="faces listed per cluster (text output)")
    s.set_defaults(func=cmd_faces_clusters)
    s = faces.add_parser("name", parents=[common], help="name a cluster: tags its photos, adds references")
    s.add_argument("cluster", type=record_id)
    s.add_argument("name")
    s.add_argument("--kind", default="person", choices=["person", "pet", "other"])
    s.set_defaults(func=cmd_faces_name)
    s = faces.add_parser("ignore", parents=[common],
                         help="not a face, or a stranger: never suggest or group these faces again")
    s.add_argument("cluster", type=record_id, nargs="?", help="a cluster id from `repic faces clusters`")
    s.add_argument("--face", type=record_id, nargs="+", metavar="ID",
                   help="single faces instead (ids from `faces clusters`)")
    s.set_defaults(func=cmd_faces_ignore)
    s = faces.add_parser("ignored", parents=[common], help="list the faces you ignored")
    s.set_defaults(func=cmd_faces_ignored)
    s = faces.add_parser("unignore", parents=[common], help="bring ignored faces back to the unknown faces")
    s.add_argument("faces", type=record_id, nargs="*", metavar="FACE_ID")
    s.add_argument("--all", action="store_true", help="every ignored face")
    s.set_defaults(func=cmd_faces_unignore)

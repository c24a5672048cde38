"""`repic`: every library capability from the command line (a thin front over the same services as the GUI).

User errors print one line (`repic: error: ...`) and exit 1; usage errors exit 2 (argparse). `--json`
prints machine-readable output on stdout and nothing else there (during the command file descriptor 1
points to stderr, so not even a C library can write into the JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sqlite3
import sys
from typing import Any

from .. import APP_NAME, __version__
from ..app.adapters import read_manifest
from ..captioning.demo_model import build_demo_model
from ..captioning.device import device_summary
from ..core import paths
from ..core.arg_types import nonempty_path, nonempty_text, record_id, text as one_line_text, whole_number
from ..core.concepts import export_repic_database, import_reference_file, import_repic_database
from ..core.library import Box, Library, LibraryError, parse_box
from ..core.scanner import scan_folder
from ..core.settings import Settings
from ..core.terminal import error_line, json_safe, terminal_safe
from ..core.training_photos import photo_counts
from ..metadata import photo_ids_under, read_metadata_into_library
from ..retrieval.registry import DEFAULT_MATCHER
from ..retrieval.service import available_matchers, retrieval_settings
from .caption import add_caption_commands
from .common import EXIT_DAMAGED, EXIT_USER_ERROR, RepicError, UserError, open_library as _open_library
from .eval import add_eval_command
from .gui import add_gui_command
from .metadata import add_metadata_commands
from .model import add_model_command
from .output import bar_progress, emit as _emit, json_stream, progress_bar, stdout_for_json_only
from .retrieval import add_retrieval_commands
from .server import add_server_commands

# ------------------------------------------------------------------------------------------------ commands

def cmd_status(args: argparse.Namespace) -> int:
    lib_path = paths.resolve_library_path(args.library)
    exists = lib_path.exists()
    settings = Settings.load()
    data: dict[str, Any] = {
        "version": __version__,
        "library": str(lib_path),
        "library_exists": exists,
        "settings_file": str(Settings.path()),
        "model": dict(vars(settings.model)),
        "cache_dir": str(paths.cache_dir()),
    }
    cfg = retrieval_settings(settings)
    data["suggestions"] = {"default_matcher": cfg.get("default_matcher") or DEFAULT_MATCHER,
                           "matchers": available_matchers(settings)}
    data["counts"] = None
    data["adapters"] = []
    data["active_adapter"] = data["model"]["adapter"] = settings.active_adapter(lib_path)  # this library's own
    damage: list[str] = []
    if exists:
        try:
            with Library(lib_path, create=False) as lib:
                damage = lib.quick_check()
                if not damage:
                    data["schema_version"] = lib.schema_version
                    data["counts"] = lib.counts()
                    n, photos = lib.retrieval.pending_suggestion_count()
                    data["suggestions"].update(pending=n, pending_photos=photos)
                    active = settings.active_adapter(lib)  # this library's own, never another's
                    data["active_adapter"] = data["model"]["adapter"] = active
                    data["adapters"] = [{"name": a.name, "path": a.path,
                                         "flagged": read_manifest(a.manifest).flagged,
                                         "active": bool(active) and a.path == active}
                                        for a in lib.adapters.all()]
        except LibraryError as exc:
            if not _is_damage(exc.__cause__):
                raise
            damage = [str(exc.__cause__)]
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise
            damage = [str(exc)]
        data["integrity"] = {"ok": not damage, "problems": damage}
        if damage:
            data["recovery"] = damaged_library_advice(lib_path)
    data["device"] = device_summary()

    def text() -> str:
        lines = [f"{APP_NAME} {__version__}", f"library:   {lib_path}" + ("" if exists else "  (new, empty)")]
        if damage:
            lines.append(f"DAMAGED:   the library file fails SQLite's integrity check: {damage[0]}"
                         + (f" (and {len(damage) - 1} more problem(s))" if len(damage) > 1 else ""))
            lines += [f"           {i}. {step}" for i, step in enumerate(data["recovery"], 1)]
        if data["counts"]:
            c = data["counts"]
            lines.append(f"photos:    {c['photos']} ({c['captioned']} captioned, {c['accepted']} accepted, "
                         f"{c['missing']} missing, {c['skipped']} skipped files)")
            lines.append(f"concepts:  {c['concepts']} ({c['people']} people, {c['pets']} pets)")
        m = settings.model
        lines.append(f"model:     {m.source}" + (f" @ {m.revision}" if m.revision else "")
                     + (f" + adapter {data['active_adapter']}" if data.get("active_adapter") else ""))
        lines.append(f"           quantization {m.quantization}, device {m.device}, cache "
                     f"{m.cache_dir or 'Hugging Face default'}")
        lines.append(f"compute:   {data['device']['summary']}")
        sug = data["suggestions"]
        ready = [m["id"] for m in sug["matchers"] if m["ready"]]
        lines.append(f"suggest:   matcher {sug['default_matcher']} (ready: {', '.join(ready) or 'none'})"
                     + (f"; {sug['pending']} suggestion(s) on {sug['pending_photos']} photo(s) to review"
                        if sug.get("pending") else ""))
        if data["adapters"]:
            lines.append("adapters:  " + ", ".join(
                a["name"] + (" [active]" if a["active"] else "") + (" [flagged]" if a["flagged"] else "")
                for a in data["adapters"]))
        lines.append(f"settings:  {Settings.path()}")
        return "\n".join(lines)

    _emit(args, data, text)
    return EXIT_DAMAGED if damage else 0


def _is_damage(exc: BaseException | None) -> bool:
    """Corrupt or not a database at all; "locked" and I/O errors (OperationalError) are not damage."""
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)


def damaged_library_advice(lib_path) -> list[str]:
    """What a user can do about a library that fails quick_check, in order."""
    p = str(lib_path)
    rec = str(lib_path.with_name(lib_path.stem + "-recovered" + lib_path.suffix))
    q = shlex.quote
    return [
        "Close RePIC Desktop and stop every `repic` command that uses this library.",
        f"Copy {p} together with any {lib_path.name}-wal and {lib_path.name}-shm beside it to a safe place; "
        "work on the copy from now on.",
        f"Rebuild what is still readable with the sqlite3 tool (3.29 or newer): "
        f"sqlite3 {q(p)} .recover | sqlite3 {q(rec)}  then check it: repic --library {q(rec)} status",
        "If that looks right, put the rebuilt file in place of the damaged one (or keep using it with --library).",
        "Captions, names and face regions you already exported into your photos come back into any library "
        "with: repic import FOLDER --read-metadata",
    ]


def cmd_import(args: argparse.Namespace) -> int:
    root = os.path.abspath(args.dir)
    if not os.path.isdir(root):
        raise UserError(f"{args.dir} is not a folder")
    with _open_library(args) as lib:
        bar = progress_bar(args, "importing")
        try:
            report = scan_folder(lib, root, progress=bar_progress(bar))
        finally:
            if bar is not None:
                bar.close()
        meta = None
        if args.read_metadata:
            meta = read_metadata_into_library(lib, photo_ids_under(lib, root), create_concepts=args.create_concepts)
    data = report.as_dict()
    if meta is not None:
        data["metadata"] = meta.as_dict()

    def text() -> str:
        lines = [f"{report.added} added, {report.unchanged} unchanged, {report.updated} updated, "
                 f"{report.moved} moved, {report.missing} missing, {len(report.skipped)} skipped"]
        for s in report.skipped:
            lines.append(f"  skipped {s['path']}: {s['reason']}")
        if meta is not None:
            lines.append(f"metadata: {meta.captions_added} captions, {meta.tags_added} tags, "
                         f"{len(meta.proposals)} new names")
            for pr in meta.problems:
                lines.append(f"  metadata of {pr.get('path') or pr.get('name')}: {pr['reason']}")
        return "\n".join(lines)

    _emit(args, data, text)
    return 0


TEXT_PAGE = 50          # photos list prints this many unless --limit says otherwise; --json gives all
MAX_COUNT = 10 ** 12    # beyond any library, still inside SQLite's 64-bit integers


def cmd_photos_list(args: argparse.Namespace) -> int:
    """Streams: one SQL statement, each photo written as it is read, so 100k photos take flat memory.
    Text shows one page (TEXT_PAGE, or --limit) and says how many more there are; --json gives every
    matching photo (or --limit/--offset's page) as a JSON array, one photo per line."""
    as_json = getattr(args, "json", False)
    limit = args.limit if args.limit is not None or as_json else TEXT_PAGE
    filters = dict(uncaptioned=args.uncaptioned, concept=args.concept, search=args.search,
                   include_missing=args.missing)
    with _open_library(args) as lib:
        rows = lib.photos.listing(**filters, limit=limit, offset=args.offset)
        if as_json:
            out, encode = json_stream(), json.JSONEncoder(ensure_ascii=False).encode
            sep = "["
            for d in rows:
                out.write(sep + "\n" + json_safe(encode(d)))
                sep = ","
            out.write("[]\n" if sep == "[" else "\n]\n")
            return 0
        shown = 0
        for r in rows:
            names = ", ".join(r["concepts"])
            line = f"{r['id']:>6}  {r['path']}" + (f"  [{names}]" if names else "")
            if r["status"] != "ok":
                line += f"  ({r['status']})"
            if r["caption"]:
                line += f"\n        {r['caption']}"
            print(terminal_safe(line))
            shown += 1
        if shown and shown == limit:   # a full page: one count says whether another follows
            more = lib.photos.count(**filters) - args.offset - shown
            if more > 0:
                print(f"… {more:,} more: --offset {args.offset + shown} for the next page, "
                      "--limit N for longer pages (or --json for all)")
        elif not shown:
            total = lib.photos.count(**filters) if args.offset else 0
            if total:
                print(f"no photos at --offset {args.offset}: {total:,} match")
            elif lib.photos.count():
                print("no photos match")
            else:
                print("no photos yet: import a folder with `repic import DIR`")
    return 0


def cmd_photo_show(args: argparse.Namespace) -> int:
    with _open_library(args) as lib:
        p = lib.photos.resolve(args.photo)
        names = {c.id: c.name for c in lib.concepts.all()}
        data = p.as_dict()
        data["concepts"] = [c.name for c in lib.concepts.of_photo(p.id)]
        data["regions"] = [{"concept": names.get(r.concept_id), "box": r.box.as_list(), "source": r.source}
                           for r in lib.concepts.regions(p.id)]
        data["captions"] = [c.as_dict() for c in lib.captions.history(p.id)]

    def text() -> str:
        lines = [f"{data['path']}  (id {data['id']}, {data['width']}x{data['height']}, {data['status']})",
                 f"concepts: {', '.join(data['concepts']) or '-'}"]
        lines += [f"region:   <{r['concept']}> {','.join(map(str, r['box']))}" for r in data["regions"]]
        lines += [f"caption {c['id']} [{c['status']}]: {c['text']}" for c in data["captions"]]
        return "\n".join(lines)

    _emit(args, data, text)
    return 0


def cmd_photo_tag(args: argparse.Namespace) -> int:
    box = parse_box(args.box) if args.box is not None else None
    with _open_library(args) as lib:
        p = lib.photos.resolve(args.photo)
        replaced = lib.concepts.tag(p.id, args.name, box=box)
        c = lib.concepts.get(args.name)
        data = {"photo": p.id, "concept": c.name, "box": box.as_list() if box else None,
                "replaced": [b.as_list() for b in replaced],
                "concepts": [x.name for x in lib.concepts.of_photo(p.id)]}
    where = f" at {','.join(map(str, box.as_list()))}" if box else ""
    if replaced:
        where += f" (moved from {'; '.join(','.join(map(str, b.as_list())) for b in replaced)})"
    _emit(args, data, f"tagged {p.path} with <{c.name}>{where}")
    return 0


def cmd_photo_untag(args: argparse.Namespace) -> int:
    with _open_library(args) as lib:
        p = lib.photos.resolve(args.photo)
        c = lib.concepts.get(args.name)
        removed = lib.concepts.untag(p.id, c.name)
        data = {"photo": p.id, "concept": c.name, "removed": removed,
                "concepts": [x.name for x in lib.concepts.of_photo(p.id)]}
    _emit(args, data, f"removed <{c.name}> from {p.path}" if removed else f"<{c.name}> was not tagged on {p.path}")
    return 0


def _add_ref(lib: Library, name: str, ref: str, box: Box | None, primary: bool):
    """REF is a library photo (id or path of an imported photo) or any image file (copied in)."""
    if ref.isdecimal() and not os.path.exists(ref):  # isdigit() is true for '²', which int() refuses
        return lib.concepts.add_ref(name, photo_id=lib.photos.get(int(ref)).id, box=box, primary=primary)
    photo = lib.photos.by_path(os.path.abspath(ref))
    if photo is not None:
        return lib.concepts.add_ref(name, photo_id=photo.id, box=box, primary=primary)
    if not os.path.exists(ref):
        raise UserError(f"reference {ref} is neither a file nor a photo id in the library")
    return import_reference_file(lib, name, ref, box=box, primary=primary)


def _concept_dict(lib: Library, c, counts=None) -> dict[str, Any]:
    n = (counts if counts is not None else photo_counts(lib)).get(c.id)
    d = c.as_dict()
    d["references"] = [r.as_dict() for r in lib.concepts.refs(c.id)]
    # the photos training learns from (core/training_photos.py), the count `repic-train dataset` shows
    d["photos"] = n.photos if n else 0
    d["tagged_references"] = n.tagged_references if n else 0
    d["reference_only"] = bool(n and n.reference_only)
    return d


def cmd_concept_add(args: argparse.Namespace) -> int:
    with _open_library(args) as lib:
        # One transaction: a bad --ref must not leave a half-made concept behind.
        with lib.transaction():
            c = lib.concepts.add(args.name, args.kind, args.info or "")
            for ref in args.ref or []:
                _add_ref(lib, c.name, ref, None, False)
        data = _concept_dict(lib, lib.concepts.get(c.id))
    _emit(args, data, f"added <{data['name']}> ({data['kind']}) with {len(data['references'])} reference photo(s)")
    return 0


def cmd_concept_list(args: argparse.Namespace) -> int:
    with _open_library(args) as lib:
        counts = photo_counts(lib)
        rows = [_concept_dict(lib, c, counts) for c in lib.concepts.all()]

    def text() -> str:
        if not rows:
            return "no people or pets yet: add one with `repic concept add NAME --kind person`"
        return "\n".join(f"<{r['name']}>  {r['kind']:<6}  {len(r['references'])} ref(s), {r['photos']} photo(s)"
                         + (" (its tagged photos are all references)" if r["reference_only"] else "")
                         + (f"  {r['info']}" if r["info"] else "") for r in rows)

    _emit(args, rows, text)
    return 0


def cmd_concept_show(args: argparse.Namespace) -> int:
    with _open_library(args) as lib:
        data = _concept_dict(lib, lib.concepts.get(args.name))
    _emit(args, data, lambda: json.dumps(data, indent=2, ensure_ascii=False))
    return 0


def cmd_concept_rename(args: argparse.Namespace) -> int:
    with _open_library(args) as lib:
        c = lib.concepts.rename(args.old, args.new)
    _emit(args, c.as_dict(), f"renamed to <{c.name}> (existing captions keep the old name)")
    return 0


def cmd_concept_edit(args: argparse.Namespace) -> int:
    if args.info is None and args.kind is None:
        raise UserError("nothing to change: give --info and/or --kind")
    with _open_library(args) as lib:
        c = lib.concepts.update(args.name, info=args.info, kind=args.kind)
    _emit(args, c.as_dict(), f"updated <{c.name}>")
    return 0


def cmd_concept_remove(args: argparse.Namespace) -> int:
    with _open_library(args) as lib:
        c = lib.concepts.remove(args.name)
    _emit(args, c.as_dict(), f"removed <{c.name}> (captions keep their text)")
    return 0


def cmd_concept_merge(args: argparse.Namespace) -> int:
    with _open_library(args) as lib:
        c = lib.concepts.merge(args.source, args.target)
        data = _concept_dict(lib, c)
    _emit(args, data, f"merged into <{c.name}>: {len(data['references'])} reference photo(s), "
                      f"{data['photos']} photo(s)")
    return 0


def cmd_concept_add_ref(args: argparse.Namespace) -> int:
    box = parse_box(args.box) if args.box is not None else None
    with _open_library(args) as lib:
        ref = _add_ref(lib, args.name, args.ref, box, args.primary)
        name = lib.concepts.get(ref.concept_id).name
    _emit(args, ref.as_dict(), f"added reference {ref.id} to <{name}>")
    return 0


def cmd_concept_remove_ref(args: argparse.Namespace) -> int:
    with _open_library(args) as lib:
        c = lib.concepts.get(args.name)
        if args.ref_id not in {r.id for r in lib.concepts.refs(c.id)}:
            raise UserError(f"<{c.name}> has no reference {args.ref_id} (see `repic concept show {c.name}`)")
        lib.concepts.remove_ref(args.ref_id)
    _emit(args, {"concept": c.name, "removed": args.ref_id}, f"removed reference {args.ref_id} from <{c.name}>")
    return 0


def cmd_concept_import_repic(args: argparse.Namespace) -> int:
    with _open_library(args) as lib:
        report = import_repic_database(lib, args.database)

    def text() -> str:
        lines = [f"{len(report.added)} added, {len(report.existing)} already present, "
                 f"{report.references} reference photo(s)"]
        lines += [f"  {p['concept']}: {p['problem']}" for p in report.problems]
        return "\n".join(lines)

    _emit(args, report.as_dict(), text)
    return 0


def cmd_concept_export_repic(args: argparse.Namespace) -> int:
    with _open_library(args) as lib:
        data = export_repic_database(lib, args.out, images_dir=args.images_dir, force=args.force)
    _emit(args, data, f"wrote {data['concepts']} concept(s) to {data['path']}")
    return 0


def cmd_demo_model(args: argparse.Namespace) -> int:
    if not args.json and sys.stderr.isatty():
        # the build takes under a second, the imports before it 10-20 s: say so instead of hanging silently
        print("building the demo model (loading PyTorch and transformers first: 10-20 s)…", file=sys.stderr)
    try:
        info = build_demo_model(args.dir)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    info = {k: (str(v) if not isinstance(v, (int, float, bool, type(None))) else v) for k, v in info.items()}
    _emit(args, info, f"demo model written to {args.dir} (random weights: it shows how the app works; "
                      f"its captions are noise)")
    return 0


# ------------------------------------------------------------------------------------------------ parser

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    common.add_argument("--library", default=argparse.SUPPRESS,
                        help="library file (default: $REPIC_LIBRARY or the user data folder)")

    p = argparse.ArgumentParser(prog="repic", description=f"{APP_NAME}: personalized photo captions.")
    p.add_argument("--version", action="version", version=f"repic {__version__}")
    p.add_argument("--library", default=None, help="library file (default: $REPIC_LIBRARY or the user data folder)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("status", parents=[common], help="library, counts, model settings, GPU")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("import", parents=[common], help="import (or rescan) a folder of photos")
    s.add_argument("dir", type=nonempty_path)
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--read-metadata", action="store_true",
                   help="also read captions, people, face regions and keywords other tools wrote (digiKam, Lightroom, ...)")
    s.add_argument("--create-concepts", action="store_true", help="with --read-metadata: create concepts for new names")
    s.set_defaults(func=cmd_import)

    photos = sub.add_parser("photos", help="list photos").add_subparsers(dest="sub", metavar="SUBCOMMAND")
    photos.required = True
    s = photos.add_parser("list", parents=[common], help="list photos with filters")
    s.add_argument("--uncaptioned", action="store_true")
    s.add_argument("--concept", type=nonempty_text, metavar="NAME")
    s.add_argument("--search", type=one_line_text, metavar="TEXT", help="full-text search over current captions")
    s.add_argument("--missing", action="store_true", help="include photos whose file is missing")
    s.add_argument("--limit", type=whole_number(1, MAX_COUNT), metavar="N",
                   help=f"at most N photos (text default {TEXT_PAGE}; --json default all)")
    s.add_argument("--offset", type=whole_number(0, MAX_COUNT), default=0, metavar="N", help="skip the first N photos")
    s.set_defaults(func=cmd_photos_list)

    photo = sub.add_parser("photo", help="one photo: show, tag, untag").add_subparsers(dest="sub", metavar="SUBCOMMAND")
    photo.required = True
    s = photo.add_parser("show", parents=[common], help="a photo's concepts, regions and caption history")
    s.add_argument("photo", help="photo id or path")
    s.set_defaults(func=cmd_photo_show)
    s = photo.add_parser("tag", parents=[common], help="say a known person/pet is in a photo")
    s.add_argument("photo", help="photo id or path")
    s.add_argument("name")
    s.add_argument("--box", metavar="X,Y,W,H",
                   help="where they are, in pixels of the photo as displayed (replaces their earlier box)")
    s.set_defaults(func=cmd_photo_tag)
    s = photo.add_parser("untag", parents=[common], help="remove a person/pet from a photo")
    s.add_argument("photo", help="photo id or path")
    s.add_argument("name")
    s.set_defaults(func=cmd_photo_untag)

    concept = sub.add_parser("concept", help="people, pets and things").add_subparsers(dest="sub", metavar="SUBCOMMAND")
    concept.required = True
    s = concept.add_parser("add", parents=[common], help="add a person, pet or thing")
    s.add_argument("name")
    s.add_argument("--kind", required=True, choices=["person", "pet", "other"])
    s.add_argument("--info", type=one_line_text, help="one line about them, shown to the model")
    s.add_argument("--ref", action="append", type=nonempty_text, metavar="PATH_OR_PHOTO_ID",
                   help="reference photo (repeatable)")
    s.set_defaults(func=cmd_concept_add)
    s = concept.add_parser("list", parents=[common], help="list concepts in library (= prompt) order")
    s.set_defaults(func=cmd_concept_list)
    s = concept.add_parser("show", parents=[common], help="one concept with its references")
    s.add_argument("name")
    s.set_defaults(func=cmd_concept_show)
    s = concept.add_parser("rename", parents=[common], help="rename (future prompts use the new name)")
    s.add_argument("old")
    s.add_argument("new")
    s.set_defaults(func=cmd_concept_rename)
    s = concept.add_parser("edit", parents=[common], help="change info text or kind")
    s.add_argument("name")
    s.add_argument("--info", type=one_line_text)
    s.add_argument("--kind", choices=["person", "pet", "other"])
    s.set_defaults(func=cmd_concept_edit)
    s = concept.add_parser("remove", parents=[common], help="delete a concept (its tags and references too)")
    s.add_argument("name")
    s.set_defaults(func=cmd_concept_remove)
    s = concept.add_parser("merge", parents=[common], help="fold SOURCE into TARGET (same person entered twice)")
    s.add_argument("source")
    s.add_argument("target")
    s.set_defaults(func=cmd_concept_merge)
    s = concept.add_parser("add-ref", parents=[common], help="add a reference photo")
    s.add_argument("name")
    s.add_argument("ref", metavar="PATH_OR_PHOTO_ID")
    s.add_argument("--box", metavar="X,Y,W,H", help="crop box in pixels of the photo as displayed")
    s.add_argument("--primary", action="store_true", help="make it the reference used in prompts")
    s.set_defaults(func=cmd_concept_add_ref)
    s = concept.add_parser("remove-ref", parents=[common], help="remove a reference photo by its id")
    s.add_argument("name")
    s.add_argument("ref_id", type=record_id)
    s.set_defaults(func=cmd_concept_remove_ref)
    s = concept.add_parser("import-repic", parents=[common], help="import a RePIC/RAP database.json")
    s.add_argument("database")
    s.set_defaults(func=cmd_concept_import_repic)
    s = concept.add_parser("export-repic", parents=[common], help="export concepts as a RePIC database.json")
    s.add_argument("out", type=nonempty_text)  # a file we create: no control characters in its name
    s.add_argument("--images-dir", type=nonempty_text,
                   help="copy (cropped) reference images here and use relative paths")
    s.add_argument("--force", action="store_true", help="replace the json and images if they exist")
    s.set_defaults(func=cmd_concept_export_repic)

    s = sub.add_parser("demo-model", parents=[common], help="build the tiny random demo model into DIR")
    s.add_argument("dir", type=nonempty_text)
    s.set_defaults(func=cmd_demo_model)
    add_caption_commands(sub, common)
    add_eval_command(sub, common)
    add_model_command(sub, common)
    add_gui_command(sub, common)
    add_metadata_commands(sub, common)
    add_retrieval_commands(sub, common)
    add_server_commands(sub, common)
    return p


REVIEW_VERBS = ("accept", "edit", "revert")  # `repic caption VERB ...` = `repic captions VERB ...`


def _review_alias(argv: list[str]) -> list[str]:
    """`repic caption accept|edit|revert ...` is `repic captions ...`: argparse cannot give `caption` both
    PHOTO positionals and subcommands. A photo file named like a verb is still reachable as ./accept."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):  # the top-level options before the command
        i += 2 if argv[i] == "--library" else 1
    if i + 1 < len(argv) and argv[i] == "caption" and argv[i + 1] in REVIEW_VERBS:
        return argv[:i] + ["captions"] + argv[i + 1:]
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_review_alias(list(sys.argv[1:] if argv is None else argv)))
    with stdout_for_json_only(args):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except RepicError as exc:  # every error written for the user (core/errors.py): one line
        print(error_line(f"repic: error: {exc}"), file=sys.stderr)
        return EXIT_USER_ERROR
    except sqlite3.DatabaseError as exc:  # "database disk image is malformed" mid-command: say what to do
        if not _is_damage(exc):
            raise
        print(f"repic: error: the library cannot be read ({exc}); `repic status` checks it and says how to "
              "recover", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("repic: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `repic photos list | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())

"""`repic export` and `repic metadata show|read|fields`: captions, names and regions into the photos'
metadata and back (the work is in repic_desktop/metadata; this is only the command line)."""
from __future__ import annotations

import argparse
import os
from typing import Any

from ..core import paths
from ..core.images import UnusableImage
from ..core.library import Library, LibraryError
from ..core.settings import Settings
from ..metadata import (
    Backends,
    ExportOptions,
    accepted_photo_ids,
    available_backends,
    export_photos,
    field_table,
    read_file_metadata,
    read_metadata_into_library,
)
from ..metadata.edit import BackendError
from ..metadata.fields import summarize
from ..metadata.geometry import norm_to_pixels
from ..metadata.sidecars import sidecar_path
from .common import UserError, open_library as _open_library
from .output import bar_progress, emit as _emit, progress_bar

FIELD_CHOICES = ("caption", "title", "people", "regions", "keywords")


def _fields(text: str) -> tuple[str, ...]:
    parts = tuple(dict.fromkeys(p.strip().lower() for p in text.split(",") if p.strip()))
    bad = [p for p in parts if p not in FIELD_CHOICES]
    if bad or not parts:
        raise argparse.ArgumentTypeError(f"--fields takes a comma-separated list of {', '.join(FIELD_CHOICES)}"
                                         f"{'; unknown: ' + ', '.join(bad) if bad else ''}")
    return parts


def add_metadata_commands(subparsers, common_parent: argparse.ArgumentParser) -> None:
    s = subparsers.add_parser(
        "export", parents=[common_parent], help="write captions, names and regions into the photos' metadata",
        description="Write each photo's current caption, its people and pets (PersonInImage, keywords, "
                    "People|Name hierarchies), their face/pet regions (MWG + Microsoft) and its other concepts "
                    "(keywords) into the photo file - XMP, IPTC and EXIF together - or into a photo.ext.xmp "
                    "sidecar. Existing metadata of other tools is kept; files are replaced atomically; "
                    "truncated or mislabelled files are refused.")
    s.add_argument("photos", nargs="*", metavar="PHOTO", help="photo id or path (accepted or exported caption)")
    s.add_argument("--all-accepted", action="store_true", help="every photo whose current caption is accepted")
    s.add_argument("--sidecar", action="store_true", default=None,
                   help="never modify originals: write photo.ext.xmp sidecars instead")
    s.add_argument("--fields", type=_fields, default=None, metavar="LIST",
                   help="which fields to write: caption,people,regions,keywords (default) and/or title")
    s.add_argument("--dry-run", action="store_true", help="show what would change (old -> new per key), write nothing")
    s.add_argument("--keep-brackets", action="store_true", default=None,
                   help="write names in the caption as <Name> (default: plain Name)")
    s.add_argument("--no-pet-regions", dest="pet_regions", action="store_false", default=None,
                   help="no MWG regions for pets (Immich shows every named region as a person)")
    s.add_argument("--no-mp-regions", dest="mp_regions", action="store_false", default=None,
                   help="no Microsoft (Windows Photo Gallery) regions")
    s.add_argument("--iptc", choices=["always", "if-present", "never"], default=None,
                   help="IPTC-IIM copies: always (default), only if the file has IPTC already (MWG rule), never")
    s.add_argument("--include-drafts", action="store_true", default=None, help="also export draft captions")
    s.add_argument("--strict", action="store_true", default=None,
                   help="skip photos whose caption names disagree with their tagged concepts/regions")
    s.add_argument("--keep-mtime", action="store_true", default=None, help="keep the files' modification times")
    s.add_argument("--no-readonly-sidecar", dest="readonly_to_sidecar", action="store_false", default=None,
                   help="refuse read-only files instead of writing a sidecar for them")
    s.add_argument("--follow-symlinks", action="store_true", default=None,
                   help="write the target of a symlinked photo even outside the library's folders")
    s.add_argument("--backend", choices=["auto", "pyexiv2", "exiftool"], default=None,
                   help="metadata library (default auto: pyexiv2, exiftool for HEIC)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_export)

    md = subparsers.add_parser("metadata", help="show or read metadata in photo files").add_subparsers(
        dest="sub", metavar="SUBCOMMAND")
    md.required = True
    s = md.add_parser("show", parents=[common_parent], help="what a photo's metadata (and sidecars) say")
    s.add_argument("photo", help="photo id or path (any image file works too)")
    s.add_argument("--backend", choices=["auto", "pyexiv2", "exiftool"], default="auto")
    s.set_defaults(func=cmd_metadata_show)
    s = md.add_parser("read", parents=[common_parent],
                      help="import captions, people, regions and keywords other tools wrote into the photos",
                      description="Read captions, PersonInImage, MWG/MP regions and keywords (digiKam, Lightroom, "
                                  "Photini, Immich, Picasa) into the library: captions become imported captions "
                                  "(when a photo has none of its own), known people/pets are tagged with their "
                                  "regions; unknown names are listed as proposals (--create-concepts creates them "
                                  "with their face regions as reference boxes).")
    s.add_argument("photos", nargs="*", metavar="PHOTO", help="photo id or path")
    s.add_argument("--all", action="store_true", help="every photo in the library")
    s.add_argument("--create-concepts", action="store_true",
                   help="create a concept for every new name found (face regions become reference boxes)")
    s.add_argument("--backend", choices=["auto", "pyexiv2", "exiftool"], default="auto")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_metadata_read)
    s = md.add_parser("fields", parents=[common_parent], help="the field map: which keys each field fills")
    s.set_defaults(func=cmd_metadata_fields)


# ------------------------------------------------------------------------------------------------ helpers

def _change_line(c: dict[str, Any]) -> str:
    return f"      {c['key']}: {summarize(c['key'], c['old'])} -> {summarize(c['key'], c['new'])}"


# ------------------------------------------------------------------------------------------------ export

def cmd_export(args: argparse.Namespace) -> int:
    if not args.photos and not args.all_accepted:
        raise UserError("nothing to export: give PHOTO ids/paths or --all-accepted")
    if not available_backends():
        raise UserError("no metadata library is installed: `pip install pyexiv2` (or install exiftool)")
    overrides = dict(
        groups=args.fields, sidecar="always" if args.sidecar else None, pet_regions=args.pet_regions,
        mp_regions=args.mp_regions, iptc=args.iptc, keep_mtime=args.keep_mtime, backend=args.backend,
        follow_symlinks=args.follow_symlinks, readonly_to_sidecar=args.readonly_to_sidecar,
        keep_brackets=args.keep_brackets, include_drafts=args.include_drafts, strict=args.strict)
    settings = Settings.load()
    try:
        options = ExportOptions.from_settings(settings.extra, **overrides)
    except (ValueError, TypeError) as exc:
        raise UserError(f"metadata settings: {exc}") from None
    with _open_library(args) as lib:
        ids = [lib.photos.resolve(p).id for p in args.photos]
        if args.all_accepted:
            ids += accepted_photo_ids(lib)
        if not ids:
            raise UserError("no photo has an accepted caption to export (accept captions first)")
        bar = progress_bar(args, "exporting" if not args.dry_run else "checking")
        try:
            with Backends(options.write.backend) as backends:
                report = export_photos(lib, ids, options, dry_run=args.dry_run, backends=backends,
                                       progress=bar_progress(bar))
        finally:
            if bar is not None:
                bar.close()
    data = report.as_dict()
    data["options"] = {**options.write.as_dict(), "keep_brackets": options.keep_brackets,
                       "include_drafts": options.include_drafts, "strict": options.strict}

    def text() -> str:
        c = report.counts
        verb = "would write" if args.dry_run else "written"
        head = (f"{c.get('would-write' if args.dry_run else 'written', 0)} {verb}, {c.get('unchanged', 0)} unchanged, "
                f"{c.get('refused', 0)} refused, {c.get('failed', 0)} failed")
        lines = [head]
        for p in report.photos:
            r = p.result
            where = ""
            if r is not None and r.target:
                kind = f"sidecar {os.path.basename(r.written_path or '')}" if r.target == "sidecar" else "file"
                where = f" ({kind}, {r.backend})"
            name = r.path if r is not None else p.path  # the exact name (_emit escapes undecodable bytes)
            lines.append(f"  {name}: {p.status}{where}" + (f": {p.reason}" if p.reason else ""))
            if args.dry_run and r is not None:
                lines += [_change_line(ch) for ch in r.changes]
            for n in (r.notes if r is not None else []):
                lines.append(f"      note: {n}")
            for i in p.issues:
                lines.append(f"      check: {i.message}")
        return "\n".join(lines)

    _emit(args, data, text)
    bad = report.failed
    if bad:
        raise UserError(f"{len(bad)} of {len(report.photos)} photo(s) not written (reasons above)")
    return 0


# ------------------------------------------------------------------------------------------------ metadata

def cmd_metadata_show(args: argparse.Namespace) -> int:
    if not available_backends():
        raise UserError("no metadata library is installed: `pip install pyexiv2` (or install exiftool)")
    path, photo_id, library_dims = None, None, None
    lib_path = paths.resolve_library_path(getattr(args, "library", None))
    if lib_path.exists():
        with Library(lib_path) as lib:
            try:
                p = lib.photos.resolve(args.photo)
                path, photo_id, library_dims = p.fs_path, p.id, (p.width, p.height)
            except LibraryError:
                pass
    if path is None:
        if not os.path.isfile(args.photo):
            raise UserError(f"{args.photo} is neither a photo in the library nor a file")
        path = os.path.abspath(args.photo)
    try:
        with Backends(args.backend) as backends:
            fm = read_file_metadata(path, backends)
    except UnusableImage as exc:
        raise UserError(f"{path}: {exc.reason}") from None
    except (BackendError, OSError) as exc:
        raise UserError(f"{path}: {exc}") from None
    data = fm.as_dict()
    data["photo_id"] = photo_id
    data["sidecar_for_writing"] = sidecar_path(path)
    w, h = fm.width or (library_dims or (None, None))[0], fm.height or (library_dims or (None, None))[1]
    for r in data["regions"]:
        if w and h:
            r["pixels"] = norm_to_pixels(tuple(r["box"]), w, h)

    def text() -> str:
        lines = [f"{path}" + (f"  (photo {photo_id})" if photo_id else "") +
                 (f"  {fm.width}x{fm.height}, orientation {fm.orientation}" if fm.width else ""),
                 f"read from: {', '.join(fm.read_from) or '-'}" + (f"   written by: {fm.writer}" if fm.writer else "")]
        lines.append(f"caption:  {fm.caption!r}  [{fm.caption_key}]" if fm.caption else "caption:  -")
        if fm.title:
            lines.append(f"title:    {fm.title!r}")
        people = ", ".join(f"{n.name} ({n.kind}; {', '.join(n.sources)})" for n in fm.names)
        lines.append("people:   " + (people or "-"))
        for r in data["regions"]:
            px = r.get("pixels")
            lines.append(f"region:   {r['name'] or '(unnamed)'} {r['type']} "
                         + (",".join(map(str, px)) if px else ",".join(f"{v:.3f}" for v in r["box"]))
                         + f"  [{r['source']}]")
        lines.append("keywords: " + (", ".join(fm.keywords) or "-"))
        lines.append("keys:")
        for k, v in fm.values.items():
            lines.append(f"  {k}: {summarize(k, v)}")
        lines += [f"note: {n}" for n in fm.notes]
        return "\n".join(lines)

    _emit(args, data, text)
    return 0


def cmd_metadata_read(args: argparse.Namespace) -> int:
    if not args.photos and not args.all:
        raise UserError("nothing to read: give PHOTO ids/paths or --all")
    if not available_backends():
        raise UserError("no metadata library is installed: `pip install pyexiv2` (or install exiftool)")
    with _open_library(args) as lib:
        ids = [lib.photos.resolve(p).id for p in args.photos]
        if args.all:
            ids += [p.id for p in lib.photos.list()]
        bar = progress_bar(args, "reading")
        try:
            with Backends(args.backend) as backends:
                report = read_metadata_into_library(lib, ids, create_concepts=args.create_concepts,
                                                    backends=backends, progress=bar_progress(bar))
        finally:
            if bar is not None:
                bar.close()
    data = report.as_dict()

    def text() -> str:
        lines = [f"read {report.photos} photo(s): {report.captions_added} caption(s) imported, "
                 f"{report.tags_added} tag(s) and {report.regions_added} region(s) added"]
        for k in report.captions_kept:
            lines.append(f"  kept the library's caption of {k['path']} (the file says {k['file']!r})")
        if report.created:
            lines.append(f"created {len(report.created)} concept(s): {', '.join(report.created)} "
                         f"({report.references_added} reference box(es))")
        elif report.proposals:
            lines.append(f"{len(report.proposals)} name(s) are not concepts yet (add them with --create-concepts):")
            for p in report.proposals:
                faces = sum(1 for o in p.photos if o["box"])
                photos = len({o["photo_id"] for o in p.photos})
                lines.append(f"  {p.name} ({p.kind}): {photos} photo(s), {faces} region(s); from {', '.join(p.sources)}"
                             + (f"  [cannot add: {p.problem}]" if p.problem else ""))
        for pr in report.problems:
            lines.append(f"  problem: {pr.get('path') or pr.get('name')}: {pr['reason']}")
        return "\n".join(lines)

    _emit(args, data, text)
    return 0


def cmd_metadata_fields(args: argparse.Namespace) -> int:
    rows = field_table()
    data = {"fields": rows, "backends": available_backends()}

    def text() -> str:
        lines = [f"{'field':<9} {'key (exiftool)':<28} {'exiv2 key':<30} {'role':<10} limit"]
        for r in rows:
            lines.append(f"{r['field']:<9} {r['exiftool']:<28} {r['exiv2']:<30} {r['role']:<10} {r['limit']}")
        lines.append(f"backends installed: {', '.join(data['backends']) or 'none'}")
        return "\n".join(lines)

    _emit(args, data, text)
    return 0

"""What to write (`MetadataValues`, `WriteOptions`) and the plan: old canonical values + what to write
-> the changes, merged with what other tools wrote (see writer.py's docstring for the rules).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from . import geometry
from .fields import (
    BY_KEY, GROUPS, HIERARCHY_ROOTS, IPTC_KEYWORD_MAX_BYTES, LIST_KEYS, PRIMARY, SECONDARY, clean_text, fields_for,
    fold, truncate_utf8,
)

SIDECAR_MODES = ("auto", "always")
IPTC_MODES = ("always", "if-present", "never")
KINDS_NAMED = ("person", "pet")


@dataclass(frozen=True)
class Person:
    name: str
    kind: str = "person"     # person | pet | other


@dataclass(frozen=True)
class RegionBox:
    name: str
    kind: str                # person | pet (other kinds get no region)
    box: tuple[float, float, float, float]  # normalised x, y (top-left), w, h in the DISPLAYED frame


@dataclass
class MetadataValues:
    """What to write. None means "leave this field alone"; an empty caption "" removes it."""
    caption: str | None = None
    title: str | None = None
    people: list[Person] = field(default_factory=list)
    regions: list[RegionBox] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    display_size: tuple[int, int] | None = None  # size the boxes were drawn on; must match the file


@dataclass
class WriteOptions:
    groups: tuple[str, ...] = GROUPS
    sidecar: str = "auto"              # auto | always ("never modify originals")
    readonly_to_sidecar: bool = True   # a read-only file/folder gets a sidecar (else: refused)
    pet_regions: bool = True           # MWG Pet regions (Immich shows every named region as a person)
    mp_regions: bool = True            # Microsoft MP regions (people only)
    iptc: str = "always"               # always | if-present (MWG rule) | never
    keep_mtime: bool = False
    backend: str = "auto"              # auto | pyexiv2 | exiftool
    follow_symlinks: bool = False
    second_reader: bool = True         # exiftool also reads pyexiv2's output of camera/IIM/TIFF files (verify.py)

    def __post_init__(self):
        bad = set(self.groups) - set(GROUPS)
        if bad:
            raise ValueError(f"unknown field group(s) {', '.join(sorted(bad))} (choose from {', '.join(GROUPS)})")
        if self.sidecar not in SIDECAR_MODES:
            raise ValueError(f"sidecar must be one of {SIDECAR_MODES}")
        if self.iptc not in IPTC_MODES:
            raise ValueError(f"iptc must be one of {IPTC_MODES}")

    @classmethod
    def from_settings(cls, extra: dict | None, **overrides) -> "WriteOptions":
        """Defaults stored by the GUI under settings.extra["metadata"] (unknown keys ignored)."""
        known = set(cls.__dataclass_fields__)
        raw = {k: v for k, v in ((extra or {}).get("metadata") or {}).items() if k in known}
        if "groups" in raw:
            raw["groups"] = tuple(raw["groups"])
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**raw)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["groups"] = list(self.groups)
        return d


def _merge_list(old: list[str] | None, ours: list[str], remove: set[str]) -> list[str] | None:
    kept = [x for x in (old or []) if x not in remove]
    seen = {fold(x) for x in kept}
    for x in ours:
        if fold(x) not in seen:
            kept.append(x)
            seen.add(fold(x))
    return kept or None


def _named(values: MetadataValues) -> list[Person]:
    seen, out = set(), []
    for p in values.people:
        if p.kind in KINDS_NAMED and fold(p.name) not in seen:
            seen.add(fold(p.name))
            out.append(p)
    return out


def contributions(values: MetadataValues, groups: Iterable[str]) -> dict[str, list[str]]:
    """Our items for every list key, from the selected groups."""
    gs = set(groups)
    names = [p.name for p in _named(values)] if "people" in gs else []
    kws = [k for k in dict.fromkeys(k.strip() for k in values.keywords) if k] if "keywords" in gs else []
    hier = [f"{HIERARCHY_ROOTS[p.kind]}|{p.name}" for p in _named(values)] if "people" in gs else []
    tags = [f"{HIERARCHY_ROOTS[p.kind]}/{p.name}" for p in _named(values)] if "people" in gs else []
    subject = names + [k for k in kws if fold(k) not in {fold(n) for n in names}]
    return {
        "XMP-iptcExt:PersonInImage": names,
        "XMP-dc:Subject": subject,
        "IPTC:Keywords": list(dict.fromkeys(truncate_utf8(s, IPTC_KEYWORD_MAX_BYTES) for s in subject)),
        "XMP-lr:HierarchicalSubject": hier,
        "XMP-digiKam:TagsList": tags,
    }


def region_items(values: MetadataValues, options: WriteOptions, orientation: int) -> tuple[list[dict], list[dict]]:
    """Our MWG and MP region items (stored frame, canonical)."""
    mwg, mp = [], []
    for r in values.regions:
        if r.kind not in KINDS_NAMED or (r.kind == "pet" and not options.pet_regions):
            continue
        x, y, w, h = geometry.clamp01(geometry.display_to_stored(r.box, orientation))
        if w <= 0 or h <= 0:
            continue
        cx, cy, _, _ = geometry.to_center((x, y, w, h))
        rnd = lambda v: round(v, 6)  # noqa: E731
        mwg.append({"Name": r.name, "Type": "Face" if r.kind == "person" else "Pet",
                    "Area": {"X": rnd(cx), "Y": rnd(cy), "W": rnd(w), "H": rnd(h), "Unit": "normalized"}})
        if r.kind == "person" and options.mp_regions:
            mp.append({"PersonDisplayName": r.name, "Rectangle": [rnd(x), rnd(y), rnd(w), rnd(h)]})
    return mwg, mp


@dataclass
class Plan:
    changes: dict[str, Any]
    new: dict[str, Any]
    owned: dict[str, list[str]]
    notes: list[str]


def plan_changes(old: dict[str, Any], values: MetadataValues, options: WriteOptions, *, containers: Iterable[str],
                 stored_dims: tuple[int, int] | None, orientation: int = 1, has_iptc: bool = True,
                 previous_owned: dict[str, list[str]] | None = None, embedded_caption: bool = False,
                 dims_exact: bool = True) -> Plan:
    """What to change so the file says `values` (canonical old -> canonical new, per key).
    `dims_exact` False: `stored_dims` is only a preview's size (RAW), so an existing region frame of
    the same aspect is kept."""
    containers = set(containers)
    if "iptc" in containers and (options.iptc == "never" or (options.iptc == "if-present" and not has_iptc)):
        containers.discard("iptc")
    groups = set(options.groups)
    prev = previous_owned or {}
    notes: list[str] = []
    new: dict[str, Any] = {}
    owned: dict[str, list[str]] = {k: list(v) for k, v in prev.items()}
    selected = [f for f in fields_for(groups) if f.container in containers]

    cap = values.caption
    ours_sel = contributions(values, groups)
    ours_all = contributions(values, GROUPS)
    for f in selected:
        if "caption" in f.groups and cap is not None:
            primary = f.role == PRIMARY or (f.key == "XMP-tiff:ImageDescription" and embedded_caption)
            if primary or (f.role == SECONDARY and f.key in old):
                text = clean_text(cap) or None
                new[f.key] = truncate_utf8(text, f.max_bytes) if text and f.max_bytes else text
        elif "title" in f.groups and values.title is not None:
            text = clean_text(values.title) or None
            new[f.key] = truncate_utf8(text, f.max_bytes) if text and f.max_bytes else text
        elif f.key in LIST_KEYS:
            remove = set(prev.get(f.key, [])) - set(ours_all[f.key])
            merged = _merge_list(old.get(f.key), ours_sel[f.key], remove)
            new[f.key] = merged
            mine = set(ours_sel[f.key]) | set(prev.get(f.key, []))
            owned[f.key] = [x for x in (merged or []) if x in mine]
        elif f.key in ("XMP-mwg-rs:RegionInfo", "XMP-MP:RegionInfoMP"):
            pass  # below
    if "regions" in groups and "xmp" in containers:
        if stored_dims is None:
            if values.regions:
                notes.append("regions not written: the image size of a RAW file is not known")
        else:
            mwg, mp = region_items(values, options, orientation)
            for key, items, name_key, list_key in (("XMP-mwg-rs:RegionInfo", mwg, "Name", "RegionList"),
                                                    ("XMP-MP:RegionInfoMP", mp, "PersonDisplayName", "Regions")):
                if key == "XMP-MP:RegionInfoMP" and not options.mp_regions and not prev.get(key):
                    continue
                replace = {fold(r[name_key]) for r in items} | {fold(n) for n in prev.get(key, [])}
                old_items = (old.get(key) or {}).get(list_key, [])
                kept = [r for r in old_items if not r.get(name_key) or fold(r[name_key]) not in replace]
                merged = kept + items
                if merged:
                    val: dict[str, Any] = {list_key: merged}
                    if key == "XMP-mwg-rs:RegionInfo":
                        dims = {"W": stored_dims[0], "H": stored_dims[1], "Unit": "pixel"}
                        given = (old.get(key) or {}).get("AppliedToDimensions")
                        if not dims_exact and _same_frame(given, stored_dims):
                            dims = given
                        val = {"AppliedToDimensions": dims, **val}
                    new[key] = val
                else:
                    new[key] = None
                owned[key] = [r[name_key] for r in items]
    # keep IIM declared as UTF-8 whenever we write IIM text
    if "iptc" in containers and any(BY_KEY[k].container == "iptc" and v is not None for k, v in new.items()):
        new["IPTC:CodedCharacterSet"] = "UTF8"
    changes = {k: v for k, v in new.items() if v != old.get(k)}
    owned = {k: v for k, v in owned.items() if v}
    return Plan(changes, new, owned, notes)


def _same_frame(given: Any, stored_dims: tuple[int, int]) -> bool:
    """Whether an existing AppliedToDimensions is the same picture frame at another resolution (aspect
    within 2%: camera previews trim a few sensor pixels)."""
    try:
        w, h = int(given["W"]), int(given["H"])
    except (TypeError, KeyError, ValueError):
        return False
    if w <= 0 or h <= 0 or given.get("Unit", "pixel") != "pixel":
        return False
    return abs((w / h) / (stored_dims[0] / stored_dims[1]) - 1) <= 0.02


def diff(old: dict[str, Any], changes: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "old": old.get(k), "new": v} for k, v in changes.items()]


__all__ = ["IPTC_MODES", "KINDS_NAMED", "SIDECAR_MODES", "MetadataValues", "Person", "Plan", "RegionBox",
           "WriteOptions", "contributions", "diff", "plan_changes", "region_items"]

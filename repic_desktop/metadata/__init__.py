"""Photo metadata: write captions, names, regions and keywords into XMP/IPTC/EXIF (or .xmp sidecars)
the way digiKam, Lightroom, Photini, Immich and PhotoPrism read them, and read theirs back.

Layering: this package depends on `core` only (no Qt, no torch). Modules:
- fields.py     the field map (user-facing field -> every key, per backend) and canonical values
- geometry.py   region boxes: library (displayed) frame <-> MWG/MP stored frame
- safety.py     checks before writing (truncated, corrupt, 0-byte, extension mismatch, links, read-only)
                and the atomic replace
- backends.py   pyexiv2 and exiftool (stay-open) behind one interface (edit.py), chosen automatically;
                pyexiv2_edit.py and exiftool_edit.py are the two backends
- writer.py     one file: choose photo or sidecar and write it; plan.py (merge with what is there, diff),
                sidecars.py, replace.py (render, read back, atomic replace)
- export.py     from the library: consistency check, export, record of what was written
- reader.py     existing captions/people/regions/keywords into the library, concept proposals
"""
from .backends import Backends, available_backends
from .exiftool_edit import exiftool_available
from .pyexiv2_edit import pyexiv2_available
from .export import (
    ExportOptions, ExportReport, Issue, accepted_photo_ids, check_consistency, export_photos, photo_values,
)
from .fields import DEFAULT_GROUPS, FIELDS, GROUPS, caption_tags, field_table, strip_tags
from .reader import (
    ConceptProposal, FileMetadata, ReadReport, apply_concept_proposals, photo_ids_under, propose_concepts,
    read_file_metadata, read_metadata_into_library,
)
from .safety import Refused
from .sidecars import sidecar_path
from .writer import MetadataValues, Person, RegionBox, WriteOptions, WriteResult, write_metadata

__all__ = [
    "Backends", "available_backends", "exiftool_available", "pyexiv2_available",
    "ExportOptions", "ExportReport", "Issue", "accepted_photo_ids", "check_consistency", "export_photos",
    "photo_values", "DEFAULT_GROUPS", "FIELDS", "GROUPS", "caption_tags", "field_table", "strip_tags",
    "ConceptProposal", "FileMetadata", "ReadReport", "apply_concept_proposals", "photo_ids_under",
    "propose_concepts", "read_file_metadata", "read_metadata_into_library", "Refused",
    "MetadataValues", "Person", "RegionBox", "WriteOptions", "WriteResult", "sidecar_path", "write_metadata",
]

"""An album to kill an export in (tests of exports stopped by SIGKILL at any moment)."""
from __future__ import annotations

import shutil
import textwrap

from repic_desktop.core.library import Box, Library
from repic_desktop.core.scanner import scan_folder
from repic_desktop.metadata.export import photo_values
from repic_desktop.metadata.writer import write_metadata
from tests.helpers.metadata_files import make_image, sha


def kill_album(tmp_path, n):
    """n identical small photos, each with Zoë + Rex regions and an accepted caption; returns the
    library file, the folder, and the sha256 of a photo before and after a complete export."""
    folder = tmp_path / "album"
    folder.mkdir()
    src = make_image(tmp_path / "src.jpg", size=(64, 48))
    for i in range(n):
        shutil.copy(src, folder / f"{i:03d}.jpg")
    db = tmp_path / "lib.sqlite"
    with Library(db) as lib:
        scan_folder(lib, str(folder))
        lib.concepts.add("Zoë", "person")
        lib.concepts.add("Rex", "pet")
        with lib.transaction():
            for p in lib.photos.list():
                lib.concepts.tag(p.id, "Zoë", box=Box(4, 4, 20, 20))
                lib.concepts.tag(p.id, "Rex", box=Box(30, 20, 20, 20))
                lib.captions.add(p.id, "<Zoë> with <Rex>", status="accepted")
        one = lib.photos.list()[0]
        ref = tmp_path / "ref.jpg"
        shutil.copy(src, ref)
        assert write_metadata(ref, photo_values(lib, one, lib.captions.current(one.id))).status == "written"
    return db, folder, sha(src), sha(ref)


# Run with `python -c POINT_SCRIPT LIBRARY before|after N`: the export kills itself just before or just
# after its Nth os.replace.
POINT_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from repic_desktop.core.library import Library
    from repic_desktop.metadata import export_photos, accepted_photo_ids
    where, nth = sys.argv[2], int(sys.argv[3])
    real, calls = os.replace, [0]
    def replace(a, b):
        calls[0] += 1
        if calls[0] == nth and where == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real(a, b)
        if calls[0] == nth and where == "after":
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
    lib = Library(sys.argv[1])
    export_photos(lib, accepted_photo_ids(lib))
""")

"""Hostile files must not hang an import (issue 14, "Hangs"): every parser's work is bounded by the size of
its input with a small constant, and an import commits as it goes.

Work is measured with counters where the code allows it (deterministic on a loaded machine); where only
the whole command shows the hang, a subprocess runs under a timeout far above the fixed time and far
below the old one."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

from PIL import Image

from repic_desktop.core import images, raw
from repic_desktop.core.images import probe
from tests.helpers.corpus import jpeg_bytes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(tmp_path) -> dict:
    env = dict(os.environ, PYTHONPATH=REPO, REPIC_CONFIG_DIR=str(tmp_path / "cfg"),
               REPIC_CACHE_DIR=str(tmp_path / "cache"), QT_QPA_PLATFORM="offscreen")
    env.pop("REPIC_LIBRARY", None)
    return env


# ------------------------------------------------------------------ RAW preview scan (core/raw.py)

class _CountingBytes(bytes):
    """bytes that count single-byte reads: the scan's work, whatever the machine's speed."""
    reads = 0

    def __getitem__(self, key):
        if isinstance(key, int):
            type(self).reads += 1
        return super().__getitem__(key)


def _scan_work(data: bytes) -> int:
    _CountingBytes.reads = 0
    try:
        raw.raw_facts(_CountingBytes(data), images.MAX_PIXELS)
    except raw.NoPreview:
        pass
    return _CountingBytes.reads


def test_raw_preview_scan_of_repeated_start_markers_is_linear():
    # Every FF D8 FF starts a candidate; the old walk went from each one to the end of the file.
    small, big = _scan_work(b"\xff\xd8\xff" * 1000), _scan_work(b"\xff\xd8\xff" * 2000)
    assert big < 2.5 * small, (small, big)          # quadratic work quadruples
    assert big < 40 * 6000, big                      # a few reads per byte, not thousands


def test_raw_preview_scan_of_nested_headers_is_bounded():
    # Start markers hidden in the payload of segments that chain to the end of the file: each candidate
    # parses validly for the whole file, so only a work budget keeps the scan linear.
    seg = b"\xff\xfe\x00\x04\xff\xd8"     # COM segment whose payload starts another header
    small, big = _scan_work(b"\xff\xd8" + seg * 2000), _scan_work(b"\xff\xd8" + seg * 4000)
    assert big < 2.5 * small, (small, big)


def test_raw_preview_scan_still_finds_previews_after_hostile_bytes():
    preview = jpeg_bytes((320, 240))
    data = b"\xff\xd8\xff" * 5000 + b"\x00" * 16 + preview + b"\x00" * 16
    facts = raw.raw_facts(data, images.MAX_PIXELS)
    assert (facts.width, facts.height) == (320, 240)
    assert facts.preview == (15016, len(preview))


def test_raw_ifd_with_thousands_of_big_entries_is_read_in_bounded_memory():
    import struct
    import tracemalloc
    n = 8000    # entries of 4096 LONGs each, all pointing at the same 16 KB: 112 KB of file
    data_off = 8 + 2 + 12 * n + 4
    entries = b"".join(struct.pack("<HHII", 0x8000 + i, 4, 4096, data_off) for i in range(n))
    data = b"II*\x00" + struct.pack("<IH", 8, n) + entries + bytes(4) + bytes(16384)
    tracemalloc.start()
    try:
        try:
            raw.raw_facts(data, images.MAX_PIXELS)
        except raw.NoPreview:
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak >> 20      # every entry's 4096 values were decoded: 250 MB


def test_many_ifd_candidates_at_one_preview_parse_it_once(monkeypatch):
    import struct
    preview = jpeg_bytes((320, 240))
    # 64 chained IFDs, each pointing at the same preview with a different length
    ifds, base = [], 8
    size = 2 + 2 * 12 + 4
    pre_off = base + 64 * size
    for k in range(64):
        nxt = base + (k + 1) * size if k < 63 else 0
        ifds.append(struct.pack("<H", 2) + struct.pack("<HHII", 0x201, 4, 1, pre_off)
                    + struct.pack("<HHII", 0x202, 4, 1, len(preview) + k) + struct.pack("<I", nxt))
    data = b"II*\x00" + struct.pack("<I", base) + b"".join(ifds) + preview + bytes(64)
    opened = []
    real = raw.JpegImagePlugin.JpegImageFile

    def spy(*a, **k):
        opened.append(1)
        return real(*a, **k)
    monkeypatch.setattr(raw.JpegImagePlugin, "JpegImageFile", spy)
    facts = raw.raw_facts(data, images.MAX_PIXELS)
    assert (facts.width, facts.height, facts.preview[0]) == (320, 240, pre_off)
    assert len(opened) == 1, len(opened)    # once per candidate, each on a copy of the preview


def test_import_of_a_102kb_dng_of_start_markers_finishes_quickly(tmp_path):
    album = tmp_path / "album"
    album.mkdir()
    (album / "hostile.dng").write_bytes(b"\xff\xd8\xff" * 34_000)   # 102 KB; the old import took minutes
    Image.new("RGB", (64, 48), (10, 120, 200)).save(album / "good.jpg")
    out = subprocess.run([sys.executable, "-m", "repic_desktop", "--library", str(tmp_path / "l.sqlite"),
                          "import", str(album), "--json"], env=_env(tmp_path), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["added"] == 1
    assert [s["reason"] for s in report["skipped"]] == [
        "camera RAW without a usable embedded JPEG preview (RAW decoding is not supported: export a JPEG or "
        "TIFF from your RAW editor to caption it)"]


# ------------------------------------------------------------------ JPEG header then zeros (core/images/)

class _CountingReader(io.BytesIO):
    calls = 0

    def read(self, *a):
        type(self).calls += 1
        return super().read(*a)


def _inspect_reads(data: bytes) -> tuple[int, str]:
    _CountingReader.calls = 0
    head = data[:32]
    try:
        probe._inspect(images.sniff_format(head), head, data, _CountingReader(data), "x.jpg")
        return _CountingReader.calls, "ok"
    except images.UnusableImage as exc:
        return _CountingReader.calls, str(exc)


def test_jpeg_start_followed_by_zeros_is_refused_without_a_byte_by_byte_walk():
    app0 = jpeg_bytes((16, 16))[:20]
    for data in (b"\xff\xd8\xff" + bytes(4 << 20), app0 + bytes(4 << 20)):
        calls, reason = _inspect_reads(data)
        assert calls < 100, calls      # Pillow read the 4 MB of zeros one byte at a time
        assert reason.startswith("corrupt JPEG: zero bytes where a marker should be"), reason


def _after_app0(jpeg: bytes) -> int:
    assert jpeg[2:4] == b"\xff\xe0"
    return 4 + int.from_bytes(jpeg[4:6], "big")


def test_jpeg_with_endless_fill_bytes_or_junk_markers_is_refused_quickly():
    good = jpeg_bytes((16, 16))
    cut = _after_app0(good)
    for filler in (b"\xff" * (2 << 20), b"\xff\x00" * (1 << 20), b"\xff\xd0" * (1 << 20),
                   b"\xab" * (2 << 20), (b"\x00" * 60000 + b"\xff\xfe\x00\x02") * 40):
        calls, reason = _inspect_reads(good[:cut] + filler + good[cut:])
        assert calls < 100, (filler[:2], calls)
        assert reason.startswith("corrupt JPEG:"), reason


def test_jpeg_headers_with_a_little_junk_still_import():
    good = jpeg_bytes((40, 30))
    cut = _after_app0(good)                    # junk and fill bytes between two header segments
    for data in (good, good[:cut] + b"\x00" * 100 + good[cut:], good[:cut] + b"\xff" * 100 + good[cut:]):
        calls, reason = _inspect_reads(data)
        assert reason == "ok", reason


# ------------------------------------------------------------------ sidecar with thousands of regions

def _sidecar(n: int, *, same_name: bool = False, people: int = 0) -> str:
    items = "".join(
        f'<rdf:li rdf:parseType="Resource"><mwg-rs:Name>{"Person" if same_name else f"Person {i}"}</mwg-rs:Name>'
        f'<mwg-rs:Type>Face</mwg-rs:Type><mwg-rs:Area stArea:x="{i % 50 / 50 + 0.01:.4f}" '
        f'stArea:y="{i // 50 % 50 / 50 + 0.01:.4f}" stArea:w="0.02" stArea:h="0.02" stArea:unit="normalized"/>'
        f'</rdf:li>' for i in range(n))
    pii = "".join(f"<rdf:li>Guest {i}</rdf:li>" for i in range(people))
    return (
        '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
        'xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/" '
        'xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#" xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#" '
        'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">'
        + (f"<Iptc4xmpExt:PersonInImage><rdf:Bag>{pii}</rdf:Bag></Iptc4xmpExt:PersonInImage>" if people else "")
        + '<mwg-rs:Regions rdf:parseType="Resource"><mwg-rs:AppliedToDimensions stDim:w="1000" stDim:h="1000" '
        f'stDim:unit="pixel"/><mwg-rs:RegionList><rdf:Bag>{items}</rdf:Bag></mwg-rs:RegionList></mwg-rs:Regions>'
        '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')


def _album_with_sidecar(tmp_path, xmp: str, name: str = "photo.jpg"):
    album = tmp_path / "album"
    album.mkdir(exist_ok=True)
    Image.new("RGB", (1000, 1000), (200, 180, 160)).save(album / name)
    (album / f"{name}.xmp").write_text(xmp)
    return album


def _count_tag_reads(monkeypatch) -> dict:
    from repic_desktop.core.stores.concepts import ConceptStore
    calls = {"regions": 0, "of_photo": 0}
    for meth in calls:
        real = getattr(ConceptStore, meth)

        def spy(self, *a, _real=real, _m=meth, **k):
            calls[_m] += 1
            return _real(self, *a, **k)
        monkeypatch.setattr(ConceptStore, meth, spy)
    return calls


def test_reading_many_named_regions_reads_the_photos_tags_once(tmp_path, library, monkeypatch):
    from repic_desktop.core.scanner import scan_folder
    from repic_desktop.metadata import reader
    monkeypatch.setattr(reader, "MAX_REGIONS_PER_PHOTO", 10_000, raising=False)  # the work, not the cap
    monkeypatch.setattr(reader, "MAX_NAMES_PER_PHOTO", 10_000, raising=False)
    album = _album_with_sidecar(tmp_path, _sidecar(300))
    scan_folder(library, album)
    ids = [p.id for p in library.photos.list()]
    calls = _count_tag_reads(monkeypatch)
    report = reader.read_metadata_into_library(library, ids, create_concepts=True)
    assert (len(report.created), report.regions_added) == (300, 300)
    assert calls["regions"] <= 2 and calls["of_photo"] <= 2, calls    # was one of each per name
    calls["regions"] = calls["of_photo"] = 0
    again = reader.read_metadata_into_library(library, ids)              # all names now concepts: tagged
    assert (again.regions_added, again.tags_added) == (0, 0)
    assert calls["regions"] <= 2 and calls["of_photo"] <= 2, calls


def test_a_sidecar_with_thousands_of_regions_is_read_up_to_a_cap_with_a_note(tmp_path, library):
    from repic_desktop.core.scanner import scan_folder
    from repic_desktop.metadata import reader
    album = _album_with_sidecar(tmp_path, _sidecar(2000, people=400))
    scan_folder(library, album)
    fm = reader.read_file_metadata(album / "photo.jpg")
    assert len(fm.regions) == reader.MAX_REGIONS_PER_PHOTO
    assert len(fm.names) == reader.MAX_NAMES_PER_PHOTO
    assert "only the first 256 of 2000 regions were read (more than any photo has)" in fm.notes
    report = reader.read_metadata_into_library(library, [p.id for p in library.photos.list()],
                                               create_concepts=True)
    assert report.regions_added == reader.MAX_REGIONS_PER_PHOTO
    reasons = [p["reason"] for p in report.problems]
    assert reasons[0] == "only the first 256 of 2000 regions were read (more than any photo has)"
    assert reasons[1].startswith("only the first 256 names were read, ")


def test_one_name_on_thousands_of_regions_is_bounded(tmp_path, library):
    from repic_desktop.core.scanner import scan_folder
    from repic_desktop.metadata import reader
    album = _album_with_sidecar(tmp_path, _sidecar(2000, same_name=True))
    scan_folder(library, album)
    report = reader.read_metadata_into_library(library, [p.id for p in library.photos.list()],
                                               create_concepts=True)
    assert report.created == ["Person"] and report.regions_added <= reader.MAX_REGIONS_PER_PHOTO


def test_import_read_metadata_of_a_sidecar_with_3000_regions_finishes(tmp_path):
    album = _album_with_sidecar(tmp_path, _sidecar(3000))
    out = subprocess.run([sys.executable, "-m", "repic_desktop", "--library", str(tmp_path / "l.sqlite"),
                          "import", str(album), "--read-metadata", "--create-concepts", "--json"],
                         env=_env(tmp_path), capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    meta = json.loads(out.stdout)["metadata"]
    assert meta["regions_added"] == 256 and len(meta["created"]) == 256
    assert meta["problems"][0]["reason"].startswith("only the first 256 of 3000 regions")


# ------------------------------------------------------------------ an import commits as it goes

_CHILD = r'''
import os, sys, threading
from contextlib import contextmanager
from repic_desktop.core import images, scanner
from repic_desktop.core.library import Library
from repic_desktop.cli import main

scanner.THREAD_MIN_BYTES = 0          # every file read by the worker threads, as real photos are
scanner.BATCH_SECONDS = 3600.0        # no commit because a batch got old: only the one under test
real_probe = images.probe_file

def probe(path):
    if os.path.basename(os.fsdecode(path)) == "zz-slow.jpg":   # a file whose read never ends
        print("blocked", flush=True)
        threading.Event().wait()
    return real_probe(path)

images.probe_file = probe
real_tx = Library.transaction

@contextmanager
def tx(self):
    with real_tx(self) as conn:
        yield conn
    if not self.conn.in_transaction:
        n = self.conn.execute("SELECT count(*) FROM photos").fetchone()[0]
        print(f"committed {n}", flush=True)

Library.transaction = tx
main(["--library", sys.argv[1], "import", sys.argv[2]])
'''


def test_an_import_killed_while_a_file_is_slow_keeps_the_photos_read_before_it(tmp_path):
    import queue
    import signal
    import threading

    from repic_desktop.core.library import Library
    album = tmp_path / "album"
    album.mkdir()
    for i in range(5):
        Image.new("RGB", (32 + i, 24), (i * 40, 100, 200)).save(album / f"a{i}.jpg")
    Image.new("RGB", (32, 24)).save(album / "zz-slow.jpg")
    lib_path = tmp_path / "l.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(lib_path), str(album)], env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x.strip()) for x in proc.stdout] and None, daemon=True).start()
    seen = []
    try:
        while "committed 5" not in seen:
            try:
                seen.append(lines.get(timeout=30))   # the old scan never committed while it waited
            except queue.Empty:
                raise AssertionError(f"no commit of the 5 photos read before the slow file: {seen}") from None
        assert "blocked" in seen
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    lib = Library(lib_path)
    try:
        assert sorted(os.path.basename(p.path) for p in lib.photos.list()) == [f"a{i}.jpg" for i in range(5)]
    finally:
        lib.close()


def test_import_prints_what_it_left_out_of_a_photos_metadata(tmp_path, isolated_env, capsys):
    from repic_desktop.cli import main
    album = _album_with_sidecar(tmp_path, _sidecar(300))
    assert main(["--library", str(tmp_path / "l.sqlite"), "import", str(album), "--read-metadata"]) == 0
    out = capsys.readouterr().out
    assert "photo.jpg: only the first 256 of 300 regions were read (more than any photo has)" in out

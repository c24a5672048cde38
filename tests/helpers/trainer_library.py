"""A small generated library for the trainer's tests (three concepts with references, tagged photos with
boxes, an accepted caption, a draft, a detector suggestion) and a fake finished training run."""
from __future__ import annotations

from pathlib import Path

from repic_desktop.core.library import Box, Library
from repic_desktop.core.scanner import scan_folder


# photo stem -> (size, concepts confirmed by hand)
LAYOUT = {
    "ref_anya": ((56, 56), []), "ref_bond": ((56, 56), []), "ref_cleo": ((56, 56), []),
    "a1": ((112, 84), ["Anya"]), "a2": ((56, 56), ["Anya"]), "a3": ((56, 56), ["Anya"]), "a4": ((56, 56), ["Anya"]),
    "b1": ((56, 56), ["Bond"]), "b2": ((84, 56), ["Bond"]), "b3": ((56, 56), ["Bond"]),
    "c1": ((56, 56), ["Cleo"]), "c2": ((56, 56), ["Cleo"]),
    "c3": ((56, 56), []),  # Cleo only through an accepted caption
    "ab1": ((112, 56), ["Anya", "Bond"]), "ab2": ((56, 56), ["Anya", "Bond"]),
    "u1": ((56, 56), []),  # nobody known
    "d1": ((56, 56), []),  # Bond only as a detector suggestion (not ground truth)
}
BOXES = {"a1": {"Anya": Box(10, 20, 50, 40)}, "ab1": {"Anya": Box(0, 0, 40, 56), "Bond": Box(60, 4, 50, 50)}}


def make_library(root: Path) -> Path:
    from PIL import Image, ImageDraw

    photos = root / "photos"
    photos.mkdir(parents=True)
    for i, (stem, ((w, h), _)) in enumerate(sorted(LAYOUT.items())):
        im = Image.new("RGB", (w, h), ((47 * i) % 256, (89 * i) % 256, (13 * i) % 256))
        ImageDraw.Draw(im).ellipse([w // 4, h // 4, w // 2, h // 2], fill=(255 - 9 * i, 40, 200))
        im.save(photos / f"{stem}.png")
    lib_path = root / "lib.sqlite"
    with Library(lib_path) as lib:
        scan_folder(lib, photos)
        pid = {Path(p.path).stem: p.id for p in lib.photos.list()}
        for name, kind, info in [("Anya", "person", "A girl with pink hair."), ("Bond", "pet", "A white dog."),
                                 ("Cleo", "pet", "A black cat.")]:
            lib.concepts.add(name, kind, info)
            lib.concepts.add_ref(name, photo_id=pid[f"ref_{name.lower()}"])
        for stem, (_, names) in LAYOUT.items():
            for n in names:
                lib.concepts.tag(pid[stem], n, box=BOXES.get(stem, {}).get(n))
        cid = lib.captions.add(pid["c3"], "<Cleo> sleeps on a red sofa.", tags=["Cleo"], status="accepted")
        assert cid
        lib.captions.add(pid["u1"], "<Anya> maybe", tags=["Anya"], status="draft")  # drafts are not truth
        lib.concepts.tag(pid["d1"], "Bond", source="detected")
    return lib_path


def fake_run(folder: Path) -> Path:
    """The files a training run leaves in its --out folder (adapter, a checkpoint, run_config.json)."""
    adapter = folder / "adapter"
    adapter.mkdir(parents=True)
    for f in ("adapter_config.json", "adapter_model.safetensors", "manifest.json", "README.md"):
        (adapter / f).write_text("x")
    cp = folder / "checkpoints" / "checkpoint-2"
    cp.mkdir(parents=True)
    (cp / "trainer_state.json").write_text("{}")
    (folder / "run_config.json").write_text("{}")
    return adapter

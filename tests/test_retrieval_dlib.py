"""The offline face matcher (dlib) on real faces shipped in installed packages, and the `repic suggest`,
`repic index` and `repic faces` commands end to end on a fresh library."""
from __future__ import annotations

import json

import numpy as np
import pytest

from repic_desktop.cli import main
from repic_desktop.core.library import Library
from repic_desktop.retrieval import service
from repic_desktop.retrieval.index import ExactIndex
from tests.helpers.cli_run import run

from .conftest import augment_face_photo

SEEDS = (1, 2, 4)  # augmentations in which HOG finds the face at 480 px (seed 3 turns Eileen too far)


@pytest.fixture(scope="module")
def faces_matcher():
    return service.get_matcher("dlib-faces")


def _best_face(matcher, image):
    faces = [c for c in matcher.crops(image) if c.kind == "face"]
    assert faces, "no face found"
    return faces[0]


def test_right_person_ranks_first_and_a_stranger_is_not_matched(faces_matcher, real_faces):
    m = faces_matcher
    refs = {name: m.reference_crop(img, None) for name, img in real_faces.items()}
    assert all(r is not None and r.kind == "face" and r.vector.shape == (128,) for r in refs.values())
    both = ExactIndex(np.stack([refs["eileen"].vector, refs["grace"].vector]), [1, 2])
    only_eileen = ExactIndex(refs["eileen"].vector[None, :], [1])
    for seed in SEEDS:
        for name, cid in (("eileen", 1), ("grace", 2)):
            face = _best_face(m, augment_face_photo(real_faces[name], seed))
            ranked, _ = both.match(face.vector[None, :], top_k=2, threshold=m.threshold)
            assert [x.concept_id for x in ranked] == [cid], (name, seed)
    # Grace is a stranger to a library that only knows Eileen.
    face = _best_face(m, augment_face_photo(real_faces["grace"], 2))
    ranked, per_crop = only_eileen.match(face.vector[None, :], top_k=2, threshold=m.threshold)
    assert ranked == [] and per_crop == [None]


def test_the_68_point_model_is_never_opened(monkeypatch):
    import dlib

    from repic_desktop.retrieval.dlib_faces import DlibFaceMatcher
    from repic_desktop.retrieval.registry import MATCHERS

    opened = []
    real = dlib.shape_predictor

    def spy(path):
        opened.append(path)
        return real(path)

    monkeypatch.setattr(dlib, "shape_predictor", spy)
    DlibFaceMatcher(MATCHERS["dlib-faces"], cats=False)
    assert len(opened) == 1 and opened[0].endswith("shape_predictor_5_face_landmarks.dat")


def test_box_on_reference_is_respected(faces_matcher, real_faces):
    from PIL import Image

    # Two people side by side; a box around the right one must yield Grace, not Eileen.
    e, g = real_faces["eileen"], real_faces["grace"]
    canvas = Image.new("RGB", (e.width + g.width, max(e.height, g.height)), (128, 128, 128))
    canvas.paste(e, (0, 0))
    canvas.paste(g, (e.width, 0))
    right = faces_matcher.reference_crop(canvas, (e.width, 0, g.width, g.height))
    grace = faces_matcher.reference_crop(g, None)
    eileen = faces_matcher.reference_crop(e, None)
    assert right.box[0] >= e.width
    sim = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    assert sim(right.vector, grace.vector) > faces_matcher.threshold > sim(right.vector, eileen.vector)


def test_cli_index_suggest_confirm_reject_and_faces(tmp_path, real_faces, capsys):
    album = tmp_path / "album"
    album.mkdir()
    real_faces["eileen"].save(album / "eileen.jpg", quality=92)
    real_faces["grace"].save(album / "grace.jpg", quality=92)
    augment_face_photo(real_faces["eileen"], 1).save(album / "party_e1.jpg", quality=90)
    augment_face_photo(real_faces["grace"], 2).save(album / "party_g2.jpg", quality=90)
    augment_face_photo(real_faces["grace"], 4).save(album / "party_g4.jpg", quality=90)
    real_faces["eileen"].save(album / "zz_broken.jpg", quality=92)
    lib = ["--library", str(tmp_path / "lib.sqlite")]
    assert main([*lib, "import", str(album), "--json"]) == 0
    (album / "zz_broken.jpg").write_bytes(b"")  # unreadable after import
    assert main([*lib, "concept", "add", "Eileen", "--kind", "person", "--ref", str(album / "eileen.jpg")]) == 0
    assert main([*lib, "concept", "add", "Grace", "--kind", "person", "--ref", str(album / "grace.jpg")]) == 0
    capsys.readouterr()

    code, out, err = run(capsys, *lib, "index", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["indexed"] == 5 and summary["failed"] == 1 and summary["references"] == {"computed": 2}
    assert list(summary["errors"].values()) == ["empty file (0 bytes)"]
    code, out, err = run(capsys, *lib, "index", "--json")  # nothing changed: nothing recomputed
    assert json.loads(out)["indexed"] == 0 and json.loads(out)["skipped"] == 5

    code, out, err = run(capsys, *lib, "suggest", str(album / "party_e1.jpg"), str(album / "party_g2.jpg"), "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [[s["concept"] for s in r["suggestions"]] for r in rows] == [["Eileen"], ["Grace"]]
    e1 = rows[0]["suggestions"][0]
    assert e1["kind"] == "face" and e1["status"] == "pending" and e1["score"] > 0.91 and len(e1["box"]) == 4
    code, out, _ = run(capsys, *lib, "suggest", str(album / "party_e1.jpg"))
    assert "<Eileen>  score" in out and "face at" in out
    code, out, err = run(capsys, *lib, "suggest", str(album / "zz_broken.jpg"))
    assert code == 3 and "empty file" in out

    code, out, err = run(capsys, *lib, "suggest", "--confirm", str(album / "party_e1.jpg"), "Eileen", "--json")
    assert code == 0, err
    assert json.loads(out)["concepts"] == ["Eileen"]
    with Library(tmp_path / "lib.sqlite") as db:
        pid = db.photos.resolve(str(album / "party_e1.jpg")).id
        region = db.concepts.regions(pid)[0]
        assert region.source == "suggestion" and region.box.as_list() == e1["box"]
    # Grace is rejected on both party photos: those faces become unknown and cluster together.
    for name in ("party_g2.jpg", "party_g4.jpg"):
        code, out, err = run(capsys, *lib, "suggest", "--reject", str(album / name), "Grace")
        assert code == 0, err
        assert "will not be suggested again" in out
    code, out, _ = run(capsys, *lib, "faces", "clusters", "--json")
    clusters = json.loads(out)
    assert [c["size"] for c in clusters] == [2]
    code, out, err = run(capsys, *lib, "faces", "name", str(clusters[0]["id"]), "Amazing Grace", "--json")
    assert code == 0, err
    named = json.loads(out)
    assert named["faces"] == 2 and named["references"] == 1 and named["photos"] == 1  # the best face is the reference
    code, out, _ = run(capsys, *lib, "photos", "list", "--concept", "Amazing Grace", "--json")
    assert sorted(p["filename"] for p in json.loads(out)) == ["party_g2.jpg", "party_g4.jpg"]
    code, out, _ = run(capsys, *lib, "faces", "clusters")
    assert "no unknown faces" in out
    # Re-indexing keeps the rejections.
    run(capsys, *lib, "index", "--json")
    code, out, _ = run(capsys, *lib, "suggest", str(album / "party_g2.jpg"), "--json")
    assert "Grace" not in [s["concept"] for s in json.loads(out)["suggestions"]]
    code, _, err = run(capsys, *lib, "suggest", "--confirm", str(album / "party_g2.jpg"), "Nobody")
    assert code == 1 and "Nobody" in err


def test_naming_a_group_of_four_faces_leaves_photos_to_train_on_and_every_count_agrees(tmp_path, real_faces,
                                                                                       capsys):
    """Issue #14: naming a face group made all its photos references, so `repic-train dataset` found 0
    photos of a person the lists showed with 4. Now a few faces become references and the rest are
    training photos, and `faces name`, `concept list|show` and the trainer count the same photos."""
    from trainer.__main__ import main as train_main

    album = tmp_path / "album"
    album.mkdir()
    real_faces["grace"].save(album / "g0.jpg", quality=90)
    for seed in (1, 2, 4):
        augment_face_photo(real_faces["grace"], seed).save(album / f"g{seed}.jpg", quality=90)
    real_faces["eileen"].save(album / "eileen.jpg", quality=90)
    lib = ["--library", str(tmp_path / "lib.sqlite")]
    assert main([*lib, "import", str(album), "--json"]) == 0
    assert main([*lib, "index", "--json"]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, *lib, "faces", "clusters", "--json")
    clusters = json.loads(out)
    assert [c["size"] for c in clusters] == [4, 1]
    code, out, err = run(capsys, *lib, "faces", "name", str(clusters[0]["id"]), "Grace", "--json")
    assert code == 0, err
    named = json.loads(out)
    assert named["faces"] == 4 and named["references"] == 1 and named["photos"] == 3
    with Library(tmp_path / "lib.sqlite") as db:
        ref = db.concepts.refs("Grace")[0]
        assert ref.box is not None                                  # the face, not the whole photo
        assert len(db.photos.list(concept="Grace")) == 4            # every photo of the group is tagged

    code, out, err = run(capsys, *lib, "concept", "show", "Grace", "--json")
    shown = json.loads(out)
    code, out, _ = run(capsys, *lib, "concept", "list", "--json")
    listed = {r["name"]: r for r in json.loads(out)}
    code = train_main(["dataset", "--library", str(tmp_path / "lib.sqlite"), "--concepts", "Grace", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    summary = json.loads(out.strip().splitlines()[-1])["summary"]
    trained = summary["photos"]["Grace"]
    assert trained["photos"] == 3 and trained["references"] == 1 and trained["heldout"] == 1
    assert summary["concepts"]["Grace"]["ict"] == 2                 # the two photos not held out
    assert shown["photos"] == listed["Grace"]["photos"] == trained["photos"]
    code = train_main(["dataset", "--library", str(tmp_path / "lib.sqlite"), "--concepts", "Grace"])
    out, _ = capsys.readouterr()
    assert "<Grace>: 3 photos (1 held out), 1 reference(s)" in out

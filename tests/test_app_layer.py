"""The application layer (repic_desktop/app/): job planning shared by `repic caption`, `repic prompt` and the
GUI; caption review (`repic captions accept|edit|revert` and the photo panel's undo); one error base class;
one photo filter; one adapter manifest reader."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from repic_desktop.app import caption_review as review
from repic_desktop.app.caption_jobs import CaptionOptions, plan_caption_job, plan_prompt
from repic_desktop.core.errors import RepicError, UserError
from repic_desktop.core.library import Library
from repic_desktop.core.settings import Settings
from tests.helpers.cli_run import run


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """The user's settings, per test: a user preset as the default request, the other system preset."""
    monkeypatch.setenv("REPIC_CONFIG_DIR", str(tmp_path / "config"))
    s = Settings()
    s.extra.update(request_presets={"mine": "Describe <this> photo for the family album."},
                   request_preset="mine", system_preset="repic-no-duplication", max_refs=2, batch_size=3,
                   max_new_tokens=5)
    s.save()
    return s


def test_app_layer_imports_neither_qt_nor_torch():
    code = ("import sys; import repic_desktop.app.caption_jobs, repic_desktop.app.caption_review, "
            "repic_desktop.app.adapters, repic_desktop.core.errors; "
            "print(sorted(m for m in ('torch', 'transformers', 'PySide6') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_errors_written_for_users_share_one_base():
    from repic_desktop.captioning.jobs import JobParamsError
    from repic_desktop.captioning.model_manager import ModelError
    from repic_desktop.captioning.prompt import PromptError
    from repic_desktop.cli.common import UserError as CliUserError
    from repic_desktop.core.concepts import ConceptError
    from repic_desktop.core.errors import user_message
    from repic_desktop.core.library import LibraryError
    from repic_desktop.core.settings import SettingsError

    for cls in (CliUserError, LibraryError, ConceptError, SettingsError, PromptError, JobParamsError, ModelError):
        assert issubclass(cls, RepicError), cls
        assert user_message(cls("what to do")) == "what to do"
    assert issubclass(PromptError, ValueError) and issubclass(ConceptError, ValueError)  # callers catch these
    assert user_message(KeyError("x")).startswith("unexpected error (KeyError")


def test_plan_uses_the_users_presets_skip_rule_and_max_refs(family, settings):
    with Library(family["path"]) as lib:
        ids = [p.id for p in lib.photos.list()]
        lib.captions.add(ids[1], "Done by hand.", source="user")
        plan = plan_caption_job(lib, Settings.load(), [ids[0], ids[1], ids[0], ids[3]])
        p = plan.params
        assert plan.photo_ids == [ids[0], ids[3]] and plan.skipped == [ids[1]]
        assert p["request"] == "Describe <this> photo for the family album."
        assert p["system_preset"] == "repic-no-duplication" and p["max_refs"] == 2 and p["batch_size"] == 3
        assert p["concepts"] is None and p["photo_concepts"] == {str(ids[0]): ["Anya", "Bond"], str(ids[3]): []}
        assert p["auto"] == {"include_suggestions": False, "threshold": None, "top_k": None}
        assert p["gui"]["preset"] == "mine"
        forced = plan_caption_job(lib, Settings.load(), [ids[1]], CaptionOptions(skip_captioned=False,
                                                                                  concepts=["Bond"]))
        assert forced.photo_ids == [ids[1]] and forced.params["concepts"] == ["Bond"]
        assert "photo_concepts" not in forced.params
        for options, message in [(CaptionOptions(request_preset="nope"), "unknown request preset 'nope'"),
                                 (CaptionOptions(concepts=["Nobody"]), "no person, pet or thing called 'Nobody'"),
                                 (CaptionOptions(max_refs=0), "reference photos per concept"),
                                 (CaptionOptions(concepts=["Bond"], threshold=0.5), "suggestion options")]:
            with pytest.raises(RepicError, match=message):
                plan_caption_job(lib, Settings.load(), ids, options)


def test_repic_prompt_is_what_repic_caption_sends(family, settings, demo_model_dir, capsys):
    """The same settings (user preset as default, other system preset, max_refs 2): `repic prompt` shows
    the prompt whose hash the caption made by `repic caption` records, and the job's own rendering."""
    from repic_desktop.captioning.jobs import job_prompt
    from repic_desktop.captioning.prompt import render
    from repic_desktop.core.jobs import JobStore

    lib = family["lib"]
    capsys.readouterr()
    code, out, err = run(capsys, *lib, "prompt", "1", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert "Describe <this> photo for the family album." in shown["prompt"]
    assert "referencing the given reference images without duplication" in shown["prompt"]
    code, out, err = run(capsys, *lib, "caption", "1", "--model", str(demo_model_dir), "--max-pixels",
                         str(112 * 112), "--json")
    assert code == 0, err
    made = json.loads(out.splitlines()[-1])
    assert made["provenance"]["prompt_hash"] == shown["prompt_hash"] and made["provenance"]["max_refs"] == 2
    with Library(family["path"]) as l2:
        job = JobStore(l2).list()[0]
        assert render(job_prompt(l2, job.params, 1)) == shown["prompt"]
        assert render(plan_prompt(l2, Settings.load(), 1)) == shown["prompt"]
    # an explicit request wins over the default preset, in both commands alike
    code, out, _ = run(capsys, *lib, "prompt", "1", "--request", "Say hi.", "--json")
    assert code == 0 and "Say hi." in json.loads(out)["prompt"]


def _history(capsys, lib, photo):
    code, out, err = run(capsys, *lib, "captions", "list", str(photo), "--json")
    assert code == 0, err
    return json.loads(out)


def test_accept_edit_revert_from_the_cli_keep_the_history(family, capsys):
    lib = family["lib"]
    with Library(family["path"]) as l2:
        first = l2.captions.add(1, "<Anya> and <Bond> play.", model_id="m")
        l2.captions.add(2, "A draft.", model_id="m")
    capsys.readouterr()
    code, out, err = run(capsys, *lib, "caption", "edit", "1", "--text", "<Anya> plays with <Bond> outside.", "--json")
    assert code == 0, err
    row = json.loads(out)
    edited = row["caption"]
    assert row["from"] == first and row["to"] == edited and row["created"] == edited and row["caption_status"] == "draft"
    h = _history(capsys, lib, 1)
    assert [c["id"] for c in h["captions"]] == [first, edited] and h["current"] == edited
    assert h["captions"][1]["source"] == "user" and h["captions"][1]["parent_id"] == first
    assert h["captions"][1]["tags"] == ["Anya", "Bond"]

    code, out, err = run(capsys, *lib, "caption", "accept", "1")
    assert code == 0 and out.startswith(f"photo 1: accepted caption {edited}"), (out, err)
    code, out, _ = run(capsys, *lib, "captions", "accept", "1")
    assert code == 0 and "already accepted" in out

    code, out, err = run(capsys, *lib, "caption", "revert", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["to"] == first
    h = _history(capsys, lib, 1)
    assert h["current"] == first and len(h["captions"]) == 2  # nothing deleted or overwritten
    assert [c["status"] for c in h["captions"]] == ["draft", "accepted"]
    code, out, _ = run(capsys, *lib, "caption", "revert", "1", "--to", str(edited), "--json")
    assert code == 0 and json.loads(out)["to"] == edited

    code, out, err = run(capsys, *lib, "caption", "accept", "--all-drafts", "--json")
    assert code == 0, err
    assert [json.loads(x)["photo"] for x in out.splitlines()] == [2]
    with Library(family["path"]) as l2:
        assert l2.captions.current(2).status == "accepted"


def test_edit_in_the_users_editor(family, capsys, monkeypatch, tmp_path):
    with Library(family["path"]) as l2:
        l2.captions.add(3, "Old words.", model_id="m")
    script = tmp_path / "fake-editor.sh"
    script.write_text('#!/bin/sh\ngrep -q "Old words." "$1" && printf "New words.\\n" > "$1"\n')
    script.chmod(0o755)
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", str(script))
    capsys.readouterr()
    code, out, err = run(capsys, *family["lib"], "captions", "edit", "3", "--editor", "--json")
    assert code == 0, err
    assert json.loads(out)["text"] == "New words."
    monkeypatch.setenv("EDITOR", "false")  # an editor that fails changes nothing
    code, _, err = run(capsys, *family["lib"], "captions", "edit", "3", "--editor")
    assert code == 1 and "exited with status 1" in err
    with Library(family["path"]) as l2:
        assert len(l2.captions.history(3)) == 2


@pytest.mark.parametrize("argv, message", [
    (["caption", "accept", "99"], "no photo with id 99"),
    (["caption", "accept", "4"], "photo 4 has no caption to accept"),
    (["caption", "accept"], "say which captions"),
    (["caption", "edit", "4"], "--text TEXT or --editor"),
    (["caption", "edit", "nowhere.jpg", "--text", "x"], "not in the library"),
    (["caption", "revert", "4"], "photo 4 has no caption to revert"),
    (["caption", "revert", "5", "--to", "1"], "caption 1 is not a version of photo 5"),
    (["caption", "revert", "6"], "photo 6 has no earlier caption"),
])
def test_bad_review_input_is_one_line(family, capsys, argv, message):
    with Library(family["path"]) as l2:
        l2.captions.add(1, "Photo one.", model_id="m")
        l2.captions.add(5, "Photo five.", model_id="m")
        l2.captions.add(6, "Photo six.", model_id="m")
    capsys.readouterr()
    code, out, err = run(capsys, *family["lib"], *argv)
    assert code == 1 and out == "" and err.startswith("repic: error: ") and len(err.strip().splitlines()) == 1, err
    assert message in err


def test_review_changes_invert_for_undo(family):
    with Library(family["path"]) as lib:
        first = lib.captions.add(1, "One.", model_id="m")
        edit = review.edit_caption(lib, 1, "One, edited.")
        accept = review.accept_caption(lib, 1)
        assert (lib.captions.current(1).text, lib.captions.current(1).status) == ("One, edited.", "accepted")
        review.apply_change(lib, accept.inverse())
        review.apply_change(lib, edit.inverse())
        assert lib.captions.current(1).id == first and lib.captions.current(1).status == "draft"
        review.apply_change(lib, edit)
        review.apply_change(lib, accept)
        assert lib.captions.current(1).id == edit.created and lib.captions.current(1).status == "accepted"
        assert len(lib.captions.history(1)) == 2
        with pytest.raises(UserError):
            review.edit_caption(lib, 1, "   ")
        bond = lib.concepts.get("Bond").id
        change = review.untag(lib, 1, bond)
        assert "Bond" not in [c.name for c in lib.concepts.of_photo(1)]
        review.undo_tag(lib, change)
        assert "Bond" in [c.name for c in lib.concepts.of_photo(1)]


def test_one_photo_filter_a_folder_includes_its_subfolders(tmp_path):
    from PIL import Image

    from repic_desktop.core.photo_queries import PhotoFilter, query_photo_ids

    top = tmp_path / "album"
    (top / "2024").mkdir(parents=True)
    (tmp_path / "album-other").mkdir()
    for p in (top / "a.jpg", top / "2024" / "b.jpg", tmp_path / "album-other" / "c.jpg"):
        Image.new("RGB", (8, 8)).save(p)
    with Library(tmp_path / "lib.sqlite") as lib:
        for i, p in enumerate((top / "a.jpg", top / "2024" / "b.jpg", tmp_path / "album-other" / "c.jpg")):
            lib.photos.add(p, size=1, mtime_ns=1, content_hash=f"h{i}", format="JPEG", width=8, height=8)
        # the folder and its subfolder, not a sibling whose name starts the same way
        assert sorted(p.filename for p in lib.photos.list(folder=str(top))) == ["a.jpg", "b.jpg"]
        assert lib.photos.count(folder=str(top)) == 2
        assert sorted(p.id for p in lib.photos.list(folder=str(top))) == sorted(
            query_photo_ids(lib, PhotoFilter(folder=str(top))))


def test_one_adapter_manifest_reader():
    from repic_desktop.app.adapters import read_manifest

    m = read_manifest({"flagged": True, "metrics": {"before": {"f1": 0.1}, "after": {"f1": 0.2}}, "concepts": ["A"]})
    assert m.flagged and m.before == {"f1": 0.1} and m.after == {"f1": 0.2} and m.concepts == ["A"]
    old = read_manifest({"eval": {"before": {"f1": 0.3}}, "flagged": "yes"})  # an older layout; a non-bool flag
    assert old.before == {"f1": 0.3} and old.after is None and not old.flagged
    assert read_manifest(None).metrics == {}

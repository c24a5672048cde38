"""issue 14, adapters: the active adapter belongs to its library (a new library never captions with
another library's adapter; an older global setting stays valid only where that adapter is registered), a
LoRA is refused on a model it is already merged into, and failed training runs are listed and removable."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from repic_desktop.core.library import Library
from repic_desktop.core.settings import Settings


def _adapter_folder(folder: Path, content: bytes = b"not really weights") -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (folder / "adapter_model.safetensors").write_bytes(content)
    (folder / "manifest.json").write_text("{}")
    return folder


def _one_photo_library(path: Path, photos: Path) -> list[str]:
    from PIL import Image

    from repic_desktop.cli import main

    photos.mkdir(parents=True)
    Image.new("RGB", (80, 60), (200, 30, 30)).save(photos / "a.jpg")
    lib = ["--library", str(path)]
    assert main([*lib, "import", str(photos)]) == 0
    return lib


def test_a_new_library_never_captions_with_another_librarys_adapter(tmp_path, isolated_env, demo_model_dir, capsys):
    from repic_desktop.cli import main as repic
    from trainer.__main__ import main as repic_train

    lib_a = _one_photo_library(tmp_path / "a.sqlite", tmp_path / "pa")
    lib_b = _one_photo_library(tmp_path / "b.sqlite", tmp_path / "pb")
    family = _adapter_folder(tmp_path / "a-files" / "adapters" / "family" / "adapter")
    with Library(tmp_path / "a.sqlite") as lib:
        lib.adapters.register("family", family, base_model=str(demo_model_dir))
    assert repic_train(["adapters", *lib_a, "activate", "family"]) == 0
    capsys.readouterr()

    # library B captions with the model alone: A's adapter (trained on A's people) is not applied
    code = repic([*lib_b, "caption", "--all", "--max-new-tokens", "4", "--max-pixels", str(56 * 56), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    row = json.loads(out.splitlines()[0])
    assert row["caption"] and row["provenance"]["adapter"] is None
    assert repic_train(["adapters", *lib_b, "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert repic([*lib_b, "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["active_adapter"] is None

    # library A still has it (its spec carries it)
    from repic_desktop.captioning.models import ModelSpec

    with Library(tmp_path / "a.sqlite") as lib:
        assert ModelSpec.from_user_settings(Settings.load(), lib).adapter == str(family.resolve())
    assert repic_train(["adapters", *lib_a, "list", "--json"]) == 0
    assert [r["active"] for r in json.loads(capsys.readouterr().out)] == [True]

    # `repic model set --adapter` chooses for the library it is given, and `none` clears that one only
    mine = _adapter_folder(tmp_path / "b-lora")
    assert repic([*lib_b, "model", "set", "--adapter", str(mine), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["adapter"] == str(mine)
    assert repic([*lib_a, "model", "set", "--adapter", "none"]) == 0
    with Library(tmp_path / "a.sqlite") as a, Library(tmp_path / "b.sqlite") as b:
        assert Settings.load().active_adapter(a) is None and Settings.load().active_adapter(b) == str(mine)


def test_an_older_global_adapter_setting_stays_with_the_library_that_registered_it(tmp_path, isolated_env):
    from repic_desktop.captioning.models import ModelSpec
    from trainer import adapters as ad

    family = _adapter_folder(tmp_path / "runs" / "family")
    other = _adapter_folder(tmp_path / "runs" / "other")
    s = Settings()
    s.model.adapter = str(family)  # what older versions stored, for every library
    s.save()
    with Library(tmp_path / "a.sqlite") as a, Library(tmp_path / "b.sqlite") as b:
        a.adapters.register("family", family, base_model="m")
        a.adapters.register("other", other, base_model="m")
        assert Settings.load().active_adapter(a) == str(family)
        assert Settings.load().active_adapter(b) is None
        assert ModelSpec.from_user_settings(Settings.load(), b).adapter is None
        assert [r["active"] for r in ad.adapter_rows(a)] == [True, False]
        # a choice made in A moves the old setting into A: no library can pick it up afterwards
        ad.activate(a, "other")
        s = Settings.load()
        assert s.model.adapter is None and s.active_adapter(a) == str(other)
        # a top-level key: an older version, which keeps unknown top-level keys, does not lose it on save
        assert list(json.loads(Settings.path().read_text())["library_adapters"].values()) == [str(other)]
        b.adapters.register("family", family, base_model="m")
        assert Settings.load().active_adapter(b) is None
        # removing the active adapter deactivates it in its own library only
        ad.activate(b, "family")
        ad.remove(a, "other")
        s = Settings.load()
        assert s.active_adapter(a) is None and s.active_adapter(b) == str(family)


def test_a_lora_is_refused_on_a_model_it_is_merged_into(tmp_path, demo_model_dir):
    """The marker `adapters merge` writes names the adapter by the hash of its weights, so an exported
    copy of it is refused too; another adapter is not."""
    from repic_desktop.captioning.models import MERGE_MARKER, ModelLoadError, ModelSpec, file_sha256, load_model

    adapter = _adapter_folder(tmp_path / "run" / "adapter", b"the family adapter")
    merged = tmp_path / "merged"
    shutil.copytree(demo_model_dir, merged)
    (merged / MERGE_MARKER).write_text(json.dumps({"merged_from": {
        "base_model": str(demo_model_dir), "adapter": "family", "adapter_path": str(adapter),
        "adapter_sha256": file_sha256(adapter / "adapter_model.safetensors")}, "dtype": "float32"}))
    copy = tmp_path / "exported"
    shutil.copytree(adapter, copy)
    for lora in (adapter, copy):
        with pytest.raises(ModelLoadError, match="already merged into") as exc:
            load_model(ModelSpec(source=str(merged), adapter=str(lora), device="cpu"))
        assert "\n" not in str(exc.value)
    unrelated = _adapter_folder(tmp_path / "unrelated", b"another adapter")
    with pytest.raises(Exception) as exc:  # gets past the check (and fails on the fake weights)
        load_model(ModelSpec(source=str(merged), adapter=str(unrelated), device="cpu"))
    assert "already merged" not in str(exc.value)


@pytest.fixture
def lib(tmp_path):
    from tests.helpers.trainer_library import make_library

    return make_library(tmp_path / "lib")


def test_failed_runs_are_listed_and_removed(lib, tmp_path, isolated_env, capsys):
    from trainer.__main__ import main as repic_train

    largs = ["--library", str(lib)]
    # a run that fails after it created its folder: the base model is not there
    assert repic_train([*largs, "--base", str(tmp_path / "no-such-model"), "--name", "broken"]) == 1
    capsys.readouterr()
    with Library(lib) as l2:
        run = l2.data_dir / "adapters" / "broken"
        assert l2.adapters.all() == []
    assert (run / "run_config.json").is_file()
    (run / "notes.txt").write_text("the user's own file")  # never deleted

    assert repic_train(["adapters", *largs, "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["status"]) for r in rows] == [("broken", "failed")]
    assert "no-such-model" in rows[0]["reason"]
    assert repic_train(["adapters", *largs, "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("broken [failed]") and "--delete-files" in out

    assert repic_train(["adapters", *largs, "remove", "broken"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--delete-files" in err and "\n" not in err and (run / "run_config.json").exists()
    assert repic_train(["adapters", *largs, "remove", "broken", "--delete-files"]) == 0
    capsys.readouterr()
    assert not (run / "run_config.json").exists() and (run / "notes.txt").read_text() == "the user's own file"
    assert repic_train(["adapters", *largs, "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_a_killed_run_is_listed_as_incomplete(lib, isolated_env, capsys):
    from tests.helpers.trainer_library import fake_run
    from trainer.__main__ import main as repic_train

    with Library(lib) as l2:
        run = l2.data_dir / "adapters" / "killed"
    fake_run(run)  # checkpoints and run_config.json, no recorded end: the process was killed
    (run / "adapter" / "adapter_model.safetensors").unlink()
    assert repic_train(["adapters", "--library", str(lib), "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["status"], r["checkpoints"]) for r in rows] == [("killed", "incomplete", 1)]
    assert repic_train(["adapters", "--library", str(lib), "remove", "killed", "--delete-files"]) == 0
    assert not run.exists()

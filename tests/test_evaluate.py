"""RePIC's caption-level name precision/recall/F1 (reference/repic-method.md §4.1), quirk by quirk, the
name-aware variant, library mode and `repic eval`."""
from __future__ import annotations

import json

import pytest

from repic_desktop.captioning.evaluate import (
    EvalError, Sample, evaluate_file, evaluate_library, evaluate_samples, parse_database, parse_results,
    repic_tokens,
)
from repic_desktop.cli import main
from repic_desktop.core.library import Library
from tests.helpers.cli_run import run

REPIC_RULES = ("repic-single", "repic-2", "repic-4")


def score(rule, *rows, names=None):
    """rows: (gt keys, caption); returns the EvalResult."""
    return evaluate_samples([Sample(f"img{i}.jpg", list(g), c) for i, (g, c) in enumerate(rows)], rule,
                            names=names, details=True)


def hit(rule, key, caption, names=None):
    return score(rule, ([key], caption), names=names).correct == 1


# ---------------------------------------------------------------------------------------- tokenising

def test_tokens_strip_punctuation_at_the_ends_only_and_drop_end_of_sequence():
    toks = repic_tokens('Hi <Anya>, (bond)! "Mr.Krab" x</s>y - <<Bo>>', lower=False)
    assert toks == {"Hi", "<Anya>", "bond", "Mr.Krab", "xy", "<<Bo>>"}  # '-' alone is dropped, <> kept
    assert repic_tokens("<ANYA>.", lower=True) == {"<anya>"}


@pytest.mark.parametrize("rule", REPIC_RULES + ("name-aware",))
def test_trailing_punctuation_and_end_token_do_not_hide_a_tag(rule):
    assert hit(rule, "<Anya>", "Look, <Anya>, there.")
    assert hit(rule, "<Anya>", "(<Anya>)")
    assert hit(rule, "<Anya>", "with <Anya></s>")


@pytest.mark.parametrize("rule", REPIC_RULES)
def test_possessive_never_matches_under_repic_rules(rule):
    assert not hit(rule, "<Anya>", "<Anya>'s hat")
    assert not hit(rule, "<Anya>", "Anya's hat")
    assert hit("name-aware", "<Anya>", "<Anya>'s hat") and hit("name-aware", "<Anya>", "Anya\u2019s hat")


@pytest.mark.parametrize("rule", REPIC_RULES + ("name-aware",))
def test_bracketed_and_unbracketed_key_both_match_but_not_substrings(rule):
    assert hit(rule, "<Anya>", "<Anya> waves")
    assert hit(rule, "<Anya>", "Anya waves")
    assert hit(rule, "Plain", "Plain waves")  # a key without brackets matches itself
    assert not hit(rule, "<Anya>", "Anyas wave")
    assert not hit(rule, "<Anya>", "<Anya-chan> waves")


@pytest.mark.parametrize("rule", REPIC_RULES)
def test_database_name_is_never_used_by_repic_rules(rule):
    names = parse_database({"concept_dict": {"<ironman>": {"name": "Iron Man", "info": "", "image": "x.jpg"}}})
    assert not hit(rule, "<ironman>", "<Iron Man> flies", names=names)
    assert not hit(rule, "<ironman>", "Iron Man flies", names=names)


def test_name_aware_uses_the_database_display_name_when_given(tmp_path):
    assert not hit("name-aware", "<ironman>", "<Iron Man> flies")  # no database: key only
    db = {"concept_dict": {"<ironman>": {"name": "Iron Man"}, "<mr.krab>": {"name": "Mr.Krabs"}}}
    names = parse_database(db)
    assert hit("name-aware", "<ironman>", "<Iron Man> flies", names=names)
    assert hit("name-aware", "<ironman>", "iron man's suit", names=names)
    assert hit("name-aware", "<ironman>", "the ironman suit", names=names)  # the key still counts
    assert hit("name-aware", "<mr.krab>", "<Mr.Krabs> counts money.", names=names)
    assert not hit("name-aware", "<ironman>", "an iron pan and a man", names=names)  # contiguous only
    (tmp_path / "db.json").write_text(json.dumps(db))
    (tmp_path / "r.json").write_text(json.dumps([["q.jpg", ["<ironman>"], "<Iron Man> flies", "Q"]]))
    assert evaluate_file(tmp_path / "r.json", "name-aware", database=tmp_path / "db.json").recall == 1.0
    assert evaluate_file(tmp_path / "r.json", "repic-4", database=tmp_path / "db.json").recall == 0.0


@pytest.mark.parametrize("rule", REPIC_RULES)
def test_multi_word_key_can_never_match_under_repic_rules(rule):
    assert not hit(rule, "<black widow>", "<black widow> jumps")
    assert not hit(rule, "<black widow>", "black widow jumps")
    assert hit("name-aware", "<black widow>", "<Black Widow> jumps")
    assert hit("name-aware", "<black widow>", "<Black Widow>'s jump")


def test_case_sensitivity_per_rule():
    assert not hit("repic-2", "<Anya>", "<anya> waves")  # eval_multi_2_concept.py does not lower-case
    assert not hit("repic-2", "<anya>", "ANYA waves")
    for rule in ("repic-single", "repic-4", "name-aware"):
        assert hit(rule, "<Anya>", "<anya> waves") and hit(rule, "<anya>", "ANYA waves")


# ---------------------------------------------------------------------------------------- MISS / None / pool

@pytest.mark.parametrize("rule", REPIC_RULES + ("name-aware",))
def test_miss_when_another_pool_concept_is_named_and_it_counts_against_precision(rule):
    r = score(rule, (["<Anya>"], "<Bond> runs."), (["<Bond>"], "<Bond> runs."))
    assert [p["result"] for d in r.details for p in d["predictions"]] == ["miss", "correct"]
    assert (r.correct, r.predicted, r.gt, r.miss, r.none) == (1, 2, 2, 1, 0)
    assert r.precision == 0.5 and r.recall == 0.5


@pytest.mark.parametrize("rule", REPIC_RULES + ("name-aware",))
def test_none_when_no_pool_concept_is_named(rule):
    # <Zed> is not a GT key anywhere in the file, so naming it is not a MISS
    r = score(rule, (["<Anya>"], "A girl with <Zed>."), (["<Bond>"], "<Bond> runs."))
    assert [p["result"] for d in r.details for p in d["predictions"]] == ["none", "correct"]
    assert (r.correct, r.predicted, r.gt, r.miss, r.none) == (1, 1, 2, 0, 1)
    assert r.precision == 1.0 and r.recall == 0.5


@pytest.mark.parametrize("rule", REPIC_RULES + ("name-aware",))
def test_pool_is_the_union_of_gt_keys_across_the_file(rule):
    alone = score(rule, (["<Anya>"], "<Bond> runs."))
    assert (alone.miss, alone.none, alone.precision, alone.recall, alone.f1) == (0, 1, 0.0, 0.0, 0.0)
    with_bond = score(rule, (["<Anya>"], "<Bond> runs."), (["<Bond>"], "a dog."))
    assert with_bond.details[0]["predictions"][0]["result"] == "miss"


def test_a_present_gt_concept_still_gets_miss_for_its_absent_partner_only_via_non_gt():
    # GT <Anya>,<Bond>; caption names <Anya> only: <Bond> is None (Anya is GT, not a distractor)
    r = score("repic-2", (["<Anya>", "<Bond>"], "<Anya> waves."), (["<Loid>"], "x"))
    assert [p["result"] for p in r.details[0]["predictions"]] == ["correct", "none"]
    r = score("repic-2", (["<Anya>", "<Bond>"], "<Anya> and <Loid>."), (["<Loid>"], "x"))
    assert [p["result"] for p in r.details[0]["predictions"]] == ["correct", "miss"]


def test_repic_single_reads_only_the_first_gt_key_of_each_row():
    r = score("repic-single", (["<Anya>", "<Bond>"], "<Anya> only."))
    assert (r.gt, r.correct, r.recall) == (1, 1, 1.0)
    assert score("repic-4", (["<Anya>", "<Bond>"], "<Anya> only.")).recall == 0.5


HAND_FILE = [
    ["a.jpg", ["<Anya>", "<Bond>"], "<Anya> and <Bond> play.", "Q"],
    ["b.jpg", ["<Anya>", "<Loid>"], "<Anya> sits with <Bond>.", "Q"],
    ["c.jpg", ["<Loid>", "<Yor>"], "A couple walks.</s>", "Q"],
    ["d.jpg", ["<Yor>", "<Bond>"], "<yor> holds Bond's leash", "Q"],
]


@pytest.mark.parametrize("rule, counts, prf", [
    # a: 2 correct; b: Anya correct, Loid MISS (Bond named); c: 2 None; d: repic-2 <yor> != <Yor>, Bond's never
    ("repic-2", (3, 4, 8, 1, 4), (3 / 4, 3 / 8, 0.5)),
    # same but <yor> matches; Bond: only GT concepts present -> None
    ("repic-4", (4, 5, 8, 1, 3), (4 / 5, 4 / 8, 2 * 0.8 * 0.5 / 1.3)),
    # first key only: Anya, Anya, Loid (None), Yor
    ("repic-single", (3, 3, 4, 0, 1), (1.0, 3 / 4, 6 / 7)),
    # as repic-4, and d's Bond's counts too
    ("name-aware", (5, 6, 8, 1, 2), (5 / 6, 5 / 8, 5 / 7)),
])
def test_precision_recall_f1_on_a_small_file_computed_by_hand(tmp_path, rule, counts, prf):
    path = tmp_path / "results-2_concepts.json"
    path.write_text(json.dumps(HAND_FILE))
    r = evaluate_file(path, rule)
    assert (r.correct, r.predicted, r.gt, r.miss, r.none) == counts
    assert (r.precision, r.recall, r.f1) == pytest.approx(prf)
    assert r.samples == 4 and r.source == "results-2_concepts.json" and r.details is None
    d = r.as_dict()
    assert d["counts"]["gt"] == r.gt and d["precision"] == r.precision and d["rule"] == rule


# ---------------------------------------------------------------------------------------- input formats

def test_results_in_other_shapes_are_read():
    rows = parse_results({"a.jpg": [["<Anya>"], "<Anya> waves", "Q"]})
    assert rows == [Sample("a.jpg", ["<Anya>"], "<Anya> waves", "Q")]
    rows = parse_results({"a.jpg": {"gt": ["<Anya>"], "caption": "hi"}})
    assert rows[0].image == "a.jpg" and rows[0].gt == ["<Anya>"]
    rows = parse_results([{"image": "a.jpg", "concepts": "<Anya>", "caption": None}])
    assert rows == [Sample("a.jpg", ["<Anya>"], "")]


@pytest.mark.parametrize("data, message", [
    ({"a.jpg": ["<Anya>", "<Bond>"]}, "looks like a RePIC query file"),
    ({"a.jpg": [["<thor>", "<hulk>"], ["<thor>", "<hawkeye>"]]}, "looks like a RePIC query file"),
    ([], "contains no result rows"),
    ({"rows": 3}, "expected a row"),
    ([["a.jpg", ["<Anya>"]]], "row 1: expected a row [image_path, [gt keys], caption, question]"),
    ([["a.jpg", [1, 2], "cap"]], "row 1: the ground truth must be a list of concept keys"),
    ([["a.jpg", ["<A>"], 5]], "the caption must be text"),
    ("hello", "expected a JSON list of rows"),
])
def test_malformed_results_give_clear_errors(data, message):
    with pytest.raises(EvalError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_results(data, "r.json")


def test_unreadable_files_give_clear_errors(tmp_path):
    with pytest.raises(EvalError, match="does not exist"):
        evaluate_file(tmp_path / "nope.json", "repic-2")
    (tmp_path / "bad.json").write_text("[[\"a\", ")
    with pytest.raises(EvalError, match="is not valid JSON"):
        evaluate_file(tmp_path / "bad.json", "repic-2")
    (tmp_path / "ok.json").write_text(json.dumps(HAND_FILE))
    with pytest.raises(EvalError, match="unknown rule"):
        evaluate_file(tmp_path / "ok.json", "repic-3")
    with pytest.raises(EvalError, match="concept_dict"):
        parse_database(["<a>"])


# ---------------------------------------------------------------------------------------- library mode

def _photo(lib, tmp_path, name, concepts, captions):
    pid = lib.photos.add(str(tmp_path / name), size=1, mtime_ns=1, content_hash="h1", format="JPEG",
                         width=10, height=10)
    for c in concepts:
        lib.concepts.tag(pid, c)
    for text, status in captions:
        lib.captions.add(pid, text, status=status)
    return pid


@pytest.fixture
def album_lib(tmp_path):
    lib = Library(tmp_path / "lib.sqlite")
    for name in ("Anya", "Bond", "Grandma Rose", "Loid"):
        lib.concepts.add(name, "person")
    _photo(lib, tmp_path, "1.jpg", ["Anya", "Bond"], [("<Anya> and <Bond>'s ball with <Loid>.", "accepted")])
    _photo(lib, tmp_path, "2.jpg", ["Grandma Rose"], [("<Grandma Rose> knits.", "exported")])
    _photo(lib, tmp_path, "3.jpg", ["Anya"], [("<Anya>", "draft")])                        # draft: skipped
    _photo(lib, tmp_path, "4.jpg", ["Bond"], [("x", "accepted"), ("<Bond>", "draft")])     # current is a draft
    _photo(lib, tmp_path, "5.jpg", [], [("A sunset.", "accepted")])                        # no GT slots
    _photo(lib, tmp_path, "6.jpg", ["Bond"], [("<Anya> is here.", "accepted")])
    _photo(lib, tmp_path, "7.jpg", ["Anya"], [])                                           # no caption
    yield lib
    lib.close()


def test_library_mode_scores_accepted_and_exported_captions_only(album_lib):
    r = evaluate_library(album_lib, details=True)  # name-aware
    assert r.rule == "name-aware" and r.source == "library" and r.samples == 4
    assert sorted(d["image"].rsplit("/", 1)[1] for d in r.details) == ["1.jpg", "2.jpg", "5.jpg", "6.jpg"]
    # 1: Anya, Bond's correct (<Loid> is in no evaluated GT, so no MISS); 2: multi-word name correct;
    # 6: <Anya> is a pool concept not in the GT -> MISS
    assert (r.correct, r.predicted, r.gt, r.miss, r.none) == (3, 4, 4, 1, 0)
    assert (r.precision, r.recall) == (0.75, 0.75)
    r4 = evaluate_library(album_lib, "repic-4")
    # 1: Bond's -> None; 2: a multi-word name never matches -> None; 6: MISS
    assert (r4.correct, r4.predicted, r4.gt, r4.miss, r4.none) == (1, 2, 4, 1, 2)
    assert "photo_id" in r.details[0]


def test_library_mode_name_aware_accepts_an_imported_repic_key(tmp_path):
    with Library(tmp_path / "lib.sqlite") as lib:
        lib.concepts.add("Iron Man", "person", repic_key="<ironman>")
        _photo(lib, tmp_path, "1.jpg", ["Iron Man"], [("ironman waves", "accepted")])
        assert evaluate_library(lib).recall == 1.0
        assert evaluate_library(lib, "repic-4").recall == 0.0


# ---------------------------------------------------------------------------------------- CLI


def test_cli_json_over_results_files(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(HAND_FILE))
    code, out, err = run(capsys, "--library", str(tmp_path / "unused.sqlite"), "eval", str(path),
                         "--rule", "repic-2", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["rule"] == "repic-2" and len(data["results"]) == 1
    res = data["results"][0]
    assert res["source"] == "r.json" and res["precision"] == 0.75 and res["recall"] == 0.375
    assert res["counts"] == {"correct": 3, "predicted": 4, "gt": 8, "miss": 1, "none": 4, "samples": 4}
    assert not (tmp_path / "unused.sqlite").exists()  # results-file mode never opens the library
    code, out, _ = run(capsys, "eval", str(path), "--rule", "repic-2")
    assert code == 0 and "75.0   37.5   50.0" in out and "repic-2" in out


def test_cli_library_captions(tmp_path, album_lib, capsys):
    code, out, err = run(capsys, "--library", str(album_lib.path), "eval", "--json")
    assert code == 0, err
    res = json.loads(out)["results"][0]
    assert res["source"] == "library" and res["counts"]["correct"] == 3 and res["precision"] == 0.75
    code, out, err = run(capsys, "eval", "--library-captions", "--library", str(album_lib.path),
                         "--rule", "repic-4", "--details")
    assert code == 0, err
    assert "library" in out and "<Grandma Rose> none" in out


@pytest.mark.parametrize("content, message", [
    (None, "results file {p} does not exist"),
    ("{not json", "results file {p} is not valid JSON"),
    (json.dumps({"a.jpg": ["<Anya>"]}), "looks like a RePIC query file"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    code, out, err = run(capsys, "eval", str(path), "--json")
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("repic: error: ") and message.format(p=path) in lines[0]


def test_cli_library_errors(tmp_path, capsys):
    code, _, err = run(capsys, "--library", str(tmp_path / "none.sqlite"), "eval")
    assert code == 1 and "no library at" in err
    Library(tmp_path / "empty.sqlite").close()
    code, _, err = run(capsys, "--library", str(tmp_path / "empty.sqlite"), "eval")
    assert code == 1 and "no accepted captions" in err
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--rule", "repic-3"])
    assert exc.value.code == 2

"""RePIC's rewards on their documented edge cases (reference/repic-method.md §3.3), the opt-in fixes,
and the TRL wrappers."""
from __future__ import annotations

import math

import pytest

from trainer.rewards import (
    accuracy_reward,
    iou,
    parse_box,
    repic_iou,
    repic_reward,
    reward_funcs,
    yes_no,
    yes_no_name,
    yes_no_name_multi,
)


def pad(text: str, n: int = 100) -> str:
    return text + " " + "z" * max(0, n - len(text) - 1)


# ---- yes_no (OCT) ----------------------------------------------------------------------------------

@pytest.mark.parametrize("completion,solution,expected", [
    ("Yes.", "yes", 1.0),
    ("No, it is not.", "no", 1.0),
    ("yes", "no", 0.0),
    ("It is not there", "no", 1.0),           # "not" counts as "no" (substring)
    ("I don't know", "no", 1.0),              # "know"
    ("cannot tell", "no", 1.0),
    ("She has blue eyes", "yes", 1.0),        # "eyes" counts as "yes"
    ("maybe", "yes", 0.0),                    # no match at all
    ("no... well, yes", "yes", 0.0),          # the FIRST match decides
    ("YES", "Yes", 1.0),                      # lower-cased
])
def test_yes_no_repic(completion, solution, expected):
    assert yes_no(completion, solution) == expected
    assert repic_reward(completion, solution, "yes_no") == expected


def test_yes_no_word_boundary_fix():
    assert yes_no("It is not there", "no", word_boundary=True) == 0.0
    assert yes_no("She has blue eyes", "yes", word_boundary=True) == 0.0
    assert yes_no("No, it is not.", "no", word_boundary=True) == 1.0
    assert repic_reward("I don't know", "no", "yes_no", fixes=["word_boundary"]) == 0.0


# ---- yes_no_name (ICT single) ----------------------------------------------------------------------

def test_yes_no_name_length_rule():
    short = "<Bo> plays in the garden."
    assert yes_no_name(short, "<Bo>") == 0.0                   # < 100 characters
    exactly = pad("<Bo> plays in the garden.", 100)
    assert len(exactly) == 100 and yes_no_name(exactly, "<Bo>") == 1.0
    assert yes_no_name(exactly[:99], "<Bo>") == 0.0            # 99 characters


def test_yes_no_name_exact_and_case_sensitive():
    assert yes_no_name(pad("<bo> plays"), "<Bo>") == 0.0
    assert yes_no_name(pad("Bo plays"), "<Bo>") == 0.0
    assert yes_no_name(pad("<Bo>'s ball"), "<Bo>") == 1.0      # substring: a possessive still counts


def test_yes_no_name_closing_tag_hack():
    assert yes_no_name(pad("<Bo> plays with </Bo>"), "<Bo>") == 0.0
    # only the closing form of the solution is checked
    assert yes_no_name(pad("<Bo> plays with </Al>"), "<Bo>") == 1.0


# ---- yes_no_name_multi (ICT multi) ------------------------------------------------------------------

def test_yes_no_name_multi_partial_credit():
    sol = ["<Anya>", "<Bond>", "<Cleo>", "<Dora>"]
    assert yes_no_name_multi(pad("<Anya> and <Bond> on the sofa"), sol) == 0.5
    assert yes_no_name_multi(pad("<Anya>, <Bond>, <Cleo> and <Dora>"), sol) == 1.0
    assert yes_no_name_multi(pad("nobody"), sol) == 0.0
    assert yes_no_name_multi("<Anya> and <Bond>", sol) == 0.0          # too short
    assert yes_no_name_multi(pad("<Anya> </Anya> <Bond>"), sol[:2]) == 1.0  # no closing-tag check here
    assert yes_no_name_multi(pad("<Anya>"), []) == 0.0                 # empty solution
    assert repic_reward(pad("<Anya> and <Bond>"), sol[:2], "yes_no_name_multi") == 1.0


# ---- iou (VLT) ----------------------------------------------------------------------------------------

def test_repic_iou_arithmetic():
    # identical 10x10 boxes: intersection counts inclusive pixels [0, 9] -> 10*10 = 100; areas 100 each;
    # union 100 + 100 - 100 = 100 -> 1.0
    assert repic_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    # half overlap in x: inter x in [5, 9] -> 5 px (+1 rule) * 10 = 50; union 100 + 100 - 50 = 150
    assert math.isclose(repic_iou([0, 0, 10, 10], [5, 0, 15, 10]), 50 / 150)
    # touching boxes: inter_x1 = 10 > inter_x2 = 9 -> 0
    assert repic_iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0
    # one-pixel overlap: inter_x1 = 9 == inter_x2 = 9 fails the strict test -> 0 (RePIC's quirk)
    assert repic_iou([0, 0, 10, 10], [9, 0, 19, 10]) == 0.0
    # two-pixel overlap: [8, 9] -> 2 px * 10 = 20; union 180
    assert math.isclose(repic_iou([0, 0, 10, 10], [8, 0, 18, 10]), 20 / 180)
    # degenerate zero-area boxes: union floored at 1
    assert repic_iou([5, 5, 5, 5], [5, 5, 5, 5]) == 0.0


def test_iou_reward_threshold_and_parsing():
    sol = [0, 0, 10, 10]
    assert iou('{"bbox_2d": [0, 0, 10, 10]}', sol) == 1.0
    assert iou("[2,0,10,10]", sol) == 1.0       # 8*10 / (100 + 80 - 80) = 0.8
    assert iou("[5, 0, 15, 10]", sol) == 0.0    # 0.33 < 0.5
    assert iou("[0, 0, 10, 10] then [50, 50, 60, 60]", sol) == 1.0  # the first box counts
    assert iou("[50, 50, 60, 60] then [0, 0, 10, 10]", sol) == 0.0
    assert iou("[0.0, 0.0, 10.0, 10.0]", sol) == 0.0      # decimals do not parse in RePIC
    assert iou("[-1, 0, 10, 10]", sol) == 0.0             # negatives neither
    assert iou("no box here", sol) == 0.0
    assert repic_reward("[0.5, 0.0, 10.2, 10.0]", sol, "iou", fixes=["decimal_boxes"]) == 1.0
    assert parse_box("[1.5, 2, 3, 4.25]", decimals=True) == [1.5, 2.0, 3.0, 4.25]


def test_unknown_method_and_bad_fix():
    assert repic_reward("yes", "yes", "format") == 0.0
    with pytest.raises(ValueError, match="unknown reward fix"):
        repic_reward("yes", "yes", "yes_no", fixes=["nope"])


# ---- TRL wrappers ---------------------------------------------------------------------------------

def test_trl_signature_and_dispatch():
    comps = [[{"role": "assistant", "content": "Yes."}],
             [{"role": "assistant", "content": pad("<Bo> runs")}],
             [{"role": "assistant", "content": "[0, 0, 10, 10]"}],
             [{"role": "assistant", "content": pad("<A> only")}]]
    kwargs = dict(prompts=[None] * 4, completions=comps, completion_ids=[[1]] * 4,
                  solution=["yes", "<Bo>", [0, 0, 10, 10], ["<A>", "<B>"]],
                  accu_reward_method=["yes_no", "yes_no_name", "iou", "yes_no_name_multi"], task=["x"] * 4)
    ict, oct_, vlt = reward_funcs()
    assert [f.__name__ for f in (ict, oct_, vlt)] == ["ict", "oct", "vlt"]
    assert ict(**kwargs) == [None, 1.0, None, 0.5]
    assert oct_(**kwargs) == [1.0, None, None, None]
    assert vlt(**kwargs) == [None, None, 1.0, None]
    assert accuracy_reward()(**kwargs) == [1.0, 1.0, 1.0, 0.5]
    # RePIC defaults a missing method to iou
    assert accuracy_reward()(completions=["[0, 0, 10, 10]"], solution=[[0, 0, 10, 10]]) == [1.0]

"""RePIC's rule-based rewards, with their exact behaviour as the default.

Source: RePIC `grpo_multitask_multi_img_no_format.py:236-418` (digest: reference/repic-method.md §3.3).
Every reward is in [0, 1]; there is no format reward. A sample's `accu_reward_method` picks the rule:

* ``yes_no`` (OCT): the first ``(yes|no)`` match in the lower-cased solution and completion must agree.
  It is a substring search, so "not", "know" and "cannot" count as "no" and "eyes" as "yes". Kept as is
  by default because it is what RePIC trained with; ``fixes=("word_boundary",)`` matches whole words.
* ``yes_no_name`` (ICT single): 0 under 100 characters; 1 when the exact, case-sensitive tag (``<Bo>``)
  is in the completion and its closing form (``</Bo>``) is not (RePIC's anti-hacking check), else 0.
* ``yes_no_name_multi`` (ICT multi): 0 under 100 characters or with no tags; else the fraction of tags
  present (partial credit, no closing-tag check).
* ``iou`` (VLT): the first ``[x1, y1, x2, y2]`` of non-negative integers; 1 when RePIC's IoU >= 0.5.
  Decimal or negative numbers do not parse (reward 0); ``fixes=("decimal_boxes",)`` accepts decimals.

Unknown methods score 0, like RePIC. The functions here take plain strings; `reward_funcs()` wraps them
in TRL's signature ``f(prompts, completions, completion_ids, **columns)``, one function per task, each
returning None for samples of the other tasks so TRL logs a mean per task (``rewards/ict/mean``...).
No torch import: the GUI and tests use this without loading a model.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Sequence

MIN_CONTENT_LEN = 100  # RePIC's MIN_CONTENT_LEN, in characters
IOU_THRESHOLD = 0.5
METHODS = ("yes_no", "yes_no_name", "yes_no_name_multi", "iou")
TASK_OF_METHOD = {"yes_no": "oct", "yes_no_name": "ict", "yes_no_name_multi": "ict", "iou": "vlt"}
FIXES = ("word_boundary", "decimal_boxes")

_YES_NO = re.compile(r"(yes|no)")
_YES_NO_WORD = re.compile(r"\b(yes|no)\b")
_BOX_INT = re.compile(r"\[(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\]")
_NUM = r"(\d+(?:\.\d+)?)"
_BOX_DEC = re.compile(r"\[\s*" + r"\s*,\s*".join([_NUM] * 4) + r"\s*\]")


def _check_fixes(fixes: Iterable[str]) -> frozenset[str]:
    fixes = frozenset(fixes)
    unknown = fixes - set(FIXES)
    if unknown:
        raise ValueError(f"unknown reward fix(es) {sorted(unknown)}; choose from {', '.join(FIXES)}")
    return fixes


def yes_no(completion: str, solution: str, *, word_boundary: bool = False) -> float:
    pattern = _YES_NO_WORD if word_boundary else _YES_NO
    sol = pattern.search(str(solution).lower())
    ans = pattern.search(completion.lower())
    return 1.0 if sol and ans and sol.group(1) == ans.group(1) else 0.0


def yes_no_name(completion: str, solution: str, *, min_len: int = MIN_CONTENT_LEN) -> float:
    if len(completion) < min_len:
        return 0.0
    sol = str(solution)
    found = sol in completion
    hacked = sol.startswith("<") and sol.replace("<", "</") in completion
    return 1.0 if found and not hacked else 0.0


def yes_no_name_multi(completion: str, solution: Sequence[str], *, min_len: int = MIN_CONTENT_LEN) -> float:
    if len(completion) < min_len or not solution:
        return 0.0
    return sum(1 for s in solution if str(s) in completion) / len(solution)


def repic_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """RePIC's IoU arithmetic, quirks included: the intersection counts inclusive pixels of
    ``[max(x1), min(x2 - 1)]`` (so ``+1``) but only when the strict ``inter_x1 < inter_x2`` holds; the
    areas are ``(x2 - x1) * (y2 - y1)`` without ``+1``; the union is at least 1."""
    ix1, iy1 = max(a[0], b[0]), max(a[1], b[1])
    ix2, iy2 = min(a[2] - 1, b[2] - 1), min(a[3] - 1, b[3] - 1)
    inter = 0.0
    if ix1 < ix2 and iy1 < iy2:
        inter = (ix2 - ix1 + 1) * (iy2 - iy1 + 1)
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    union = max(1, area_a + area_b - inter)
    return float(inter) / union


def parse_box(completion: str, *, decimals: bool = False) -> list[float] | None:
    m = (_BOX_DEC if decimals else _BOX_INT).search(completion)
    if not m:
        return None
    return [float(v) if decimals else int(v) for v in m.groups()]


def iou(completion: str, solution: Sequence[float], *, decimals: bool = False,
        threshold: float = IOU_THRESHOLD) -> float:
    box = parse_box(completion, decimals=decimals)
    if box is None or solution is None or len(solution) != 4:
        return 0.0
    return 1.0 if repic_iou(box, list(solution)) >= threshold else 0.0


def repic_reward(completion: str, solution: Any, method: str, *, fixes: Iterable[str] = ()) -> float:
    """The reward RePIC gives `completion` for a sample with this `solution` and `accu_reward_method`."""
    fixes = _check_fixes(fixes)
    if method == "yes_no":
        return yes_no(completion, solution, word_boundary="word_boundary" in fixes)
    if method == "yes_no_name":
        return yes_no_name(completion, solution)
    if method == "yes_no_name_multi":
        return yes_no_name_multi(completion, solution)
    if method == "iou":
        return iou(completion, solution, decimals="decimal_boxes" in fixes)
    return 0.0


def completion_text(completion: Any) -> str:
    """TRL hands conversational completions as ``[{"role": "assistant", "content": str}]``."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        content = completion[-1].get("content", "") if isinstance(completion[-1], dict) else completion[-1]
        if isinstance(content, list):  # structured blocks
            return "".join(b.get("text", "") for b in content if isinstance(b, dict))
        return str(content)
    return ""


def _rows(completions: Sequence[Any], solution: Sequence[Any], accu_reward_method: Sequence[str] | None):
    methods = accu_reward_method if accu_reward_method is not None else ["iou"] * len(completions)  # RePIC's default
    return zip(completions, solution, methods)


def accuracy_reward(*, fixes: Iterable[str] = ()) -> Callable[..., list[float]]:
    """RePIC's single registered reward ("accuracy"), in TRL's signature."""
    fixes = _check_fixes(fixes)

    def accuracy(prompts=None, completions=(), completion_ids=None, solution=(), accu_reward_method=None,
                 **_: Any) -> list[float]:
        return [repic_reward(completion_text(c), s, m, fixes=fixes)
                for c, s, m in _rows(completions, solution, accu_reward_method)]
    return accuracy


def reward_funcs(*, fixes: Iterable[str] = ()) -> list[Callable[..., list[float | None]]]:
    """Three TRL reward functions named ``ict``, ``oct``, ``vlt``. Each scores only its task's samples
    (None for the rest), so TRL's nan-aware sum gives exactly RePIC's single dispatched reward while
    logging a mean per task."""
    fixes = _check_fixes(fixes)

    def make(task: str):
        def fn(prompts=None, completions=(), completion_ids=None, solution=(), accu_reward_method=None,
               **_: Any) -> list[float | None]:
            return [repic_reward(completion_text(c), s, m, fixes=fixes) if TASK_OF_METHOD.get(m) == task else None
                    for c, s, m in _rows(completions, solution, accu_reward_method)]
        fn.__name__ = fn.__qualname__ = task
        return fn
    return [make("ict"), make("oct"), make("vlt")]

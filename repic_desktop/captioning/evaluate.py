"""Caption-level name precision / recall / F1: RePIC's metric, exactly, plus a name-aware variant.

RePIC (`evaluation/eval_single_concept.py`, `eval_multi_2_concept.py`, `eval_multi_4_concept.py`;
digest in reference/repic-method.md §4.1) scores a results file of rows
`[image_path, [gt keys], caption, question]` like this:

1. tokens = caption with `</s>` removed, split on whitespace, each token stripped of `.,!?;:()[]{}"'-`
   at its ends only (`<` and `>` are kept); empty tokens dropped; a *set*.
2. pool = the union of the ground-truth keys of every row of the file.
3. a pool concept is *present* if its key (`<anya>`) or its unbracketed key (`anya`) equals a token.
   Only keys are looked at, never the database's display name.
4. per GT concept of a row: the concept if present; else "MISS" if a pool concept that is not in this
   row's GT is present; else None.
5. precision = correct / #(prediction is not None)  (MISS counts against precision),
   recall = correct / #GT slots, F1 = harmonic mean; each is 0 when its denominator is 0.

The three scripts differ only in case handling and which GT keys they read:
- `repic-single`: caption and keys lower-cased (case-insensitive); reads only the FIRST GT key of
  each row (`row[1][0]`), so the pool and the scoring see one concept per row.
- `repic-2`: CASE-SENSITIVE (`<anya>` does not match `<Anya>`).
- `repic-4`: case-insensitive.
Consequences kept on purpose: possessives (`<Anya>'s`) never match, multi-word keys
(`<black widow>`) can never match (tokens never contain spaces), `<Iron Man>` never matches the key
`<ironman>`.

`name-aware` keeps steps 2, 4 and 5 (same pool, same MISS / None logic, same arithmetic) and changes
what "present" means:
- the caption is case-folded (case-insensitive);
- tokens are kept in order (a list, not a set) and stripped at their ends of the RePIC punctuation
  set plus `<`, `>` and typographic quotes `‘’“”`; then a trailing possessive `'s` / `’s` is dropped
  and the ends stripped again (`<Anya>'s,` -> `anya`, `<Iron Man>'s` -> `iron`, `man`);
- a concept is present if any of its phrases, tokenised the same way, occurs as a contiguous run of
  caption tokens. Its phrases are the unbracketed key and, when a `database.json` is given, the
  database display `name` of that key (library mode: the concept's name and, if it was imported from a
  RePIC database, its original RePIC key). So `<Iron Man>` and `Iron Man` match key `<ironman>` with
  name "Iron Man", `<black widow>` matches key `<black widow>`, `<Mr.Krabs>` matches name "Mr.Krabs";
- concepts are identified by their case-folded unbracketed key (so `<Anya>` and `<anya>` are one).
It still never matches a bare substring (`anyas`, `bonding`) or a name that is not in the database.

No torch or Qt here: the CLI (`repic eval`), the GUI and tests use this module directly.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence
from ..core.errors import RepicError

RULES = ("repic-single", "repic-2", "repic-4", "name-aware")
RULE_HELP = {
    "repic-single": "RePIC eval_single_concept.py: keys only, case-insensitive, first GT key per row",
    "repic-2": "RePIC eval_multi_2_concept.py: keys only, CASE-SENSITIVE",
    "repic-4": "RePIC eval_multi_4_concept.py: keys only, case-insensitive",
    "name-aware": "keys and display names, multi-word, possessives, case-insensitive",
}
PUNCT_STRIP = '.,!?;:()[]{}"\'-'          # RePIC's set, verbatim
_NA_STRIP = PUNCT_STRIP + "<>\u2018\u2019\u201c\u201d"
_POSSESSIVES = ("'s", "\u2019s")
MISS = "MISS"                              # RePIC's sentinel prediction, compared as a string like RePIC does


class EvalError(RepicError, ValueError):
    """Unreadable or malformed input (results file, database); the message is shown to the user as is."""


@dataclass(frozen=True)
class Sample:
    image: str
    gt: list[str]
    caption: str
    question: str | None = None
    photo_id: int | None = None


@dataclass
class EvalResult:
    rule: str
    source: str
    precision: float
    recall: float
    f1: float
    correct: int
    predicted: int        # GT slots whose prediction is not None (correct + MISS)
    gt: int               # GT slots
    miss: int
    none: int
    samples: int
    details: list[dict[str, Any]] | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        d = {"source": self.source, "rule": self.rule, "precision": self.precision, "recall": self.recall,
             "f1": self.f1, "counts": {"correct": self.correct, "predicted": self.predicted, "gt": self.gt,
                                       "miss": self.miss, "none": self.none, "samples": self.samples}}
        if self.details is not None:
            d["details"] = self.details
        return d


# ------------------------------------------------------------------------------------------- tokenising

def strip_brackets(token: str) -> str:
    """`<Anya>` -> `Anya`; anything not both starting with `<` and ending with `>` is returned as is."""
    return token[1:-1] if token.startswith("<") and token.endswith(">") else token


def repic_tokens(caption: str, *, lower: bool) -> set[str]:
    caption = caption.replace("</s>", "")
    if lower:
        caption = caption.lower()
    return {w.strip(PUNCT_STRIP) for w in caption.split() if w.strip(PUNCT_STRIP)}


def name_aware_tokens(text: str) -> list[str]:
    out = []
    for w in text.replace("</s>", "").casefold().split():
        w = w.strip(_NA_STRIP)
        for p in _POSSESSIVES:
            if w.endswith(p):
                w = w[: -len(p)].strip(_NA_STRIP)
                break
        if w:
            out.append(w)
    return out


def _contains_run(tokens: Sequence[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    if n == 0:
        return False
    first = phrase[0]
    return any(tokens[i] == first and tuple(tokens[i:i + n]) == tuple(phrase) for i in range(len(tokens) - n + 1))


def _na_ident(key: str) -> str:
    return strip_brackets(key.strip()).casefold()


# ------------------------------------------------------------------------------------------- matching

def predict(caption: str, gt: Sequence[str], pool: Sequence[str], rule: str,
            names: Mapping[str, Sequence[str]] | None = None) -> tuple[list[str | None], list[str]]:
    """Predictions aligned with `gt` (the normalised concept, "MISS" or None) and the targets they are
    scored against (a prediction is correct when it equals its target and is not "MISS").
    `names` (name-aware only): key -> extra phrases (display names) for that concept."""
    if rule == "repic-2":
        tokens = repic_tokens(caption, lower=False)
        present = {strip_brackets(c) for c in pool if c in tokens or strip_brackets(c) in tokens}
        non_gt = {strip_brackets(c) for c in pool if c not in gt}
        targets = [strip_brackets(g) for g in gt]
    elif rule in ("repic-single", "repic-4"):
        tokens = repic_tokens(caption, lower=True)
        present = {strip_brackets(c.lower()) for c in pool
                   if c.lower() in tokens or strip_brackets(c.lower()) in tokens}
        # eval_single excludes pool keys equal to the GT after lowering, eval_multi_4 those listed in the
        # GT verbatim; the extra keys that excludes are the GT's own, present only if the GT itself is,
        # so both give the same predictions.
        non_gt = {strip_brackets(c.lower()) for c in pool if c not in gt}
        targets = [strip_brackets(g).lower() for g in gt]
    elif rule == "name-aware":
        tokens_l = name_aware_tokens(caption)
        present = set()
        for c in pool:
            phrases = [strip_brackets(c.strip())] + list(_names_for(names, c))
            if any(_contains_run(tokens_l, name_aware_tokens(p)) for p in phrases):
                present.add(_na_ident(c))
        gt_ids = {_na_ident(g) for g in gt}
        non_gt = {_na_ident(c) for c in pool if _na_ident(c) not in gt_ids}
        targets = [_na_ident(g) for g in gt]
    else:
        raise EvalError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    preds: list[str | None] = []
    for t in targets:
        if t in present:
            preds.append(t)
        elif present & non_gt:
            preds.append(MISS)
        else:
            preds.append(None)
    return preds, targets


def _names_for(names: Mapping[str, Sequence[str]] | None, key: str) -> Sequence[str]:
    if not names:
        return ()
    if key in names:
        return names[key]
    return names.get(_na_ident(key), ())


def evaluate_samples(samples: Sequence[Sample], rule: str = "name-aware", *,
                     names: Mapping[str, Sequence[str]] | None = None, details: bool = False,
                     source: str = "") -> EvalResult:
    """Score `samples` as one results file: the pool is the union of their GT keys."""
    if rule not in RULES:
        raise EvalError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    # eval_single_concept.py reads row[1][0] only: one GT concept per row.
    gts = [list(s.gt[:1]) if rule == "repic-single" else list(s.gt) for s in samples]
    pool = sorted({c for g in gts for c in g})
    if rule == "name-aware" and names:
        # database keys are matched case-insensitively too (a results file may write <Anya> for <anya>)
        names = {**{_na_ident(k): v for k, v in names.items()}, **names}
    correct = predicted = n_gt = miss = none = 0
    rows = [] if details else None
    for s, gt in zip(samples, gts):
        preds, targets = predict(s.caption, gt, pool, rule, names if rule == "name-aware" else None)
        per = []
        for g, p, t in zip(gt, preds, targets):
            ok = p is not None and p != MISS and p == t
            correct += ok
            predicted += p is not None
            miss += p == MISS
            none += p is None
            per.append({"concept": g, "result": "correct" if ok else "none" if p is None else "miss"})
        n_gt += len(gt)
        if rows is not None:
            row = {"image": s.image, "gt": gt, "caption": s.caption, "predictions": per}
            if s.photo_id is not None:
                row["photo_id"] = s.photo_id
            rows.append(row)
    precision = correct / predicted if predicted else 0.0
    recall = correct / n_gt if n_gt else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return EvalResult(rule, source, precision, recall, f1, correct, predicted, n_gt, miss, none, len(samples), rows)


# ------------------------------------------------------------------------------------------- input files

def _read_json(path: str | os.PathLike, what: str) -> Any:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8-sig"))
    except FileNotFoundError:
        raise EvalError(f"{what} {os.fspath(path)} does not exist") from None
    except IsADirectoryError:
        raise EvalError(f"{what} {os.fspath(path)} is a folder, not a JSON file") from None
    except OSError as exc:
        raise EvalError(f"cannot read {what} {os.fspath(path)}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvalError(f"{what} {os.fspath(path)} is not valid JSON: {exc}") from None


_ROW_FORMAT = "[image_path, [gt keys], caption, question]"
_IMAGE_KEYS = ("image", "image_path", "path", "query")
_GT_KEYS = ("gt", "concepts", "gt_concepts", "labels", "names")
_CAPTION_KEYS = ("caption", "answer", "output", "prediction", "text")


def _gt_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise EvalError(f"{where}: the ground truth must be a list of concept keys like [\"<Anya>\"], "
                    f"not {json.dumps(value, ensure_ascii=False)[:80]}")


def _caption(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise EvalError(f"{where}: the caption must be text, not {json.dumps(value, ensure_ascii=False)[:80]}")
    return value


def _first(d: Mapping, keys: Iterable[str]) -> Any:
    for k in keys:
        if k in d:
            return d[k]
    return None


def _row_sample(row: Any, where: str, image: str | None = None) -> Sample:
    """A row `[image, gt, caption, question...]` (or `[gt, caption, ...]` under an image key) or a dict
    with image / gt / caption fields."""
    if isinstance(row, Mapping):
        img = image if image is not None else _first(row, _IMAGE_KEYS)
        gt, cap = _first(row, _GT_KEYS), _first(row, _CAPTION_KEYS)
        if gt is None or (cap is None and not any(k in row for k in _CAPTION_KEYS)):
            raise EvalError(f"{where}: expected fields gt (or concepts) and caption, found "
                            f"{', '.join(map(str, row)) or 'none'}")
        q = row.get("question")
        return Sample(str(img or ""), _gt_list(gt, where), _caption(cap, where), q if isinstance(q, str) else None)
    if isinstance(row, (list, tuple)):
        if image is not None and row and (all(isinstance(v, list) for v in row) or all(
                isinstance(v, str) and v.startswith("<") and v.endswith(">") for v in row)):
            raise EvalError(f"{where}: this looks like a RePIC query file (image -> ground-truth keys) with "
                            f"no captions; evaluate the results file the captioning run wrote")
        items = list(row) if image is None else [image, *row]
        if len(items) < 3 or not isinstance(items[0], str):
            raise EvalError(f"{where}: expected a row {_ROW_FORMAT}, got "
                            f"{json.dumps(row, ensure_ascii=False)[:80]}")
        q = items[3] if len(items) > 3 and isinstance(items[3], str) else None
        return Sample(items[0], _gt_list(items[1], where), _caption(items[2], where), q)
    raise EvalError(f"{where}: expected a row {_ROW_FORMAT}, got {json.dumps(row, ensure_ascii=False)[:80]}")


def parse_results(data: Any, source: str = "results") -> list[Sample]:
    """RePIC results: a JSON list of rows `[image_path, [gt keys], caption, question]` (what the RePIC
    scripts write and read). Also read: rows as objects {image, gt|concepts, caption}, and an object
    keyed by image path whose values are `[[gt keys], caption, ...]` or {gt, caption}."""
    if isinstance(data, Mapping):
        entries = [(f"{source}: entry {k!r}", v, str(k)) for k, v in data.items()]
    elif isinstance(data, list):
        entries = [(f"{source}: row {i + 1}", v, None) for i, v in enumerate(data)]
    else:
        raise EvalError(f"{source}: expected a JSON list of rows {_ROW_FORMAT}, "
                        f"got a JSON {type(data).__name__}")
    if not entries:
        raise EvalError(f"{source} contains no result rows")
    return [_row_sample(v, where, image) for where, v, image in entries]


def load_results(path: str | os.PathLike) -> list[Sample]:
    return parse_results(_read_json(path, "results file"), os.fspath(path))


def parse_database(data: Any, source: str = "database") -> dict[str, list[str]]:
    """key -> [display name] from a RePIC/RAP database.json ({"concept_dict": {"<ironman>": {"name":
    "Iron Man", ...}}}); a bare {key: {"name": ...}} or {key: "name"} mapping is read too."""
    cd = data.get("concept_dict", data) if isinstance(data, Mapping) else None
    if not isinstance(cd, Mapping):
        raise EvalError(f"{source}: expected a RePIC database.json with a \"concept_dict\" object")
    out: dict[str, list[str]] = {}
    for key, entry in cd.items():
        name = entry.get("name") if isinstance(entry, Mapping) else entry
        if not isinstance(name, str):
            raise EvalError(f"{source}: concept {key!r} has no \"name\" text")
        out[str(key)] = [name]
    return out


def load_database(path: str | os.PathLike) -> dict[str, list[str]]:
    return parse_database(_read_json(path, "database"), os.fspath(path))


def evaluate_file(path: str | os.PathLike, rule: str = "name-aware", *,
                  database: str | os.PathLike | Mapping[str, Sequence[str]] | None = None,
                  details: bool = False) -> EvalResult:
    """One results file, scored like RePIC scores it (pool = this file's GT keys). `database` (a path or
    parse_database's mapping) is used by the name-aware rule only; the RePIC rules never read names."""
    if rule not in RULES:
        raise EvalError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    names = load_database(database) if isinstance(database, (str, os.PathLike)) else database
    return evaluate_samples(load_results(path), rule, names=names, details=details,
                            source=os.path.basename(os.fspath(path)))


# ------------------------------------------------------------------------------------------- library

def library_samples(library) -> tuple[list[Sample], dict[str, list[str]]]:
    """The library's reviewed captions as samples: every photo whose current caption is accepted or
    exported (drafts are not ground truth for anything); GT = the photo's concepts as `<Name>` keys.
    Also returns key -> extra phrases (a concept imported from a RePIC database keeps its RePIC key)."""
    samples, names = [], {}
    for photo in library.photos.list(include_missing=True):
        cap = library.captions.current(photo.id)
        if cap is None or cap.status not in ("accepted", "exported"):
            continue
        concepts = library.concepts.of_photo(photo.id)
        for c in concepts:
            if c.repic_key:
                names[f"<{c.name}>"] = [strip_brackets(c.repic_key)]
        samples.append(Sample(photo.path, [f"<{c.name}>" for c in concepts], cap.text, photo_id=photo.id))
    return samples, names


def evaluate_library(library, rule: str = "name-aware", *, details: bool = False) -> EvalResult:
    """The same metric over the library's own accepted/exported captions; the pool is every concept
    tagged on an evaluated photo (photos with no concepts count as samples with no GT slots)."""
    samples, names = library_samples(library)
    return evaluate_samples(samples, rule, names=names, details=details, source="library")

"""A library -> RePIC's three GRPO tasks (ICT, OCT, VLT), balanced, with a held-out split by photo.

RePIC trains on three rule-rewarded tasks (reference/repic-method.md §3.2): ICT, a personalized caption
that must name the given concept(s); OCT, "is this concept in the query photo?" yes/no; VLT, the box of
the concept. Here they come from the user's own library:

* **Known concepts of a photo**: confirmed tags (``photo_concepts`` with source manual/import; detector
  or model suggestions are not ground truth) plus the tags of an accepted/exported current caption.
* **Reference photos are never queries**: a query identical to its reference teaches copying, not
  recognition, so photos used as a reference (of any concept, so that a concept's count does not depend
  on which others are trained with it) are left out of every task. Which photos remain, and their count
  per concept, is `core.training_photos`: the People page, Personalize and `repic concept list|show`
  show that same count, and the summary's ``photos`` repeats it.
* **Prompts are the inference prompts**: every sample is a `captioning.prompt.CaptionPrompt` (RePIC's
  system prompt, reference images interleaved with ``"1. Name: <Anya>, Info: ..."``, then the query and
  ``"This is the query image. <request>"``), so what the model is trained on is exactly what the app asks
  at caption time. RePIC itself trained on a different layout (images first, no system prompt, §5.10)
  and evaluated on this one; training on the inference layout removes that gap.
  ICT requests cycle through RePIC's four evaluation requests. OCT and VLT put their question in the
  request with RePIC's suffixes (" The final answer must be either 'yes' or 'no' with no additional
  output.", " For bounding box coordinates, return the final answer in JSON format.").
* **VLT keeps the reference image** (RePIC's VLT is single-image, where the object is named by class):
  a user's <Bruno> cannot be located from a name alone.
* **Boxes in the model's frame**: Qwen2.5-VL answers in absolute pixels of the image it was shown and
  RePIC does not rescale (§3.3), so the solution box is the region (displayed-pixel frame of the oriented
  photo) scaled to the size after both resizes the image goes through: qwen_vl_utils' rounding to 28 px
  (`prompt.fetch_image`) and the processor's smart_resize to the pixel limits.
* **Held-out split by photo**, seeded: each concept with enough photos gets at least one held-out photo;
  held-out photos appear in no training sample (neither as query nor as an OCT negative).
* **Balance**: per concept and task at most ``balance_factor`` x the rarest concept's count (and
  ``max_per_cell``), OCT negatives as many as positives, then a seeded shuffle.

No torch import at module level: the GUI's wizard imports this to show the summary.
"""
from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from repic_desktop.captioning.prompt import (
    DEFAULT_REQUEST,
    FETCH_MAX_PIXELS,
    FETCH_MIN_PIXELS,
    IMAGE_FACTOR,
    MAX_PIXELS,
    MIN_PIXELS,
    REQUEST_PRESETS,
    CaptionPrompt,
    ImageRef,
    PromptConcept,
    smart_resize,
)
from repic_desktop.core.concepts import reference_path
from repic_desktop.core.library import CONFIRMED_SOURCES
# one rule for which photos are training photos, shared with the lists that count them
from repic_desktop.core.training_photos import known_concepts, training_photos  # noqa: F401 (re-exported)
from repic_desktop.core.errors import RepicError

TASKS = ("ict", "oct", "vlt")
MIN_PHOTOS = 3
OCT_SUFFIX = " The final answer must be either 'yes' or 'no' with no additional output."
VLT_SUFFIX = " For bounding box coordinates, return the final answer in JSON format."
# caption_eval_single.py's four requests (the cycle behind RePIC's committed outputs)
ICT_REQUESTS = tuple(REQUEST_PRESETS[k] for k in ("personalized", "caption", "personalized-photo", "provide"))


class DatasetError(RepicError, ValueError):
    """The library has too little data to train on; the message says what to add."""


@dataclass
class TrainSample:
    task: str                  # ict | oct | vlt
    method: str                # RePIC's accu_reward_method
    photo_id: int              # the query photo
    concepts: tuple[str, ...]  # names the sample counts for
    prompt: CaptionPrompt
    solution: Any              # "<Name>" | ["<A>", "<B>"] | "yes"/"no" | [x1, y1, x2, y2]

    def row(self) -> dict[str, Any]:
        """TRL's conversational row without the pixels (`GRPODataset` adds them)."""
        return {"prompt": self.prompt.messages(), "solution": self.solution, "accu_reward_method": self.method,
                "task": self.task}


@dataclass
class HeldOut:
    photo_id: int
    concepts: tuple[str, ...]
    prompt: CaptionPrompt


@dataclass
class BuiltDataset:
    train: list[TrainSample]
    heldout: list[HeldOut]
    concepts: list[str]
    warnings: list[str] = field(default_factory=list)
    # name -> {"photos", "references", "tagged_references", "heldout"} for every concept asked about
    photos: dict[str, dict[str, int]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        tasks = {t: sum(1 for s in self.train if s.task == t) for t in TASKS}
        per: dict[str, dict[str, int]] = {c: {t: 0 for t in TASKS} for c in self.concepts}
        for s in self.train:
            for c in s.concepts:
                per.setdefault(c, {t: 0 for t in TASKS})[s.task] += 1
        return {"tasks": tasks, "concepts": per, "train": len(self.train), "heldout": len(self.heldout),
                "warnings": list(self.warnings), "photos": {k: dict(v) for k, v in self.photos.items()}}


# ---- geometry -------------------------------------------------------------------------------------

def model_frame(width: int, height: int, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of a `width` x `height` image as the model sees it: fetch_image's rounding to
    28 px, then the processor's smart_resize to the pixel limits."""
    h1, w1 = smart_resize(height, width, IMAGE_FACTOR, FETCH_MIN_PIXELS, FETCH_MAX_PIXELS)
    h2, w2 = smart_resize(h1, w1, IMAGE_FACTOR, min_pixels, max_pixels)
    return w2, h2


def box_to_model_frame(box: Sequence[int], width: int, height: int, min_pixels: int = MIN_PIXELS,
                       max_pixels: int = MAX_PIXELS) -> list[int]:
    """A displayed-frame box ``(x, y, w, h)`` -> ``[x1, y1, x2, y2]`` in the model's pixel frame (both
    resizes scale the whole image, so one scale per axis maps the box)."""
    x, y, w, h = box
    mw, mh = model_frame(width, height, min_pixels, max_pixels)
    sx, sy = mw / width, mh / height
    x1, y1 = round(x * sx), round(y * sy)
    x2, y2 = round((x + w) * sx), round((y + h) * sy)
    return [max(0, x1), max(0, y1), min(mw, x2), min(mh, y2)]


# ---- library queries ------------------------------------------------------------------------------

def _prompt_concept(library, concept, max_refs: int) -> PromptConcept:
    refs = []
    for r in library.concepts.refs(concept.id)[:max_refs]:
        h = library.photos.get(r.photo_id).content_hash if r.photo_id else None
        refs.append(ImageRef(reference_path(library, r), tuple(r.box.as_list()) if r.box else None, h))
    return PromptConcept(concept.name, concept.info, tuple(refs))


def _appearances(library, labelled: dict[int, set[int]], photos) -> dict[int, set[int]]:
    """photo id -> every concept that shows up in it in any way: a tag of any source (detector
    suggestions too), a region of any source, a pending retrieval suggestion, or a tag of any caption
    (drafts and old ones too), merged over byte-identical copies. An OCT "no" must be certain."""
    by_name = {c.name.casefold(): c.id for c in library.concepts.all()}
    hashes = {pid: photos[pid].content_hash for pid in labelled if photos[pid].content_hash}
    twins = library.photos.by_hashes(set(hashes.values())) if hashes else {}
    out: dict[int, set[int]] = {}
    for pid in labelled:
        seen: set[int] = set()
        others = [q.id for q in twins.get(hashes.get(pid, ""), [])]
        for q in {pid, *others}:
            seen.update(c.id for c in library.concepts.of_photo(q))
            seen.update(r.concept_id for r in library.concepts.regions(q) if r.concept_id is not None)
            seen.update(s["concept_id"] for s in library.retrieval.suggestion_rows(q) if s["status"] == "pending")
            for cap in library.captions.history(q):
                for tag in cap.tags:
                    cid = by_name.get(str(tag).strip().removeprefix("<").removesuffix(">").strip().casefold())
                    if cid is not None:
                        seen.add(cid)
        out[pid] = seen
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# ---- the builder ----------------------------------------------------------------------------------

def build_dataset(library, concepts: Iterable[str] | None = None, *, seed: int = 2024,
                  heldout_fraction: float = 0.2, min_photos: int = MIN_PHOTOS, balance_factor: float = 2.0,
                  max_per_cell: int | None = None, max_refs: int = 1, tasks: Iterable[str] = TASKS,
                  min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS,
                  heldout_ids: Iterable[int] | None = None) -> BuiltDataset:
    """Build the GRPO samples and the held-out photos from `library` (see the module docstring).

    `concepts`: names to train on (default: every concept with enough data; the others are skipped with
    a warning). Named concepts that lack data are an error, as is a library where no concept qualifies.
    `heldout_ids`: the held-out photos of a resumed run (its run_config.json) instead of a new split.
    """
    tasks = tuple(t for t in TASKS if t in set(tasks))
    rng = random.Random(seed)
    explicit = concepts is not None
    all_concepts = library.concepts.all()
    if explicit:
        wanted = {library.concepts.get(n).id for n in concepts}  # NotFound names the unknown one
        chosen = [c for c in all_concepts if c.id in wanted]
    else:
        chosen = list(all_concepts)
    if not chosen:
        raise DatasetError("the library has no people or pets yet: add one with a reference photo and tag "
                           f"at least {min_photos} photos of them")

    # candidate query photos (core/training_photos.py, the count every list shows): labelled, not a
    # reference of any concept (nor a byte-identical copy of one), one photo per content; and present:
    # a file deleted or unmounted since the last rescan would stop training midway
    tp = training_photos(library, exists=os.path.exists)
    warnings: list[str] = []
    if tp.gone:
        warnings.append(f"{_plural(tp.gone, 'photo')} could not be found on disk and were left out (rescan the "
                        "folder)")
    ok_concepts, photo_counts = _concepts_with_data(library, chosen, tp, min_photos, explicit, warnings)
    ok_ids = {c.id for c in ok_concepts}
    ctx = _Context(library, tp.photos, tp.labelled, {pid: ids & ok_ids for pid, ids in tp.labelled.items()
                                                     if ids & ok_ids},
                   ok_ids, {c.id: c.name for c in ok_concepts},
                   {c.id: i for i, c in enumerate(ok_concepts)},  # library order = prompt order
                   {c.id: _prompt_concept(library, c, max_refs) for c in ok_concepts}, rng, warnings)

    held = ctx.split_heldout(heldout_fraction, None if heldout_ids is None else set(heldout_ids))
    heldout = [HeldOut(pid, tuple(ctx.name_of[c] for c in ctx.ordered(ctx.query_photos[pid])),
                       CaptionPrompt(tuple(ctx.pconcept[c] for c in ctx.ordered(ctx.query_photos[pid])),
                                     ctx.query(pid), DEFAULT_REQUEST))
               for pid in sorted(ctx.heldout_ids)]

    # balance caps per concept
    train_count = {cid: sum(1 for pid in ctx.train_ids if cid in ctx.query_photos[pid]) for cid in ok_ids}
    rarest = min(train_count.values())
    cap = max(1, math.ceil(balance_factor * rarest))
    if max_per_cell is not None:
        cap = max(1, min(cap, max_per_cell))

    ctx.shuffled = list(ctx.train_ids)
    rng.shuffle(ctx.shuffled)
    samples: list[TrainSample] = []
    if "ict" in tasks:
        samples += ctx.ict_samples(cap)
    if "oct" in tasks:
        samples += ctx.oct_samples(cap)
    if "vlt" in tasks:
        samples += ctx.vlt_samples(cap, min_pixels, max_pixels)
    rng.shuffle(samples)
    for cid in ok_ids:
        photo_counts[ctx.name_of[cid]]["heldout"] = held[cid]
    return BuiltDataset(samples, heldout, [c.name for c in ok_concepts], warnings, photo_counts)


def _concepts_with_data(library, chosen, tp, min_photos: int, explicit: bool, warnings: list[str]):
    """The chosen concepts that have a reference photo and enough photos, and every chosen concept's
    counts. A concept without is an error when named, else skipped with a warning."""
    problems = []
    ok_concepts = []
    photo_counts: dict[str, dict[str, int]] = {}
    for c in chosen:
        n = sum(1 for ids in tp.labelled.values() if c.id in ids)
        refs = library.concepts.refs(c.id)
        photo_counts[c.name] = {"photos": n, "references": len(refs),
                                "tagged_references": tp.tagged_references.get(c.id, 0), "heldout": 0}
        if not refs:
            problems.append(f"<{c.name}> has no reference photo: add one (`repic concept add-ref \"{c.name}\" "
                            "PHOTO`)")
        elif not os.path.exists(reference_path(library, refs[0])):
            problems.append(f"the reference photo of <{c.name}> is missing on disk ({reference_path(library, refs[0])})")
        elif n < min_photos:
            as_refs = tp.tagged_references.get(c.id, 0)
            why = (f" (all {_plural(as_refs, 'photo')} tagged with <{c.name}> are reference photos, which are "
                   "never trained on)" if as_refs and not n else "")
            problems.append(f"<{c.name}> has {_plural(n, 'photo')}{why}: add at least {min_photos} photos of "
                            f"<{c.name}> (tag them, or accept captions that name them; its reference photos do not "
                            "count)")
        else:
            ok_concepts.append(c)
    if explicit and problems:
        raise DatasetError("not enough data to train: " + "; ".join(problems))
    if not ok_concepts:
        raise DatasetError("not enough data to train: " + "; ".join(problems))
    warnings.extend(f"skipped: {p}" for p in problems)
    return ok_concepts, photo_counts


@dataclass
class _Context:
    """What the steps of build_dataset share: the photos, the concepts trained on, the split, the RNG
    (its calls stay in one fixed order, so a seed always gives the same dataset)."""
    library: Any
    photos: dict
    labelled: dict[int, set[int]]
    query_photos: dict[int, set[int]]  # photo -> the trained concepts on it
    ok_ids: set[int]
    name_of: dict[int, str]
    order: dict[int, int]
    pconcept: dict[int, PromptConcept]
    rng: random.Random
    warnings: list[str]
    heldout_ids: set[int] = field(default_factory=set)
    train_ids: list[int] = field(default_factory=list)
    shuffled: list[int] = field(default_factory=list)

    def ordered(self, ids: Iterable[int]) -> list[int]:
        return sorted(ids, key=lambda c: self.order[c])

    def query(self, pid: int) -> ImageRef:
        p = self.photos[pid]
        return ImageRef(p.fs_path, None, p.content_hash)

    def split_heldout(self, heldout_fraction: float, forced: set[int] | None) -> dict[int, int]:
        """Hold out photos (by photo, `forced` ones on a resume) until each concept has its share, never
        leaving a concept fewer than 2 training photos. Returns the held-out count per concept."""
        query_photos, ok_ids = self.query_photos, self.ok_ids
        heldout_ids: set[int] = set()
        pids = sorted(query_photos)
        self.rng.shuffle(pids)
        count = {cid: sum(1 for ids in query_photos.values() if cid in ids) for cid in ok_ids}
        target = {cid: max(1, math.floor(count[cid] * heldout_fraction)) for cid in ok_ids} if heldout_fraction > 0 \
            else {cid: 0 for cid in ok_ids}
        held = {cid: 0 for cid in ok_ids}
        if forced is not None:  # a resumed run keeps its split
            heldout_ids = {pid for pid in pids if pid in forced}
            for pid in heldout_ids:
                for c in query_photos[pid]:
                    held[c] += 1
            pids = []
        for pid in pids:
            ids = query_photos[pid]
            needs = any(held[c] < target[c] for c in ids)
            # never leave a concept with fewer than 2 training photos
            keeps = all(count[c] - held[c] - 1 >= 2 for c in ids)
            if needs and keeps:
                heldout_ids.add(pid)
                for c in ids:
                    held[c] += 1
        for cid in ok_ids:
            if target[cid] and held[cid] == 0:
                self.warnings.append(f"<{self.name_of[cid]}> has no held-out photo (too few photos): its score "
                                     "before/after training is not measured")
        self.heldout_ids = heldout_ids
        self.train_ids = sorted(set(query_photos) - heldout_ids)
        return held

    def ict_samples(self, cap: int) -> list[TrainSample]:
        """One caption sample per training photo while any of its concepts is under the cap."""
        samples = []
        used = {cid: 0 for cid in self.ok_ids}
        for k, pid in enumerate(self.shuffled):
            ids = self.ordered(self.query_photos[pid])
            if not any(used[c] < cap for c in ids):
                continue
            for c in ids:
                used[c] += 1
            tags = [f"<{self.name_of[c]}>" for c in ids]
            prompt = CaptionPrompt(tuple(self.pconcept[c] for c in ids), self.query(pid),
                                   ICT_REQUESTS[k % len(ICT_REQUESTS)])
            if len(ids) == 1:
                samples.append(TrainSample("ict", "yes_no_name", pid, (self.name_of[ids[0]],), prompt, tags[0]))
            else:
                samples.append(TrainSample("ict", "yes_no_name_multi", pid, tuple(self.name_of[c] for c in ids),
                                           prompt, tags))
        return samples

    def oct_samples(self, cap: int) -> list[TrainSample]:
        """Positives and as many true negatives (labelled photos without any trace of the concept)."""
        samples = []
        appears = _appearances(self.library, self.labelled, self.photos)
        per_side = max(1, math.ceil(cap / 2))
        for cid in self.ordered(self.ok_ids):
            name = self.name_of[cid]
            pos = [pid for pid in self.shuffled if cid in self.query_photos[pid]][:per_side]
            neg_pool = [pid for pid in sorted(self.labelled) if pid not in self.heldout_ids
                        and cid not in self.labelled[pid] and cid not in appears.get(pid, ())]
            self.rng.shuffle(neg_pool)
            neg = neg_pool[:len(pos)]
            if not neg:
                self.warnings.append(f"no photo is known to be without <{name}>, so the model cannot learn to "
                                     f"answer 'no' for <{name}>: tag photos of other people or pets")
            request = f"Is <{name}> in this image?" + OCT_SUFFIX
            for pid, answer in [*((p, "yes") for p in pos), *((p, "no") for p in neg)]:
                samples.append(TrainSample("oct", "yes_no", pid, (name,),
                                           CaptionPrompt((self.pconcept[cid],), self.query(pid), request), answer))
        return samples

    def vlt_samples(self, cap: int, min_pixels: int, max_pixels: int) -> list[TrainSample]:
        """Boxes of confirmed regions, in the model's pixel frame."""
        samples = []
        for cid in self.ordered(self.ok_ids):
            name = self.name_of[cid]
            found = []
            for pid in self.shuffled:
                if cid not in self.query_photos[pid]:
                    continue
                p = self.photos[pid]
                if not p.width or not p.height:
                    continue
                for reg in self.library.concepts.regions(pid):
                    if reg.concept_id == cid and reg.source in CONFIRMED_SOURCES:
                        found.append((pid, box_to_model_frame(reg.box.as_list(), p.width, p.height,
                                                              min_pixels, max_pixels)))
            if not found:
                self.warnings.append(f"no boxes drawn around <{name}>: draw a few to also train localization")
            request = (f"Where is <{name}> in this image? Give its bounding box as [x1, y1, x2, y2]." + VLT_SUFFIX)
            for pid, box in found[:cap]:
                samples.append(TrainSample("vlt", "iou", pid, (name,),
                                           CaptionPrompt((self.pconcept[cid],), self.query(pid), request), box))
        return samples


# ---- what the trainer iterates --------------------------------------------------------------------

class GRPODataset:
    """Map-style dataset for TRL: rows with ``prompt`` (chat messages with image placeholders),
    ``images`` (PIL, decoded on demand as RePIC's pipeline receives them), ``solution``,
    ``accu_reward_method`` and ``task``. Pixels are read per item rather than held in memory: a real
    library's training set would be gigabytes of decoded images."""

    def __init__(self, samples: Sequence[TrainSample]):
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from repic_desktop.captioning.prompt import fetch_image

        s = self.samples[index]
        row = s.row()
        row["images"] = [fetch_image(ref) for ref in s.prompt.images()]
        return row


def to_hf_dataset(samples: Sequence[TrainSample]):
    """`GRPODataset` as a `datasets.Dataset` (TRL accepts only those): one integer column, and a
    transform that builds each row, pixels included, when the trainer asks for it."""
    from datasets import Dataset

    rows = GRPODataset(samples)

    def transform(batch: dict[str, list]) -> dict[str, list]:
        items = [rows[int(i)] for i in batch["index"]]
        return {k: [it[k] for it in items] for k in ("prompt", "images", "solution", "accu_reward_method", "task")}

    return Dataset.from_dict({"index": list(range(len(rows)))}).with_transform(transform)

"""Generate a labelled corpus folder: clips/, labels.jsonl and corpus.json.

Splits are disjoint by seed: each split owns a documented seed range and refuses the others', and
every clip's random stream is keyed by its split too, so no clip content repeats across splits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from pathlib import Path

from . import concepts as C
from .labels import CORPUS_FILE, LabelledClip, write_labels
from .plan import DUPLICATE_SHARE, VIOLATING_SHARE, plan_corpus
from .render import encode
from .truth import labelled

log = logging.getLogger("corpus")

GENERATOR_VERSION = "corpus-v1"
SEED_RANGES = {"train": range(0, 1000), "test": range(1000, 2000), "val": range(2000, 3000)}


class CorpusError(ValueError):
    """A request the generator refuses: unknown split, a seed of another split, a used folder."""


def check_request(out: Path, seed: int, clips: int, split: str) -> None:
    if split not in SEED_RANGES:
        raise CorpusError(f"split must be one of {', '.join(SEED_RANGES)}, got {split!r}")
    r = SEED_RANGES[split]
    if seed not in r:
        raise CorpusError(
            f"seed {seed} is not a {split} seed: {split} seeds are {r.start}..{r.stop - 1} "
            "(disjoint seed ranges keep the splits apart)"
        )
    if clips < 1:
        raise CorpusError(f"clips must be at least 1, got {clips}")
    if out.exists() and any(out.iterdir()):
        raise CorpusError(f"{out} is not empty; give a new folder")


def counts(clips: list[LabelledClip]) -> dict:
    cats: Counter[str] = Counter()
    for c in clips:
        for f in c.record.moderation.categories:
            cats[f"{f.category}:{f.severity}"] += 1
    return {
        "clips": len(clips),
        "clean": sum(c.record.moderation.status == "clear" for c in clips),
        "violating": sum(c.record.moderation.status != "clear" for c in clips),
        "novel": sum(c.novel for c in clips),
        "duplicates": sum(c.duplicate_of is not None for c in clips),
        "vp9": sum(c.codec == "vp9" for c in clips),
        "seconds": round(sum(c.duration_s for c in clips), 2),
        "tags": dict(
            sorted(Counter(t.label for c in clips for t in {x.label: x for x in c.record.tags}.values()).items())
        ),
        "moderation": dict(sorted(cats.items())),
    }


def make(
    out: str | Path, seed: int, clips: int, split: str, violating_share: float = VIOLATING_SHARE
) -> list[LabelledClip]:
    """Generate `clips` clips of `split` from `seed` into the new folder `out`; returns their labels."""
    out = Path(out)
    check_request(out, seed, clips, split)
    if not 0.0 <= violating_share <= 1.0 - DUPLICATE_SHARE:
        raise CorpusError(f"violating_share must lie in [0, {1.0 - DUPLICATE_SHARE}], got {violating_share}")
    started = time.monotonic()
    labels, hashes = [], {}
    for n, plan in enumerate(plan_corpus(split, seed, clips, violating_share), 1):
        clip = labelled(plan)
        encode(plan, out / clip.file)
        hashes[clip.video_id] = hashlib.sha256((out / clip.file).read_bytes()).hexdigest()
        labels.append(clip)
        if n % 25 == 0 or n == clips:
            log.info("corpus %s seed %d: %d/%d clips in %.1f s", split, seed, n, clips, time.monotonic() - started)
    write_labels(out, labels)
    info = {
        "generator": GENERATOR_VERSION,
        "seed": seed,
        "split": split,
        "violating_share": violating_share,
        "seed_range": [SEED_RANGES[split].start, SEED_RANGES[split].stop - 1],
        "concepts": {"tags": list(C.TAGS), "moderation": list(C.MODERATION)},
        "counts": counts(labels),
        "sha256": hashes,
    }
    (out / CORPUS_FILE).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return labels

"""KC-MMBench in VLMEvalKit's TSV layout: score a file's predictions, or make them with a model.

The layout (one row per item, tab-separated, a header line):
    index       the item's id
    question    the text asked (a `hint` column, when present, goes before it)
    answer      yes/no (或 是/否) for the yes-or-no tasks, an option letter or a free answer for VQA
    category    the task name (CPV, SPU, ...); the file's stem when the column is absent
    A, B, C, D  options of a multiple-choice item (more letters allowed; empty cells ignored)
    image       base64 image, or a JSON list of them (the frames of a video)
    image_path  a path (or JSON list of paths) relative to the TSV, instead of `image`
    video       a video path relative to the TSV (`video_path` also accepted)
    prediction  the model's answer; when the column exists the file is scored as is

Answers are matched after removing `<think>...</think>` (and `<analysis>...</analysis>`) blocks,
as VLMEvalKit does: yes/no by extracting a yes or a no (Unknown when both or neither appear),
multiple choice by the option letter (or the one option text quoted), free answers by exact match
after normalization. VLMEvalKit can also ask an LLM judge for VQA; here matching is exact, so an
answer phrased differently counts as wrong (a lower bound of the judged score).
"""

from __future__ import annotations

import base64
import csv
import json
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from evaluation.counts import ratio

YES, NO = "yes", "no"
_BLOCKS = re.compile(r"<(think|analysis)>.*?</\1>", re.S | re.I)
_LETTER = re.compile(r"\b([A-Z])\b")
YES_NO_PROMPT = "Answer with yes or no only."
CHOICE_PROMPT = "Answer with the option's letter only."


@dataclass
class Item:
    index: str
    question: str
    answer: str
    category: str
    options: dict[str, str] = field(default_factory=dict)
    images: list[bytes | str] = field(default_factory=list)  # image bytes, or paths
    video: str | None = None
    prediction: str | None = None

    @property
    def kind(self) -> str:
        if self.options:
            return "choice"
        return "yes_no" if yes_no(self.answer) in (YES, NO) and len(self.answer.strip()) <= 3 else "vqa"

    def prompt(self) -> str:
        lines = [self.question, *(f"{k}. {v}" for k, v in self.options.items())]
        lines.append(CHOICE_PROMPT if self.options else YES_NO_PROMPT if self.kind == "yes_no" else "")
        return "\n".join(line for line in lines if line)


def strip_thinking(text: str) -> str:
    text = _BLOCKS.sub(" ", text or "")
    # an unclosed reasoning block (a truncated answer): what follows its last closing tag, if any
    return text.rsplit("</think>", 1)[-1].strip()


def yes_no(text: str) -> str | None:
    t = strip_thinking(text).lower()
    words = set(re.findall(r"[a-z]+", t))
    no = "no" in words or "否" in t or "不是" in t
    yes = "yes" in words or "是" in t.replace("不是", "")
    return YES if yes and not no else NO if no and not yes else None


def choice(text: str, options: dict[str, str]) -> str | None:
    t = strip_thinking(text)
    letters = [m for m in _LETTER.findall(t) if m in options]
    if letters:
        return letters[0]
    said = [k for k, v in options.items() if v and _norm(v) and _norm(v) in _norm(t)]
    return said[0] if len(said) == 1 else None


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", str(text).lower()))


def correct(item: Item, prediction: str) -> tuple[bool, bool]:
    """(correct, extracted): a prediction nothing could be extracted from is wrong and counted apart."""
    if item.kind == "yes_no":
        got = yes_no(prediction)
        return got is not None and got == yes_no(item.answer), got is not None
    if item.kind == "choice":
        got = choice(prediction, item.options)
        return got is not None and got == item.answer.strip().upper()[:1], got is not None
    got = _norm(strip_thinking(prediction))
    return bool(got) and got == _norm(item.answer), bool(got)


def _cells(value: str) -> list[str]:
    value = (value or "").strip()
    if value.startswith("["):
        try:
            return [str(v) for v in json.loads(value)]
        except ValueError:
            pass
    return [value] if value else []


def read_tsv(path: str | Path) -> list[Item]:
    path = Path(path)
    csv.field_size_limit(sys.maxsize)  # base64 images make long cells
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if rows and not {"index", "question", "answer"} <= set(rows[0]):
        raise ValueError(
            f"{path}: a KC-MMBench TSV needs the columns index, question and answer; it has {sorted(rows[0])}"
        )
    items = []
    for row in rows:
        options = {
            k: row[k].strip()
            for k in sorted(row)
            if k and len(k) == 1 and k.isupper() and (row[k] or "").strip() and row[k].strip().lower() != "nan"
        }
        images: list[bytes | str] = [base64.b64decode(c) for c in _cells(row.get("image", ""))]
        images += [str(path.parent / c) for c in _cells(row.get("image_path", ""))]
        video = (row.get("video") or row.get("video_path") or "").strip()
        question = " ".join(x for x in ((row.get("hint") or "").strip(), row["question"].strip()) if x and x != "nan")
        items.append(
            Item(
                index=str(row["index"]),
                question=question,
                answer=str(row["answer"]).strip(),
                category=(row.get("category") or "").strip() or path.stem,
                options=options,
                images=images,
                video=str(path.parent / video) if video else None,
                prediction=row["prediction"] if "prediction" in row else None,
            )
        )
    return items


def score(items: Iterable[Item], predictions: dict[str, str]) -> dict:
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # correct, items, unextracted
    kinds: dict[str, str] = {}
    for item in items:
        ok, extracted = correct(item, predictions.get(item.index, ""))
        for key in (item.category, "overall"):
            tally[key][0] += ok
            tally[key][1] += 1
            tally[key][2] += not extracted
        kinds[item.category] = item.kind
    per = {
        c: {"accuracy": ratio(t[0], t[1]), "correct": t[0], "items": t[1], "unextracted": t[2], "kind": kinds[c]}
        for c, t in sorted(tally.items())
        if c != "overall"
    }
    o = tally["overall"]
    return {
        "overall": {"accuracy": ratio(o[0], o[1]), "correct": o[0], "items": o[1], "unextracted": o[2]},
        "per_category": per,
    }


class ModelAnswerer:
    """Greedy answers of a keye_model model to the items (the images as image inputs, or the video)."""

    def __init__(self, model, processor, max_new_tokens: int = 64) -> None:
        self.model, self.processor, self.max_new_tokens = model, processor, max_new_tokens

    def __call__(self, item: Item) -> str:
        import torch

        media = [{"type": "image", "image": im} for im in item.images]
        if item.video:
            media.append({"type": "video", "video": item.video})
        messages = [{"role": "user", "content": [*media, {"type": "text", "text": item.prompt()}]}]
        with torch.inference_mode():
            inputs = {k: v.to(self.model.device) for k, v in self.processor(messages).model_inputs().items()}
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
        return self.processor.decode(out[0], skip_special_tokens=True).strip()


def run(
    path: str | Path, answer: Callable[[Item], str] | None = None, progress: Callable[[int, int], None] | None = None
) -> tuple[dict, dict[str, str]]:
    """Score a TSV: its own `prediction` column, else the answers of `answer`. Returns the scores
    and the predictions (to write back next to the file)."""
    items = read_tsv(path)
    if items and items[0].prediction is not None:
        predictions = {i.index: i.prediction or "" for i in items}
    elif answer is None:
        raise ValueError(f"{path} has no prediction column; give a model to answer it")
    else:
        predictions = {}
        for n, item in enumerate(items, 1):
            predictions[item.index] = answer(item)
            if progress:
                progress(n, len(items))
    return {"file": str(path), **score(items, predictions)}, predictions


def write_predictions(src: str | Path, dst: str | Path, predictions: dict[str, str]) -> None:
    """The TSV with a `prediction` column (VLMEvalKit's result layout)."""
    with Path(src).open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    fields = [*(rows[0].keys() if rows else ["index"])]
    fields += [] if "prediction" in fields else ["prediction"]
    with Path(dst).open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, delimiter="\t")
        w.writeheader()
        for row in rows:
            w.writerow({**row, "prediction": predictions.get(str(row["index"]), "")})

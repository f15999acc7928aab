"""Time of one full-training step of a model preset on one generated corpus clip, at the analysis
configuration's frame budget and at a quarter of its frames (fps / 4), for sizing keye-demo.

One step = one micro-batch holding the clip's examples of every task (tags, summary, moderation,
products), forward through the vision tower and decoder, backward, AdamW on every parameter. The
first step is a warm-up; the median of the rest is reported (wall and CPU seconds), with the
tokens per example, and the ratio of the two budgets.

Run: .venv/bin/python bench/training_step.py [--preset keye-tiny] [--steps 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project before bench/ (bench/kernels.py)

import corpus
import keye_model
from analysis import config as C
from training.corpus_examples import corpus_examples
from training.full import FullConfig, Supervised, train_full


def budget(fps_divisor: int) -> C.AnalysisConfig:
    raw = json.loads(C.DEFAULT_PATH.read_text())
    raw["video"]["fps"] = raw["video"]["fps"] / fps_divisor
    return C.parse_config(raw)


def step_seconds(preset: str, examples, steps: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of a step after the first; CPU time is steadier on a shared machine."""
    model = keye_model.load(preset, seed=0)
    marks = [(time.perf_counter(), time.process_time())]
    train_full(
        model,
        examples,
        FullConfig(steps=steps, batch_size=len(examples), lr=1e-4),
        Supervised(),
        log_step=lambda *_: marks.append((time.perf_counter(), time.process_time())),
    )
    per = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(marks, marks[1:])][1:]
    return statistics.median(w for w, _ in per), statistics.median(c for _, c in per)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="keye-tiny")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    processor = keye_model.KeyeProcessor()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "corpus"
        corpus.make(folder, seed=0, clips=1, split="train")
        results = {}
        for name, div in (("analysis budget", 1), ("a quarter of the frames", 4)):
            made = corpus_examples(processor, budget(div), folder)
            ex = made.examples
            tokens = sorted({int(e.input_ids.shape[0]) for e in ex})
            frames = int(ex[0].vision["video_grid_thw"][:, 0].sum()) * 2  # temporal patch of 2 frames
            wall, cpu = results[name] = step_seconds(args.preset, ex, args.steps)
            print(
                f"{args.preset} {name}: {frames} frames, {len(ex)} examples of {tokens[0]}-{tokens[-1]} tokens, "
                f"{wall:.2f} s wall, {cpu:.2f} s CPU per full-training step"
            )
        big, small = results["analysis budget"], results["a quarter of the frames"]
        print(f"ratio analysis / quarter: {big[0] / small[0]:.2f} wall, {big[1] / small[1]:.2f} CPU")


if __name__ == "__main__":
    main()

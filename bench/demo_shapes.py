"""Which shape for keye-demo: train candidate shapes of the Keye-VL architecture from scratch with the
same recipe and step budget (training/demo_spec.py), evaluate each on the same held-out test clips as
a worker would analyze them, and report the accuracy / training-time trade-off.

Every candidate keeps the release's architecture and its 151,936-token vocabulary; only widths and
depths change. Training time is wall time on this machine in this run (the candidates run one after
another, so compare them with each other, not with another run).

Run: .venv/bin/python bench/demo_shapes.py [--shapes narrow,base,deep] [--steps 300] [--test-clips 40]
     [--out bench-demo-shapes.json] [--data-dir .keye-bench]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project before bench/ (bench/kernels.py)

import corpus
from service.settings import Settings
from training.demo_spec import DEMO, DEMO_SHAPE


def _shape(hidden: int, layers: int, vision_hidden: int, vision_layers: int) -> dict:
    heads = hidden // 32  # head_dim 32, as DEMO_SHAPE
    return {
        **DEMO_SHAPE,
        "hidden_size": hidden,
        "intermediate_size": 3 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": max(1, heads // 2),
        "vision_config": {
            "hidden_size": vision_hidden,
            "intermediate_size": 2 * vision_hidden,
            "num_hidden_layers": vision_layers,
            "num_attention_heads": max(1, vision_hidden // 48),
        },
    }


SHAPES = {
    "narrow": _shape(128, 1, 48, 1),
    "base": _shape(128, 2, 96, 2),  # DEMO_SHAPE's sizes
    "deep": _shape(128, 4, 96, 4),
    "wide": _shape(256, 2, 192, 2),
}

HEADLINE = (
    "tags.micro_f1",
    "moderation.precision",
    "moderation.recall",
    "moderation.severity_accuracy",
    "summary.fact_recall",
    "retrieval.recall@5",
    "near_duplicates.f1",
)


def test_corpus(data_dir: Path, clips: int) -> Path:
    folder = data_dir / "demo" / f"corpus-test-1000-{clips}"
    if not (folder / corpus.labels.CORPUS_FILE).is_file():
        corpus.make(folder, seed=1000, clips=clips, split="test")
    return folder


def evaluate(settings: Settings, folder: Path, test: Path) -> dict:
    from analysis.config import load_config
    from evaluation.harness import evaluate as run_eval
    from evaluation.labelled import from_corpus
    from evaluation.models import analyzer_for

    s = Settings(**{**settings.model_dump(), "model": str(folder)})  # the folder's analysis_config.json
    analyzer = analyzer_for(s, str(folder))
    return run_eval(analyzer, from_corpus(test), s, config=load_config(s.analysis_config))


def main() -> None:
    import torch

    from service.logs import setup_logging
    from training.demo import build_demo

    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="narrow,base,deep")
    ap.add_argument("--steps", type=int, default=DEMO.steps)
    ap.add_argument("--test-clips", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", type=Path, default=Path(".keye-bench"))
    ap.add_argument("--out", type=Path, default=Path("bench-demo-shapes.json"))
    args = ap.parse_args()
    setup_logging()
    torch.set_num_threads(args.threads)
    settings = Settings(data_dir=args.data_dir, database_url=f"sqlite:///{(args.data_dir / 'bench.db').resolve()}")
    test = test_corpus(args.data_dir, args.test_clips)
    rows = {}
    for name in args.shapes.split(","):
        spec = DEMO.with_(shape=SHAPES[name], steps=args.steps)
        t0 = time.perf_counter()
        made = build_demo(settings, spec, name=f"shape-{name}", progress=False)
        report = evaluate(settings, made.path, test)
        rows[name] = {
            "shape": SHAPES[name],
            "parameters": made.info["parameters"],
            "train_seconds": made.info["train_seconds"],
            "build_seconds": round(time.perf_counter() - t0, 1),
            "headline": report["headline"],
            "videos_per_minute": report["cost"]["videos_per_minute"],
        }
        print(json.dumps({name: rows[name]}), flush=True)
    args.out.write_text(json.dumps({"steps": args.steps, "test_clips": args.test_clips, "shapes": rows}, indent=1))
    print(
        f"\n{'shape':8} {'params M':>8} {'train s':>8} " + " ".join(f"{k.split('.', 1)[1][:14]:>14}" for k in HEADLINE)
    )
    for name, r in rows.items():
        vals = " ".join(f"{r['headline'].get(k, float('nan')) or 0:>14.3f}" for k in HEADLINE)
        print(f"{name:8} {r['parameters'] / 1e6:>8.1f} {r['train_seconds']:>8.0f} {vals}")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()

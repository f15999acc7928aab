"""Video decoding with PyAV: index the packets, pick the frames, decode only what they need.

1. Demux the video stream once without decoding: every packet's timestamp and key flag. That
   gives the frame count, the frame rate, the duration and the presentation order exactly, even
   for variable frame rate.
2. Pick frame indices with the reference formula (2 fps, even count, linspace).
3. For each wanted frame, seek to the keyframe before it (only when that is ahead of where the
   decoder is), decode forward, tell the decoder to skip non-reference frames we do not want,
   and convert to RGB only the wanted frames. Each wanted frame is rotated as its display
   matrix says and resized right away, so memory is bounded by the output.
If the timestamps cannot be trusted (missing, or a wanted frame never comes out), fall back to
decoding sequentially and counting frames.
"""

from __future__ import annotations

import bisect
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import torch
import torch.nn.functional as F

from .config import MediaLimits, PixelBudgets
from .errors import (DecodeTimeout, MediaError, ProcessorInputError, UnsupportedMedia,
                     VideoDecodeError, VideoTooLarge, VideoTooLong)
from .image import requested_size
from .sizing import frame_range, sample_count, sample_indices, smart_resize, video_frame_pixels

# Signatures of containers we accept: a file that starts like one but will not open is corrupt
# or truncated; anything else is simply not a video.
_VIDEO_MAGIC = ((4, b"ftyp"), (0, b"\x1a\x45\xdf\xa3"), (0, b"RIFF"), (0, b"FLV"), (0, b"OggS"),
                (0, b"\x00\x00\x01\xba"), (4, b"moov"), (4, b"mdat"), (4, b"free"), (4, b"wide"),
                (0, b"YUV4MPEG2"), (0, b"\x00\x00\x00\x01"))
_IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "gif", "bmp_pipe", "tiff_pipe")


@dataclass
class VideoInput:
    """A decoded, sampled and resized video, reusable across prompts.

    frames: uint8 (T, 3, H, W), H and W multiples of 28. timestamps: seconds of each frame from
    the start of the stream. sample_fps: frames per second of the sampled sequence (the reference
    `second_per_grid_t` is its inverse).
    """

    frames: torch.Tensor
    timestamps: list[float]
    sample_fps: float
    video_fps: float = 0.0
    total_frames: int = 0
    indices: list[int] = field(default_factory=list)
    duration_s: float = 0.0
    source: str | None = None

    @property
    def second_per_grid_t(self) -> float:
        return 1.0 / self.sample_fps


@dataclass(frozen=True)
class VideoRequest:
    """Per-request sampling options (the keys of a message's video item)."""

    fps: float = 2.0
    min_frames: int = 4
    max_frames: int | None = None
    nframes: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    total_pixels: int | None = None
    video_start: float | None = None
    video_end: float | None = None
    resized_height: int | None = None
    resized_width: int | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any], budgets: PixelBudgets) -> "VideoRequest":
        known = {k: item[k] for k in ("fps", "min_frames", "max_frames", "nframes", "min_pixels",
                                      "max_pixels", "total_pixels", "video_start", "video_end",
                                      "resized_height", "resized_width")
                 if item.get(k) is not None}
        size = requested_size(known)
        known.pop("resized_height", None), known.pop("resized_width", None)
        if size is not None:
            known["resized_height"], known["resized_width"] = size
        if "fps" in known and "nframes" in known:
            raise ProcessorInputError("give either fps or nframes for a video, not both")
        known.setdefault("fps", budgets.fps)
        known.setdefault("min_frames", budgets.min_frames)
        for k in ("fps", "min_frames", "max_frames", "nframes", "min_pixels", "max_pixels", "total_pixels"):
            if k in known and not (isinstance(known[k], (int, float)) and not isinstance(known[k], bool)
                                   and math.isfinite(known[k]) and known[k] > 0):
                raise ProcessorInputError(f"video option {k} must be a positive number, got {known[k]!r}")
        for k in ("video_start", "video_end"):
            if k in known and not (isinstance(known[k], (int, float)) and math.isfinite(known[k]) and known[k] >= 0):
                raise ProcessorInputError(f"video option {k} must be a time in seconds >= 0, got {known[k]!r}")
        return cls(**known)


@dataclass
class _Index:
    pts: list[int]  # presentation timestamps of all frames, sorted
    key_pts: list[int]  # presentation timestamps of keyframes, sorted
    time_base: Fraction
    video_fps: float
    duration_s: float
    reliable: bool  # every packet had a timestamp


def _classify_open_error(path: Path, err: Exception) -> MediaError:
    try:
        with path.open("rb") as f:
            head = f.read(192)
    except OSError:
        head = b""
    if not head:
        return UnsupportedMedia("empty file", str(path))
    mpeg_ts = head[:1] == b"\x47" and head[188:189] == b"\x47"  # sync byte every 188 bytes
    if any(head[o:o + len(m)] == m for o, m in _VIDEO_MAGIC) or mpeg_ts:
        return VideoDecodeError(f"corrupt or truncated video container: {err}", str(path))
    return UnsupportedMedia(f"not a video file: {err}", str(path))


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _open(path: Path, limits: MediaLimits,
          threads: int = 1) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    if not path.is_file():
        raise UnsupportedMedia("video file not found", str(path))
    size = path.stat().st_size
    if size == 0:
        raise UnsupportedMedia("empty file", str(path))
    if size > limits.max_file_bytes:
        raise VideoTooLarge(f"file of {size} bytes is over the {limits.max_file_bytes} byte limit", str(path))
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore",
                            timeout=max(limits.decode_timeout_s, 1e-3))
    except av.ExitError:
        raise DecodeTimeout("opening the file took longer than the time budget", str(path)) from None
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise _classify_open_error(path, e) from None
    try:
        fmt = container.format.name or ""
        if any(f in fmt.split(",") for f in _IMAGE_FORMATS):
            raise UnsupportedMedia(f"an image ({fmt}), not a video", str(path))
        if not container.streams.video:
            kind = "audio only" if container.streams.audio else "no video stream"
            raise UnsupportedMedia(f"{kind}: nothing to decode", str(path))
        stream = container.streams.video[0]
        if threads > 1:  # set before the decoder opens (at the first decode)
            stream.codec_context.thread_type = "AUTO"
            stream.codec_context.thread_count = threads
        w, h = stream.codec_context.width, stream.codec_context.height
        if w > limits.max_side or h > limits.max_side or w * h > limits.max_frame_pixels:
            raise VideoTooLarge(f"declared frame size {w}x{h} is over the limit", str(path))
        if container.duration is not None and container.duration / 1e6 > limits.max_duration_s:
            raise VideoTooLong(f"declared duration {container.duration / 1e6:.1f}s is over "
                               f"{limits.max_duration_s:.0f}s", str(path))
        return container, stream
    except BaseException:
        container.close()
        raise


def _check_deadline(deadline: float, path: Path) -> None:
    if time.monotonic() > deadline:
        raise DecodeTimeout("decoding took longer than the time budget", str(path))


def _index(container: Any, stream: Any, path: Path, limits: MediaLimits, deadline: float) -> _Index:
    pts: list[int] = []
    keys: list[int] = []
    durations: list[int] = []
    reliable = True
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # the flush packet at end of stream
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:
                reliable = False
                ts = (pts[-1] + 1) if pts else 0
            pts.append(ts)
            durations.append(packet.duration or 0)
            if packet.is_keyframe:
                keys.append(ts)
            if len(pts) > limits.max_packets:
                raise VideoTooLong(f"more than {limits.max_packets} frames", str(path))
            if len(pts) % 256 == 0:
                _check_deadline(deadline, path)
    except av.ExitError:
        raise DecodeTimeout("reading the file took longer than the time budget", str(path)) from None
    except av.FFmpegError as e:
        if not pts:
            raise VideoDecodeError(f"corrupt video data: {e}", str(path)) from None
        # a damaged tail: keep what could be read
    if not pts:
        raise VideoDecodeError("the video stream holds zero frames", str(path))
    if len(set(pts)) != len(pts):
        reliable = False
    tb = stream.time_base or Fraction(1, 90000)
    order = sorted(pts)
    last_dur = max(durations[-1] if durations else 0, 0)
    span = (order[-1] - order[0] + last_dur) * tb
    if span <= 0 and stream.average_rate:
        span = Fraction(len(order)) / stream.average_rate
    duration = float(span)
    rate = float(stream.average_rate) if stream.average_rate else 0.0
    if not rate > 0:
        rate = len(order) / duration if duration > 0 else 25.0
    if duration <= 0:
        duration = len(order) / rate
    if duration > limits.max_duration_s:
        raise VideoTooLong(f"duration {duration:.1f}s is over {limits.max_duration_s:.0f}s", str(path))
    return _Index(order, sorted(keys) or [order[0]], tb, rate, duration, reliable)


class _Sink:
    """Rotates, resizes and stores the wanted frames as they come out of the decoder."""

    def __init__(self, count: int, budgets: PixelBudgets, req: VideoRequest, limits: MediaLimits,
                 source: str) -> None:
        self.frames: list[torch.Tensor | None] = [None] * count
        self.size: tuple[int, int] | None = None
        lo, hi = video_frame_pixels(count, budgets, req.min_pixels, req.max_pixels, req.total_pixels)
        self.lo, self.hi, self.limits, self.source = lo, hi, limits, source
        if req.resized_height is not None and req.resized_width is not None:
            # explicit size: rounded to 28 with the image defaults, as the reference does
            self.size = smart_resize(req.resized_height, req.resized_width, min_pixels=budgets.image_min_pixels,
                                     max_pixels=budgets.image_max_pixels, max_ratio=limits.max_aspect_ratio)

    def put(self, slot: int, frame: Any) -> None:
        w, h = frame.width, frame.height
        if w > self.limits.max_side or h > self.limits.max_side or w * h > self.limits.max_frame_pixels:
            # the header may have declared nothing (or something else): check what really came out
            raise VideoTooLarge(f"decoded frame size {w}x{h} is over the limit", self.source)
        rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
        rot = int(round((frame.rotation or 0) / 90)) % 4
        if rot:
            # display matrix angle is counter-clockwise; rot90 with k>0 turns counter-clockwise
            rgb = torch.rot90(rgb, k=rot, dims=(1, 2))
        if self.size is None:
            try:
                self.size = smart_resize(rgb.shape[1], rgb.shape[2], min_pixels=self.lo, max_pixels=self.hi,
                                         max_ratio=self.limits.max_aspect_ratio)
            except ProcessorInputError as e:
                raise UnsupportedMedia(f"unusable frame shape: {e}", self.source) from None
        self.frames[slot] = resize_frames(rgb[None], self.size)[0]


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (T, 3, H, W) -> uint8 (T, 3, h, w): bicubic with antialias, rounded like torchvision."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames.contiguous()
    out = F.interpolate(frames.float(), size=size, mode="bicubic", align_corners=False, antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _decode_targets(container: Any, stream: Any, idx: _Index, want: list[int], sink: _Sink,
                    path: Path, deadline: float) -> bool:
    """Decode the frames whose pts are `want` (sorted); True when all of them came out."""
    slot = {p: i for i, p in enumerate(want)}
    ctx = stream.codec_context
    remaining = list(want)
    got: set[int] = set()

    def key_for(p: int) -> int:
        k = bisect.bisect_right(idx.key_pts, p) - 1
        return idx.key_pts[max(k, 0)]

    def take(frames: Any) -> None:
        for frame in frames:
            p = frame.pts
            if p in slot and p not in got:
                sink.put(slot[p], frame)
                got.add(p)
        while remaining and remaining[0] in got:
            remaining.pop(0)

    def drain() -> None:
        try:
            take(ctx.decode(None))
        except av.FFmpegError:
            pass

    seek_to = key_for(remaining[0])
    while remaining:
        # Jump to the keyframe before the next wanted frame; seek targets only ever increase.
        container.seek(seek_to, stream=stream, backward=True, any_frame=False)
        ctx.flush_buffers()
        jumped = False
        cur_key: int | None = None  # the group of pictures being decoded, by its keyframe
        for packet in container.demux(stream):
            _check_deadline(deadline, path)
            if not packet.size:
                continue
            if packet.is_keyframe and packet.pts is not None:
                cur_key = packet.pts
            # Non-reference frames that are not wanted need not be decoded at all.
            ctx.skip_frame = "DEFAULT" if packet.pts in slot else "NONREF"
            try:
                take(packet.decode())
            except av.FFmpegError:
                continue  # a damaged packet: a wanted frame it held is reported missing below
            if not remaining:
                break
            nxt = key_for(remaining[0])
            if cur_key is not None and nxt > cur_key and nxt > seek_to:
                # Every wanted frame of this group has come out (the decoder emits in pts order,
                # and the next wanted one lies past a later keyframe), so the rest of the group is
                # waste: frames still buffered precede the next keyframe, none is wanted. Jump.
                seek_to, jumped = nxt, True
                break
        ctx.skip_frame = "DEFAULT"
        if not jumped:
            drain()
            break
    return not remaining


def _decode_sequential(path: Path, limits: MediaLimits, deadline: float, threads: int,
                       sink: _Sink | None = None, slots: dict[int, int] | None = None) -> tuple[int, list[float]]:
    """Decode every frame in output order, handing the ones in `slots` (index -> slot) to the
    sink as they come; return the frame count and each frame's time (NaN when unknown)."""
    container, stream = _open(path, limits, threads)
    times: list[float] = []
    tb = stream.time_base or Fraction(1, 90000)
    with container:
        try:
            for frame in container.decode(stream):
                _check_deadline(deadline, path)
                if sink is not None and slots is not None and len(times) in slots:
                    sink.put(slots[len(times)], frame)
                times.append(float(frame.pts * tb) if frame.pts is not None else math.nan)
                if len(times) > limits.max_packets:
                    raise VideoTooLong(f"more than {limits.max_packets} frames", str(path))
        except av.ExitError:
            raise DecodeTimeout("reading the file took longer than the time budget", str(path)) from None
        except av.FFmpegError as e:
            if not times:
                raise VideoDecodeError(f"corrupt video data: {e}", str(path)) from None
    return len(times), times


def load_video(src: str | os.PathLike, budgets: PixelBudgets | None = None,
               limits: MediaLimits | None = None, *, threads: int | None = None, **options: Any) -> VideoInput:
    """Decode, sample and resize one video file. Options are the keys of a message's video item;
    `threads` are FFmpeg frame threads (default: limits.decoder_threads, 0 = every core)."""
    budgets = budgets or PixelBudgets()
    limits = limits or MediaLimits()
    if threads is None:
        threads = limits.decoder_threads or _cores()
    req = options.pop("request", None) or VideoRequest.from_item(options, budgets)
    name = str(src)
    if limits.isolate:
        from .isolate import load_video_isolated

        return load_video_isolated(name, budgets, limits, max(1, threads), {"request": req})
    path = Path(name[7:] if name.startswith("file://") else name)
    deadline = time.monotonic() + limits.decode_timeout_s
    try:
        return _load(path, budgets, limits, req, deadline, max(1, threads))
    except MediaError:
        raise
    except ProcessorInputError:
        raise
    except av.ExitError:  # the I/O timeout given to av.open fired
        raise DecodeTimeout("reading the file took longer than the time budget", name) from None
    except av.FFmpegError as e:
        raise VideoDecodeError(f"corrupt video data: {e}", name) from None
    except MemoryError:
        raise VideoTooLarge("decoding ran out of memory", name) from None
    except (OverflowError, ZeroDivisionError, IndexError, KeyError, RuntimeError, ValueError, TypeError) as e:
        # Hostile metadata can push FFmpeg's values where PyAV or our arithmetic fails: still one
        # clear error for this file, never a crashed worker.
        raise VideoDecodeError(f"unusable video ({type(e).__name__}: {e})", name) from None


def _plan(total: int, fps: float, req: VideoRequest) -> tuple[list[int], float]:
    first, last = frame_range(total, fps, req.video_start, req.video_end)
    count = last - first + 1
    if req.nframes is not None:
        n = round(req.nframes / 2) * 2
        if not 2 <= n <= count:
            raise ProcessorInputError(f"nframes must be in [2, {count}], got {n}")
    else:
        n = sample_count(count, fps, req.fps, req.min_frames, req.max_frames)
    return sample_indices(first, last, n), n / count * fps


def _load(path: Path, budgets: PixelBudgets, limits: MediaLimits, req: VideoRequest,
          deadline: float, threads: int) -> VideoInput:
    container, stream = _open(path, limits, threads)
    with container:
        idx = _index(container, stream, path, limits, deadline)
        total = len(idx.pts)
        if total < 2:
            raise VideoDecodeError(f"the video has {total} frame(s); at least 2 are needed", str(path))
        indices, sample_fps = _plan(total, idx.video_fps, req)
        want = [idx.pts[i] for i in indices]
        sink = _Sink(len(indices), budgets, req, limits, str(path))
        ok = idx.reliable and _decode_targets(container, stream, idx, want, sink, path, deadline)
        t0 = idx.pts[0]
        times = [float((p - t0) * idx.time_base) for p in want]
    if not ok:
        # Timestamps lied: count the frames that really decode, then decode again keeping the
        # sampled ones (converted and resized on the fly, so memory stays bounded).
        total, _ = _decode_sequential(path, limits, deadline, threads)
        if total < 2:
            raise VideoDecodeError(f"the video decodes to {total} frame(s); at least 2 are needed", str(path))
        indices, sample_fps = _plan(total, idx.video_fps, req)
        sink = _Sink(len(indices), budgets, req, limits, str(path))
        _, all_times = _decode_sequential(path, limits, deadline, threads, sink,
                                          {i: k for k, i in enumerate(indices)})
        base = next((t for t in all_times if not math.isnan(t)), 0.0)
        times = [all_times[i] - base if i < len(all_times) and not math.isnan(all_times[i])
                 else i / idx.video_fps for i in indices]
    if any(f is None for f in sink.frames):
        raise VideoDecodeError("some sampled frames could not be decoded", str(path))
    frames_t = torch.stack([f for f in sink.frames if f is not None])
    return VideoInput(frames_t, times, sample_fps, idx.video_fps, total, indices, idx.duration_s, str(path))


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="keye-decode")
        return _POOL


def load_videos(jobs: list[tuple[str, dict[str, Any]]], budgets: PixelBudgets | None = None,
                limits: MediaLimits | None = None) -> list[VideoInput | MediaError]:
    """Decode several videos in parallel threads (PyAV and torch release the GIL).

    Returns, in order, each VideoInput or the MediaError that video raised, so one bad file
    never hides the others.
    """
    limits = limits or MediaLimits()
    workers = limits.workers or _cores()
    # split the cores between the videos decoded at once
    threads = limits.decoder_threads or max(1, _cores() // max(1, min(len(jobs), workers)))
    futures = [_pool(workers).submit(load_video, src, budgets, limits, threads=threads, **dict(opts))
               for src, opts in jobs]
    out: list[VideoInput | MediaError] = []
    for fut in futures:
        try:
            out.append(fut.result())
        except MediaError as e:
            out.append(e)
    return out

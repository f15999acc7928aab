"""Container-level decoding with PyAV: open safely, index packets, decode only wanted frames.

- `index_packets` demuxes the stream once without decoding: every packet's timestamp and key flag.
  That gives the frame count, rate, duration and presentation order exactly, even for variable
  frame rate.
- `decode_targets` seeks to the keyframe before each wanted frame (only when that is ahead of
  where the decoder is), decodes forward, tells the decoder to skip non-reference frames nobody
  wants, and converts to RGB only the wanted frames.
- `decode_sequential` is the fallback when timestamps cannot be trusted: decode in order, count.
- `FrameSink` rotates each wanted frame as its display matrix says and resizes it right away, so
  memory is bounded by the output.
"""

from __future__ import annotations

import bisect
import math
import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import torch

from .config import MediaLimits
from .errors import (
    DecodeTimeout,
    MediaError,
    ProcessorInputError,
    UnsupportedMedia,
    VideoDecodeError,
    VideoTooLarge,
    VideoTooLong,
)
from .resize import resize_frame
from .sizing import smart_resize

# Signatures of containers we accept: a file that starts like one but will not open is corrupt
# or truncated; anything else is simply not a video.
_VIDEO_MAGIC = (
    (4, b"ftyp"),
    (0, b"\x1a\x45\xdf\xa3"),
    (0, b"RIFF"),
    (0, b"FLV"),
    (0, b"OggS"),
    (0, b"\x00\x00\x01\xba"),
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"free"),
    (4, b"wide"),
    (0, b"YUV4MPEG2"),
    (0, b"\x00\x00\x00\x01"),
    (0, b"GIF87a"),
    (0, b"GIF89a"),
)
# A GIF is not among these: an animated one is a clip (FFmpeg's gif demuxer turns each frame's
# delay into its timestamp); one with a single frame is refused as an image once it is indexed.
_IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe")


@dataclass
class PacketIndex:
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
    if any(head[o : o + len(m)] == m for o, m in _VIDEO_MAGIC) or mpeg_ts:
        return VideoDecodeError(f"corrupt or truncated video container: {err}", str(path))
    return UnsupportedMedia(f"not a video file: {err}", str(path))


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def open_video(
    path: Path, limits: MediaLimits, threads: int = 1
) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    if not path.is_file():
        raise UnsupportedMedia("video file not found", str(path))
    size = path.stat().st_size
    if size == 0:
        raise UnsupportedMedia("empty file", str(path))
    if size > limits.max_file_bytes:
        raise VideoTooLarge(f"file of {size} bytes is over the {limits.max_file_bytes} byte limit", str(path))
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore", timeout=max(limits.decode_timeout_s, 1e-3))
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
            raise VideoTooLong(
                f"declared duration {container.duration / 1e6:.1f}s is over {limits.max_duration_s:.0f}s", str(path)
            )
        return container, stream
    except BaseException:
        container.close()
        raise


def check_frame_count(total: int, container: Any, path: Path) -> None:
    """At least 2 frames make a video; a GIF with fewer is a still image."""
    if total >= 2:
        return
    if "gif" in (container.format.name or "").split(","):
        if _a_frame_decodes(path):
            raise UnsupportedMedia("an image (a GIF with a single frame), not a video", str(path))
        raise VideoDecodeError("a corrupt or truncated GIF: no frame decodes", str(path))
    raise VideoDecodeError(f"the video has {total} frame(s); at least 2 are needed", str(path))


def _a_frame_decodes(path: Path) -> bool:
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            return next(iter(container.decode(video=0)), None) is not None
    except (av.FFmpegError, ValueError):
        return False


def check_deadline(deadline: float, path: Path) -> None:
    if time.monotonic() > deadline:
        raise DecodeTimeout("decoding took longer than the time budget", str(path))


def index_packets(container: Any, stream: Any, path: Path, limits: MediaLimits, deadline: float) -> PacketIndex:
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
                check_deadline(deadline, path)
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
    return PacketIndex(order, sorted(keys) or [order[0]], tb, rate, duration, reliable)


class FrameSink:
    """Rotates, resizes and stores the wanted frames as they come out of the decoder."""

    def __init__(
        self, count: int, lo: int, hi: float, size: tuple[int, int] | None, limits: MediaLimits, source: str
    ) -> None:
        """lo/hi: per-frame pixel budget; size: a fixed output size, else fitted on the first frame."""
        self.frames: torch.Tensor | None = None  # (count, 3, h, w) uint8, allocated at the first frame
        self.filled = [False] * count
        self.lo, self.hi, self.size, self.limits, self.source = lo, hi, size, limits, source

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
                self.size = smart_resize(
                    rgb.shape[1],
                    rgb.shape[2],
                    min_pixels=self.lo,
                    max_pixels=self.hi,
                    max_ratio=self.limits.max_aspect_ratio,
                )
            except ProcessorInputError as e:
                raise UnsupportedMedia(f"unusable frame shape: {e}", self.source) from None
        if self.frames is None:
            self.frames = torch.empty(len(self.filled), 3, *self.size, dtype=torch.uint8)
        resize_frame(rgb, self.size, out=self.frames[slot])
        self.filled[slot] = True


def decode_targets(
    container: Any, stream: Any, idx: PacketIndex, want: list[int], sink: FrameSink, path: Path, deadline: float
) -> bool:
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
            check_deadline(deadline, path)
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


def decode_sequential(
    path: Path,
    limits: MediaLimits,
    deadline: float,
    threads: int,
    sink: FrameSink | None = None,
    slots: dict[int, int] | None = None,
) -> tuple[int, list[float]]:
    """Decode every frame in output order, handing the ones in `slots` (index -> slot) to the
    sink as they come; return the frame count and each frame's time (NaN when unknown)."""
    container, stream = open_video(path, limits, threads)
    times: list[float] = []
    tb = stream.time_base or Fraction(1, 90000)
    with container:
        try:
            for frame in container.decode(stream):
                check_deadline(deadline, path)
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

"""Broken and hostile inputs: each gives its typed error (or correct output) within a time bound."""

from __future__ import annotations

import io
import time

import av
import numpy as np
import pytest
import torch
from PIL import Image

from keye_model.processor import (
    DecodeTimeout,
    MediaError,
    MediaLimits,
    UnsupportedMedia,
    VideoDecodeError,
    VideoInput,
    VideoTooLarge,
    VideoTooLong,
    load_video,
)
from keye_model.processor.resize import resize_frames
from tests.support.media import write_audio_only, write_video

BOUND_S = 10.0


def _timed(fn):
    t0 = time.monotonic()
    try:
        return fn()
    finally:
        assert time.monotonic() - t0 < BOUND_S


def _expect(path, err, match=None, **kw):
    with pytest.raises(err, match=match) as info:
        _timed(lambda: load_video(path, **kw))
    assert str(info.value) and info.value.reason  # a human reason, and the file it is about
    return info.value


def _all_frames(path):
    with av.open(str(path)) as c:
        return [torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1) for f in c.decode(video=0)]


def test_random_bytes(tmp_path):
    p = tmp_path / "random.mp4"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    _expect(p, UnsupportedMedia)


def test_png_renamed_mp4(tmp_path):
    p = tmp_path / "image.mp4"
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(buf, format="PNG")
    p.write_bytes(buf.getvalue())
    _expect(p, UnsupportedMedia, "image")


def test_text_file(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("hello, I am not a video\n" * 100)
    _expect(p, UnsupportedMedia)


def test_audio_only(tmp_path):
    _expect(write_audio_only(tmp_path / "a.m4a"), UnsupportedMedia, "audio only")


def test_zero_length_file(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    _expect(p, UnsupportedMedia, "empty")


def test_zero_frames(tmp_path):
    # a video stream that never gets a packet (audio only is muxed)
    p = tmp_path / "none.mkv"
    with av.open(str(p), "w") as out:
        v = out.add_stream("libx264", rate=10)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream("aac", rate=16000)
        for i in range(10):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 16000, i * 1024
            for pkt in a.encode(f):
                out.mux(pkt)
        for pkt in a.encode(None):
            out.mux(pkt)
    _expect(p, VideoDecodeError, "zero frames")


def test_single_frame(tmp_path):
    _expect(write_video(tmp_path / "one.mp4", n=1), VideoDecodeError, "at least 2")


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.mp4", UnsupportedMedia, "not found")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_mp4(tmp_path, keep):
    src = write_video(tmp_path / "full.mp4", n=60)  # index (moov) at the end, as most encoders write it
    data = src.read_bytes()
    p = tmp_path / "cut.mp4"
    p.write_bytes(data[: int(len(data) * keep)])
    _expect(p, VideoDecodeError, "corrupt or truncated")


def test_truncated_faststart_mp4_never_crashes(tmp_path):
    # index at the front: the tail frames are simply missing. Either a clear error or a valid
    # result from the frames that are there.
    src = write_video(tmp_path / "fs.mp4", n=60, container_options={"movflags": "faststart"})
    data = src.read_bytes()
    p = tmp_path / "fs_cut.mp4"
    p.write_bytes(data[: int(len(data) * 0.6)])
    try:
        v = _timed(lambda: load_video(p))
    except MediaError:
        return
    assert isinstance(v, VideoInput) and v.frames.shape[0] >= 4 and v.frames.shape[0] % 2 == 0


def test_corrupt_payload_never_crashes(tmp_path):
    src = write_video(tmp_path / "c.mkv", n=60)
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(1)
    for pos in rng.integers(len(data) // 4, len(data) - 64, 40):
        data[pos : pos + 16] = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
    p = tmp_path / "corrupt.mkv"
    p.write_bytes(bytes(data))
    try:
        v = _timed(lambda: load_video(p))
    except MediaError:
        return
    assert v.frames.dtype == torch.uint8 and v.frames.shape[0] % 2 == 0


def test_huge_declared_dimensions(tmp_path):
    # a YUV4MPEG2 header that declares 16000x9000 frames: refused before any frame is decoded
    p = tmp_path / "huge.y4m"
    p.write_bytes(b"YUV4MPEG2 W16000 H9000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + b"\x00" * 1000)
    _expect(p, VideoTooLarge, "16000x9000")


def test_file_size_limit(tmp_path):
    p = write_video(tmp_path / "v.mp4", n=20)
    _expect(p, VideoTooLarge, "bytes", limits=MediaLimits(max_file_bytes=100))


def test_too_long(tmp_path):
    p = write_video(tmp_path / "v.mp4", n=40, fps=10)  # 4 s
    _expect(p, VideoTooLong, "duration", limits=MediaLimits(max_duration_s=2.0))


def test_decode_time_budget(tmp_path):
    p = write_video(tmp_path / "v.mp4", n=40, fps=10)
    _expect(p, DecodeTimeout, limits=MediaLimits(decode_timeout_s=0.0))


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotated(tmp_path, rotation):
    plain = write_video(tmp_path / "plain.mp4", n=20, w=64, h=48)
    rot = write_video(tmp_path / "rot.mp4", n=20, w=64, h=48, rotation=rotation)
    v = _timed(lambda: load_video(rot))
    frames = torch.stack(_all_frames(plain))[v.indices]
    turned = torch.rot90(frames, k=rotation // 90, dims=(2, 3))
    assert v.frames.shape[-2:] == resize_frames(turned[:1], tuple(v.frames.shape[-2:])).shape[-2:]
    if rotation % 180:
        assert v.frames.shape[-2] > v.frames.shape[-1]  # portrait once displayed
    assert torch.equal(v.frames, resize_frames(turned, tuple(v.frames.shape[-2:])))


@pytest.mark.parametrize(
    "codec,pix_fmt,ext,w,h",
    [
        ("libx264", "yuv420p10le", "mp4", 64, 48),  # 10-bit
        ("libx265", "yuv420p10le", "mkv", 64, 48),
        ("libx264", "yuv444p", "mkv", 63, 47),  # odd sizes
        ("mpeg4", "yuv420p", "avi", 64, 48),
        ("ffv1", "yuv444p10le", "mkv", 65, 33),
    ],
)
def test_unusual_codecs_and_formats_decode_correctly(tmp_path, codec, pix_fmt, ext, w, h):
    p = write_video(tmp_path / f"v.{ext}", n=24, w=w, h=h, fps=8, codec=codec, pix_fmt=pix_fmt)
    v = _timed(lambda: load_video(p))
    frames = _all_frames(p)
    assert len(v.indices) == 6  # 24 frames at 8 fps = 3 s -> 6 at 2 fps
    want = torch.stack([frames[i] for i in v.indices])
    assert torch.equal(v.frames, resize_frames(want, tuple(v.frames.shape[-2:])))
    assert v.frames.shape[-2] % 28 == 0 and v.frames.shape[-1] % 28 == 0


def test_processor_raises_the_typed_error_for_a_bad_video_in_a_batch(processor, tmp_path, sample_clips):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"RIFF" + b"\x00" * 100)

    def conv(src):
        return [{"role": "user", "content": [{"type": "video", "video": str(src)}]}]

    with pytest.raises(MediaError):
        _timed(lambda: processor([conv(sample_clips / "carphone_pristine.mp4"), conv(bad)]))


def test_raw_h264_without_timestamps_falls_back_to_counting(tmp_path):
    # an elementary stream has no container timestamps: frames are counted by decoding
    p = write_video(tmp_path / "raw.h264", n=50, fps=10, options={"bf": "2"})
    v = _timed(lambda: load_video(p))
    frames = _all_frames(p)
    assert v.total_frames == 50 and v.indices == [0, 16, 33, 49]  # 25 fps assumed by FFmpeg
    want = torch.stack([frames[i] for i in v.indices])
    assert torch.equal(v.frames, resize_frames(want, tuple(v.frames.shape[-2:])))


def test_mpeg_ts_with_b_frames(tmp_path):
    p = write_video(tmp_path / "v.ts", n=50, fps=10, options={"bf": "2"})
    v = _timed(lambda: load_video(p))
    frames = _all_frames(p)
    assert v.indices == [0, 5, 11, 16, 22, 27, 33, 38, 44, 49]
    assert v.timestamps == pytest.approx([i / 10 for i in v.indices])
    want = torch.stack([frames[i] for i in v.indices])
    assert torch.equal(v.frames, resize_frames(want, tuple(v.frames.shape[-2:])))


@pytest.mark.parametrize(
    "opts",
    [
        {"fps": 0},
        {"fps": float("nan")},
        {"max_frames": -2},
        {"video_start": "1s"},
        {"fps": 2, "nframes": 4},
        {"min_pixels": True},
        {"fsp": 2},
    ],
)
def test_bad_video_options(tmp_path, opts):
    from keye_model.processor import ProcessorInputError

    p = write_video(tmp_path / "v.mp4", n=20)
    with pytest.raises(ProcessorInputError):
        load_video(p, **opts)


def test_empty_time_range(tmp_path):
    from keye_model.processor import ProcessorInputError

    p = write_video(tmp_path / "v.mp4", n=20, fps=10)
    with pytest.raises(ProcessorInputError, match="empty time range"):
        load_video(p, video_start=5.0, video_end=1.0)


def test_absurd_aspect_ratio(tmp_path):
    p = write_video(tmp_path / "thin.mkv", n=8, w=1000, h=4, codec="ffv1", pix_fmt="yuv444p")
    _expect(p, UnsupportedMedia, "aspect")


def test_frame_size_limit(tmp_path):
    p = write_video(tmp_path / "v.mp4", n=8, w=64, h=48)
    _expect(p, VideoTooLarge, "64x48", limits=MediaLimits(max_side=60))

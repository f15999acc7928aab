"""Decoding in a child process: same result, typed errors cross over, stuck or dying decoders
cost a typed error."""

from __future__ import annotations

import time

import pytest
import torch

from keye_model.processor import (
    DecodeTimeout,
    MediaError,
    MediaLimits,
    UnsupportedMedia,
    VideoInput,
    load_video,
    load_videos,
)
from tests.support.media import write_video

ISOLATED = MediaLimits(isolate=True)


def test_isolated_result_equals_in_process(sample_clips):
    clip = sample_clips / "carphone_pristine.mp4"
    a = load_video(clip, limits=ISOLATED, max_frames=6)
    b = load_video(clip, max_frames=6)
    assert isinstance(a, VideoInput) and a.indices == b.indices and a.timestamps == b.timestamps
    assert torch.equal(a.frames, b.frames)


def test_typed_error_crosses_the_process_boundary(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(UnsupportedMedia) as info:
        load_video(bad, limits=ISOLATED)
    assert info.value.source == str(bad) and "not a video" in info.value.reason


def test_stuck_decoder_is_killed(tmp_path):
    clip = write_video(tmp_path / "v.mp4", n=40)
    limits = MediaLimits(isolate=True, decode_timeout_s=0.0, isolate_grace_s=0.0)
    t0 = time.monotonic()
    with pytest.raises(DecodeTimeout, match="killed"):
        load_video(clip, limits=limits)
    assert time.monotonic() - t0 < 10


def test_memory_cap_gives_a_media_error(tmp_path):
    clip = write_video(tmp_path / "v.mp4", n=40, w=640, h=480)
    with pytest.raises(MediaError):
        load_video(clip, limits=MediaLimits(isolate=True, max_memory_bytes=64 << 20))


def test_isolated_batch(sample_clips, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"")
    res = load_videos([(str(sample_clips / "bikes.mp4"), {"max_frames": 4}), (str(bad), {})], limits=ISOLATED)
    assert isinstance(res[0], VideoInput) and len(res[0].indices) == 4
    assert isinstance(res[1], UnsupportedMedia)

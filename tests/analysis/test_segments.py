"""Shot segmentation: cuts where content changes, times tied to the sampled frame timestamps."""

import pytest
import torch

from analysis.config import SegmentationConfig
from analysis.errors import SegmentationError
from analysis.segments import change_scores, chunk_segments, segment_video

CFG = SegmentationConfig(threshold=0.3, min_shot_s=1.0, max_segments=12)


def synthetic(colours, per_shot=4, fps=2.0, noise=6, seed=0):
    """Shots of flat colours with mild noise; returns frames and timestamps."""
    g = torch.Generator().manual_seed(seed)
    frames = []
    counts = per_shot if isinstance(per_shot, list) else [per_shot] * len(colours)
    for c, n in zip(colours, counts):
        for _ in range(n):
            f = torch.tensor(c, dtype=torch.float).view(3, 1, 1).expand(3, 56, 84)
            f = f + torch.randint(-noise, noise + 1, (3, 56, 84), generator=g)
            frames.append(f.clamp(0, 255).to(torch.uint8))
    ts = [i / fps for i in range(len(frames))]
    return torch.stack(frames), ts


def test_cuts_fall_where_the_content_changes():
    frames, ts = synthetic([(200, 30, 30), (30, 200, 30), (30, 30, 200)])
    scores = change_scores(frames, CFG)
    assert scores.shape == (11,)
    assert [i for i, s in enumerate(scores) if s >= CFG.threshold] == [3, 7]
    segs = segment_video(frames, ts, duration_s=6.0, cfg=CFG)
    assert [s.frames for s in segs] == [tuple(range(0, 4)), tuple(range(4, 8)), tuple(range(8, 12))]
    assert [(s.start_s, s.end_s) for s in segs] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]


def test_min_shot_length_and_max_segments_keep_the_strongest_cuts():
    # 2 s white, 1 s black, 2 s grey: both cuts pass the threshold, the black shot is too short
    frames, ts = synthetic([(250, 250, 250), (0, 0, 0), (120, 120, 120)], per_shot=[4, 2, 4])
    segs = segment_video(frames, ts, 5.0, SegmentationConfig(threshold=0.2, min_shot_s=0.5))
    assert [s.frames[0] for s in segs] == [0, 4, 6]
    segs = segment_video(frames, ts, 5.0, SegmentationConfig(threshold=0.2, min_shot_s=1.5))
    assert [s.frames[0] for s in segs] == [0, 4]  # white->black is the stronger change
    segs = segment_video(frames, ts, 5.0, SegmentationConfig(threshold=0.2, min_shot_s=0.0, max_segments=1))
    assert len(segs) == 1 and segs[0].frames == tuple(range(10))


def test_a_still_video_is_one_shot():
    frames, ts = synthetic([(90, 90, 90)], per_shot=6)
    segs = segment_video(frames, ts, 3.0, CFG)
    assert len(segs) == 1 and (segs[0].start_s, segs[0].end_s) == (0.0, 3.0)


def assert_consistent(segs, ts, duration):
    assert segs[0].start_s == ts[0] and segs[-1].end_s == max(duration, ts[-1])
    covered = [f for s in segs for f in s.frames]
    assert covered == list(range(len(ts)))
    for a, b in zip(segs, segs[1:]):
        assert a.end_s == b.start_s == ts[b.frames[0]]
    for s in segs:
        assert s.start_s == ts[s.frames[0]]
        assert all(s.start_s <= ts[f] <= s.end_s for f in s.frames)
        assert all(ts[f] < s.end_s for f in s.frames) or s is segs[-1]


def test_real_clips_segment_times_match_the_sampled_frames(sample_clips, processor):
    for clip in sample_clips:
        video = processor.load_video(str(clip), max_frames=16, max_pixels=12544, min_pixels=3136)
        segs = segment_video(video.frames, video.timestamps, video.duration_s, CFG)
        assert 1 <= len(segs) <= CFG.max_segments
        assert_consistent(segs, video.timestamps, video.duration_s)
        for s in segs:
            assert s.end_s - s.start_s >= CFG.min_shot_s or len(segs) == 1


def test_chunks_are_whole_shots_in_order_within_the_frame_limit():
    frames, ts = synthetic([(200, 30, 30), (30, 200, 30), (30, 30, 200)], per_shot=5)
    segs = segment_video(frames, ts, 7.5, CFG)
    chunks = chunk_segments(segs, ts, frames_per_pass=6)
    assert [f for c in chunks for f in c.frames] == list(range(15))
    assert all(len(c.frames) <= 6 for c in chunks)
    pieces = [s for c in chunks for s in c.segments]
    assert pieces[0].start_s == 0.0 and pieces[-1].end_s == 7.5
    for a, b in zip(pieces, pieces[1:]):
        assert a.end_s == b.start_s == ts[b.frames[0]]
    for c in chunks:
        assert [s.index for s in c.segments] == list(range(len(c.segments)))
        assert all(segs[g].start_s <= s.start_s < s.end_s <= segs[g].end_s for s, g in zip(c.segments, c.global_index))


@pytest.mark.parametrize(
    "frames, ts, reason",
    [
        (torch.zeros(4, 3, 8, 8), [0, 1, 2, 3], "uint8"),
        (torch.zeros(4, 3, 8, 8, dtype=torch.uint8), [0, 1, 2], "timestamps"),
        (torch.zeros(3, 3, 8, 8, dtype=torch.uint8), [0, 2, 1], "decrease"),
        (torch.zeros(0, 3, 8, 8, dtype=torch.uint8), [], "at least one"),
    ],
)
def test_bad_input_is_refused(frames, ts, reason):
    with pytest.raises(SegmentationError, match=reason):
        segment_video(frames, ts, 1.0, CFG)

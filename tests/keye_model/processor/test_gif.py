"""Animated GIFs are clips: each frame's delay becomes its timestamp; a still GIF is an image error
and a broken one a typed decode error (GIFs written by PIL)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from keye_model.processor import MediaError, UnsupportedMedia, VideoDecodeError, load_video

DELAYS_MS = [100, 200, 50, 300, 100, 250]


def write_gif(path, delays_ms=DELAYS_MS, w: int = 64, h: int = 48):
    frames = [Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8)) for i in range(len(delays_ms))]
    if len(frames) == 1:
        frames[0].save(path)
    else:
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=delays_ms, loop=0)
    return path


def test_an_animated_gif_decodes_as_a_video_timed_by_its_frame_delays(tmp_path):
    v = load_video(write_gif(tmp_path / "clip.gif"), nframes=6)
    starts = np.cumsum([0, *DELAYS_MS[:-1]]) / 1000
    assert v.timestamps == pytest.approx(list(starts))
    assert v.total_frames == 6 and v.duration_s == pytest.approx(sum(DELAYS_MS) / 1000)
    assert v.frames.shape[0] == 6 and v.frames.shape[2] % 28 == 0 and v.frames.shape[3] % 28 == 0
    assert [round(float(f.float().mean())) for f in v.frames] == [40 * i for i in range(6)]


def test_an_animated_gif_goes_through_the_processor(processor, tmp_path):
    src = write_gif(tmp_path / "clip.gif")
    content = [{"type": "video", "video": str(src)}, {"type": "text", "text": "?"}]
    out = processor([[{"role": "user", "content": content}]])
    assert out.pixel_values_videos is not None and out.video_grid_thw.shape == (1, 3)
    assert out.video_timestamps[0][0] == 0.0 and out.video_timestamps[0] == sorted(out.video_timestamps[0])


def test_a_single_frame_gif_is_an_image(tmp_path):
    with pytest.raises(UnsupportedMedia, match="an image"):
        load_video(write_gif(tmp_path / "still.gif", [100]))


@pytest.mark.parametrize("cut", ["header only", "garbage after the header", "garbage after the screen descriptor"])
def test_a_broken_gif_is_a_typed_decode_error(tmp_path, cut):
    data = write_gif(tmp_path / "clip.gif").read_bytes()
    broken = {
        "header only": data[:13],
        "garbage after the header": b"GIF89a" + b"\x00" * 200,
        "garbage after the screen descriptor": data[:30] + bytes(range(256)) * 4,
    }[cut]
    (tmp_path / "broken.gif").write_bytes(broken)
    with pytest.raises(VideoDecodeError) as e:
        load_video(tmp_path / "broken.gif")
    assert e.value.reason and isinstance(e.value, MediaError)


def test_a_truncated_animated_gif_keeps_the_frames_that_decode(tmp_path):
    data = write_gif(tmp_path / "clip.gif").read_bytes()
    (tmp_path / "cut.gif").write_bytes(data[: len(data) // 2])
    v = load_video(tmp_path / "cut.gif")
    assert 2 <= v.total_frames < 6

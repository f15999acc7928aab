"""The reference way to read a video (what keye-vl-utils does through torchvision): decode every
frame to RGB, then sample with the spec's formulas, then resize. Used by tests and bench."""

from __future__ import annotations

import av
import torch

from keye_model.processor.config import PixelBudgets
from keye_model.processor.sizing import sample_count, sample_indices, smart_resize, video_frame_pixels
from keye_model.processor.video import resize_frames


def decode_all_then_sample(path, budgets: PixelBudgets = PixelBudgets()):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1) for f in c.decode(s)]
        fps = float(s.average_rate)
    video = torch.stack(frames)
    total = len(video)
    n = sample_count(total, fps)
    idx = sample_indices(0, total - 1, n)
    lo, hi = video_frame_pixels(n, budgets)
    h, w = smart_resize(video.shape[2], video.shape[3], min_pixels=lo, max_pixels=hi)
    return resize_frames(video[idx], (h, w)), idx, n / total * fps

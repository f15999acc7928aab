"""The reference way to read a video (what keye-vl-utils does through torchvision): decode every
frame to RGB, then sample with the spec's formulas, then resize as torchvision resizes uint8
frames (float32 bicubic with antialias, clamped, rounded). Used by tests and bench."""

from __future__ import annotations

import av
import torch
import torch.nn.functional as F

from keye_model.processor.config import PixelBudgets
from keye_model.processor.sizing import sample_count, sample_indices, smart_resize, video_frame_pixels


def reference_resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """torchvision.transforms.functional.resize(uint8 video, size, BICUBIC, antialias=True)."""
    out = F.interpolate(frames.float(), size=size, mode="bicubic", align_corners=False, antialias=True)
    return out.clamp_(0, 255).round_().to(torch.uint8)


DEFAULT_BUDGETS = PixelBudgets()


def decode_all_then_sample(path, budgets: PixelBudgets = DEFAULT_BUDGETS):
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
    return reference_resize(video[idx], (h, w)), idx, n / total * fps


def max_level_diff(a: torch.Tensor, b: torch.Tensor) -> int:
    assert a.shape == b.shape and a.dtype == b.dtype == torch.uint8
    return int((a.int() - b.int()).abs().max())

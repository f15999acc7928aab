"""The banded-matrix bicubic resize against torchvision's semantics (float32 interpolate with
antialias, clamped, rounded): every pixel within one level, nearly all identical on natural
or random content."""

from __future__ import annotations

import pytest
import torch

from keye_model.processor.resize import resize_frame, resize_frames
from tests.support.video_reference import max_level_diff, reference_resize


def _noise(h: int, w: int, seed: int = 0) -> torch.Tensor:
    # uniform noise is the worst case for bicubic overshoot past 0 and 255
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)


def _edges(h: int, w: int) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    checker = (((y // 3) + (x // 5)) % 2 * 255).to(torch.uint8)
    ramp = (x * 255 // max(w - 1, 1)).to(torch.uint8)
    return torch.stack([checker, ramp, 255 - checker])


@pytest.mark.parametrize(
    "src,dst",
    [
        ((72, 128), (56, 112)),  # mild downscale in both directions
        ((480, 854), (476, 840)),  # the common near-identity case
        ((300, 200), (84, 56)),  # strong downscale: wide antialias kernels
        ((36, 44), (112, 140)),  # upscale
        ((57, 90), (57, 56)),  # one side only
        ((90, 57), (56, 57)),
        ((31, 29), (28, 28)),  # odd sides
        ((28, 2000), (28, 1400)),  # extreme aspect ratio
    ],
)
@pytest.mark.parametrize("content", ["noise", "edges"])
def test_within_one_level_of_torchvision(src, dst, content):
    frame = _noise(*src) if content == "noise" else _edges(*src)
    got = resize_frame(frame, dst)
    ref = reference_resize(frame[None], dst)[0]
    assert got.shape == (3, *dst) and got.dtype == torch.uint8 and got.is_contiguous()
    assert max_level_diff(got, ref) <= 1
    if content == "noise":  # periodic patterns put many exact .5 sums where the order of sums decides
        assert (got != ref).float().mean().item() < 1e-3


def test_strided_input_and_identity():
    hwc = _noise(64, 96, seed=3).permute(1, 2, 0).contiguous()  # decoded RGB comes as (H, W, 3)
    view = hwc.permute(2, 0, 1)
    assert not view.is_contiguous()
    assert torch.equal(resize_frame(view, (56, 84)), resize_frame(view.contiguous(), (56, 84)))
    assert torch.equal(resize_frame(view, (64, 96)), view)
    rotated = torch.rot90(view, k=1, dims=(1, 2))  # what a rotated video hands the resize
    assert max_level_diff(resize_frame(rotated, (84, 56)), reference_resize(rotated[None], (84, 56))[0]) <= 1


def test_batch_matches_single_frames():
    frames = torch.stack([_noise(50, 70, seed=s) for s in range(3)])
    out = resize_frames(frames, (28, 56))
    assert out.shape == (3, 3, 28, 56)
    for f, o in zip(frames, out):
        assert torch.equal(resize_frame(f, (28, 56)), o)


def test_sizes_too_large_for_dense_weights_use_torch_itself():
    frame = _noise(4097, 30, seed=5)  # 4097 x 4116 weights exceed the dense-matrix bound
    assert torch.equal(resize_frame(frame, (4116, 28)), reference_resize(frame[None], (4116, 28))[0])

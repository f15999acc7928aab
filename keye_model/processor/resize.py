"""Antialiased bicubic resize of uint8 frames, as torchvision does it, with banded matrix products.

The reference (keye-vl-utils through torchvision) resizes uint8 frames in float32 with
`interpolate(mode="bicubic", antialias=True)`, then rounds. That kernel is separable: each output
column is a weighted sum of a few neighbouring input columns, then the same along rows. Here the
weights are those very weights (read off torch by resizing unit impulses, so nothing is
re-derived), laid out as small dense blocks along the diagonal of the resampling matrix, and each
pass is a handful of BLAS matrix products instead of torch's scalar loop: 1.7-2x faster on CPU
for 480p-720p frames, one thread.
Only the order of the float32 sums differs, so a rare value that lands on .5 rounds the other way:
every pixel is within 1 of the reference, and almost all are equal.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

BLOCK = 32  # output rows/columns per dense block: small enough that few zero weights are multiplied
_MAX_MATRIX = 1 << 24  # weights of one pass computed densely; larger (absurd sizes) use torch directly
_IMPULSE_CHUNK = 256  # unit impulses resized at a time, to bound the transient memory


@functools.lru_cache(maxsize=64)
def _bands(n_in: int, n_out: int) -> tuple[tuple[int, int, int, int, torch.Tensor], ...]:
    """(out_start, out_end, in_start, in_end, weights[out, in]) blocks of the 1-D resampling matrix."""
    rows = []
    for start in range(0, n_in, _IMPULSE_CHUNK):
        k = min(_IMPULSE_CHUNK, n_in - start)
        impulses = torch.zeros(1, k, 1, n_in)
        impulses[0, torch.arange(k), 0, start + torch.arange(k)] = 1.0
        # each channel's output is one input pixel's weight in every output pixel
        rows.append(
            F.interpolate(impulses, size=(1, n_out), mode="bicubic", align_corners=False, antialias=True)[0, :, 0, :]
        )
    matrix = torch.cat(rows).t()  # (n_out, n_in)
    used = matrix != 0
    bands = []
    for o in range(0, n_out, BLOCK):
        cols = torch.nonzero(used[o : o + BLOCK].any(0)).flatten()
        lo, hi = (int(cols[0]), int(cols[-1]) + 1) if len(cols) else (0, 1)
        bands.append((o, min(o + BLOCK, n_out), lo, hi, matrix[o : o + BLOCK, lo:hi].contiguous()))
    return tuple(bands)


def _torch_resize(frame: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    out = F.interpolate(frame[None].float(), size=size, mode="bicubic", align_corners=False, antialias=True)[0]
    return out.round_().clamp_(0, 255).to(torch.uint8)


def resize_frame(frame: torch.Tensor, size: tuple[int, int], out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (3, H, W), any strides (e.g. a channels-last view of decoded RGB) -> uint8 (3, h, w),
    written into `out` when given (a slot of the video's frame tensor: no later stacking copy)."""
    c, h_in, w_in = frame.shape
    h, w = size
    dst = torch.empty(c, h, w, dtype=torch.uint8) if out is None else out
    if (h_in, w_in) == (h, w):
        return dst.copy_(frame)
    if max(h * h_in, w * w_in) > _MAX_MATRIX:
        return dst.copy_(_torch_resize(frame, size))
    # (H, C, W) rows: the horizontal pass is one product per block over all rows of all channels,
    # and its result, viewed as (H, C*w), makes the vertical pass one product per block too.
    x = frame.permute(1, 0, 2).to(torch.float32, memory_format=torch.contiguous_format).view(h_in * c, w_in)
    if w != w_in:
        y = torch.empty(h_in * c, w)
        for o0, o1, lo, hi, m in _bands(w_in, w):
            torch.mm(x[:, lo:hi], m.t(), out=y[:, o0:o1])
        x = y
    x = x.view(h_in, c * w)
    if h != h_in:
        y = torch.empty(h, c * w)
        for o0, o1, lo, hi, m in _bands(h_in, h):
            torch.mm(m, x[lo:hi], out=y[o0:o1])
        x = y
    # round half to even like torchvision, then one pass converts to bytes and back to (C, h, w)
    return dst.copy_(x.round_().clamp_(0, 255).view(h, c, w).permute(1, 0, 2))


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (T, 3, H, W) -> uint8 (T, 3, h, w), frame by frame (bounded float32 scratch)."""
    out = torch.empty(frames.shape[0], frames.shape[1], *size, dtype=torch.uint8)
    for f, o in zip(frames, out):
        resize_frame(f, size, o)
    return out

"""Rotary positions: the 3D M-RoPE of the language model and the 2D rotary of the vision tower.

cos/sin are computed once per forward here, per token, already assembled into the head layout
the kernels expect (rotate-half: 128 values for the decoder, 72 for the vision tower).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from keye_model.config import KeyeConfig
from keye_model.errors import InputError


# ---- language model: 3D position ids ------------------------------------------------------------
@dataclass
class VisionGrids:
    """The grids of one forward, consumed in order as vision blocks appear in the token stream."""

    image_grid_thw: torch.Tensor | None = None  # (n_images, 3) raw patches
    video_grid_thw: torch.Tensor | None = None  # (n_videos, 3)
    second_per_grid_ts: torch.Tensor | None = None  # (n_videos,) seconds between sampled frames
    image_index: int = 0
    video_index: int = 0

    def next(self, is_video: bool) -> tuple[tuple[int, int, int], float]:
        grids = self.video_grid_thw if is_video else self.image_grid_thw
        idx = self.video_index if is_video else self.image_index
        kind = "video" if is_video else "image"
        if grids is None or idx >= len(grids):
            raise InputError(f"the prompt holds more {kind} blocks than {kind}_grid_thw rows")
        t, h, w = (int(x) for x in grids[idx])
        if is_video:
            self.video_index += 1
            if self.second_per_grid_ts is None:
                seconds = 1.0  # the reference's default when the processor gave no timing
            else:
                # float32 like the processor's tensor, so the temporal index floors identically
                seconds = torch.as_tensor(self.second_per_grid_ts, dtype=torch.float32).reshape(-1)[idx].item()
        else:
            self.image_index += 1
            seconds = 0.0
        return (t, h, w), seconds


def mrope_positions(
    tokens: Sequence[int], grids: VisionGrids, cfg: KeyeConfig, start: int = 0
) -> tuple[torch.Tensor, int]:
    """Position ids (3, n) for one sequence's real tokens, starting at counter `start`.

    Returns the ids and the next free position (max + 1): text after the prompt, and every
    decoded token, continues from there. Vision blocks take (t, h, w) indices over the merged grid.
    """
    merge = cfg.vision.spatial_merge_size
    tps = cfg.vision.tokens_per_second
    pieces: list[torch.Tensor] = []
    n = len(tokens)
    nxt = start
    i = 0
    text_from = 0
    while i < n:
        tok = tokens[i]
        if tok != cfg.image_token_id and tok != cfg.video_token_id:
            i += 1
            continue
        if i > text_from:  # text run before the block
            pieces.append(torch.arange(nxt, nxt + i - text_from).expand(3, -1))
            nxt += i - text_from
        (t, h, w), seconds = grids.next(tok == cfg.video_token_id)
        if h % merge or w % merge:
            raise InputError(f"grid ({t}, {h}, {w}): heights and widths must be multiples of {merge}")
        gh, gw = h // merge, w // merge
        length = t * gh * gw
        block = tokens[i : i + length]
        if len(block) < length or any(x != tok for x in block):
            raise InputError(f"a vision block at token {i} should hold {length} pad tokens for grid ({t}, {h}, {w})")
        # int64 * python float -> float32, then floor: the reference's exact arithmetic
        t_idx = (torch.arange(t).view(-1, 1).expand(-1, gh * gw) * seconds * tps).long().flatten()
        h_idx = torch.arange(gh).view(1, -1, 1).expand(t, -1, gw).flatten()
        w_idx = torch.arange(gw).view(1, 1, -1).expand(t, gh, -1).flatten()
        ids = torch.stack([t_idx, h_idx, w_idx]) + nxt
        pieces.append(ids)
        nxt = int(ids.max()) + 1
        i += length
        text_from = i
    if n > text_from:
        pieces.append(torch.arange(nxt, nxt + n - text_from).expand(3, -1))
        nxt += n - text_from
    if not pieces:
        return torch.zeros(3, 0, dtype=torch.long), nxt
    return torch.cat(pieces, dim=1), nxt


# ---- language model: cos/sin --------------------------------------------------------------------
def text_inv_freq(cfg: KeyeConfig) -> torch.Tensor:
    d = cfg.head_dim
    return 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))


def mrope_cos_sin(
    positions: torch.Tensor, cfg: KeyeConfig, dtype: torch.dtype, inv_freq: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """positions (3, T) -> cos, sin (T, head_dim) in `dtype`.

    Frequency j takes its angle from row 0 (temporal), 1 (height) or 2 (width) according to the
    mrope sections [16, 24, 24]; the same assignment repeats on the second half (rotate-half).
    """
    if inv_freq is None:
        inv_freq = text_inv_freq(cfg)
    inv_freq = inv_freq.to(positions.device)
    rows = torch.repeat_interleave(
        torch.arange(len(cfg.mrope_section), device=positions.device),
        torch.tensor(cfg.mrope_section, device=positions.device),
    )  # (head_dim/2,) row of each frequency
    pos = positions.float()[rows]  # (head_dim/2, T)
    angles = (pos * inv_freq[:, None]).T  # (T, head_dim/2), float32 like the reference
    emb = torch.cat([angles, angles], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


# ---- vision tower: 2D rotary --------------------------------------------------------------------
def vision_cos_sin(
    grids: Sequence[tuple[int, int, int]], head_dim: int, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (T, head_dim) float32 for packed patches in row-major order, frame after frame.

    Channels [0, d/4) rotate with the row angle, [d/4, d/2) with the column angle, and the
    second half of the head repeats them (rotate-half pairs channel c with c + d/2).
    """
    dim = head_dim // 2
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float, device=device) / dim))
    rows, cols = [], []
    for t, h, w in grids:
        idx = torch.arange(t * h * w, device=device) % (h * w)
        rows.append(idx // w)
        cols.append(idx % w)
    r = torch.cat(rows).float()
    c = torch.cat(cols).float()
    angles = torch.cat([r[:, None] * inv_freq, c[:, None] * inv_freq], dim=-1)  # (T, d/2)
    emb = torch.cat([angles, angles], dim=-1)
    return emb.cos(), emb.sin()

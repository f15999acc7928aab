"""The vision tower's 2D rotary: rotate-half over the full head_dim 72 (row then column angles)."""

from __future__ import annotations

from .checks import require, require_float
from .qk_norm_rope import rotate_half


def _check(q, k, cos, sin) -> None:
    for name, t in (("q", q), ("k", k), ("cos", cos), ("sin", sin)):
        require_float(name, t)
    require(
        q.dim() == 3 and k.dim() == 3,
        f"q and k must be (T, heads, head_dim), got {tuple(q.shape)} and {tuple(k.shape)}",
    )
    t, _, d = q.shape
    require(k.shape[0] == t and k.shape[2] == d, f"k must be ({t}, H, {d}) to match q, got {tuple(k.shape)}")
    require(d % 2 == 0, f"head_dim must be even for rotate-half, got {d}")
    for name, c in (("cos", cos), ("sin", sin)):
        require(tuple(c.shape) == (t, d), f"{name} must have shape ({t}, {d}), got {tuple(c.shape)}")


def vision_rope_torch(q, k, cos, sin):
    # The reference computes the rotation in float32 and casts back.
    cos_h = cos.unsqueeze(1).float()
    sin_h = sin.unsqueeze(1).float()
    qf, kf = q.float(), k.float()
    q_out = qf * cos_h + rotate_half(qf) * sin_h
    k_out = kf * cos_h + rotate_half(kf) * sin_h
    return q_out.to(q.dtype), k_out.to(k.dtype)

"""How decoder attention reaches its keys: one `Attend` object per forward pass.

- `PackedCausal`: prefill without a cache; packed sequences, segments never see each other.
- `CachedPrefill`: new tokens are written into KV-cache rows after what the rows already hold
  (a shared prefix), then attend to the whole row (bottom-right causal).
- `CachedDecode`: one new token per cache row, written at the row's length, then decode attention.
"""

from __future__ import annotations

from typing import Protocol

import torch

from kernels import decode_attention, varlen_attention
from keye_model.kv_cache import KVCache


class Attend(Protocol):
    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor: ...


def cu_seqlens(lengths: list[int], device) -> torch.Tensor:
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.tensor(lengths, dtype=torch.int64).cumsum(0)
    return cu.to(device)


class PackedCausal:
    def __init__(self, lengths: list[int], device) -> None:
        self.cu = cu_seqlens(lengths, device)
        self.max_len = max(lengths, default=0)

    def __call__(self, layer, q, k, v, scale):
        return varlen_attention(q, k, v, self.cu, self.cu, self.max_len, self.max_len, causal=True, scale=scale)


class CachedPrefill:
    """Segment i (new_lengths[i] tokens) goes to cache row rows[i] after its current length."""

    def __init__(self, cache: KVCache, rows: list[int], new_lengths: list[int]) -> None:
        dev = cache.device
        self.cache = cache
        starts = [int(cache.lengths[r]) for r in rows]
        self.total = [s + n for s, n in zip(starts, new_lengths)]
        if max(self.total, default=0) > cache.max_len:
            raise ValueError(f"KV cache holds {cache.max_len} positions, {max(self.total)} needed")
        self.row_idx = torch.cat([torch.full((n,), r, dtype=torch.long) for r, n in zip(rows, new_lengths)]).to(dev)
        self.pos_idx = torch.cat([torch.arange(s, s + n) for s, n in zip(starts, new_lengths)]).to(dev)
        self.no_prefix = all(s == 0 for s in starts)
        if not self.no_prefix:  # gather each row's full history, packed, for varlen attention
            self.g_row = torch.cat([torch.full((t,), r, dtype=torch.long) for r, t in zip(rows, self.total)]).to(dev)
            self.g_pos = torch.cat([torch.arange(t) for t in self.total]).to(dev)
        self.cu_q = cu_seqlens(new_lengths, dev)
        self.cu_k = cu_seqlens(self.total, dev)
        self.max_q, self.max_k = max(new_lengths, default=0), max(self.total, default=0)

    def __call__(self, layer, q, k, v, scale):
        kc, vc = self.cache.k[layer], self.cache.v[layer]
        kc[self.row_idx, self.pos_idx] = k.to(kc.dtype)
        vc[self.row_idx, self.pos_idx] = v.to(vc.dtype)
        if not self.no_prefix:
            k, v = kc[self.g_row, self.g_pos], vc[self.g_row, self.g_pos]
        return varlen_attention(q, k, v, self.cu_q, self.cu_k, self.max_q, self.max_k, causal=True, scale=scale)


class CachedDecode:
    """One token for every cache row, at position lengths[row] (the caller bumps lengths after).

    Built once per step (the row lengths are fixed for it); attention sees only the first
    max(lengths) + 1 cache positions, not the whole preallocation.
    """

    def __init__(self, cache: KVCache) -> None:
        lengths = cache.lengths  # on the CPU: no device sync
        top = int(lengths.max())
        if top >= cache.max_len:
            raise ValueError(f"KV cache is full ({cache.max_len} positions)")
        self.cache = cache
        self.span = top + 1
        # Rows of one length (a batch of equal prompts, batch 1) write one cache column: a slice copy.
        self.column = top if bool((lengths == top).all()) else None
        dev = cache.device
        if self.column is None:  # rows of several lengths: each writes its own position
            self.rows = torch.arange(cache.batch, device=dev)
            self.pos = lengths.to(dev, torch.long)
        self.seqlens = (lengths + 1).to(dev, torch.int32)

    def __call__(self, layer, q, k, v, scale):
        kc, vc = self.cache.k[layer], self.cache.v[layer]
        if self.column is not None:
            kc[:, self.column] = k
            vc[:, self.column] = v
        else:
            kc[self.rows, self.pos] = k.to(kc.dtype)
            vc[self.rows, self.pos] = v.to(vc.dtype)
        return decode_attention(q, kc[:, : self.span], vc[:, : self.span], self.seqlens, scale)

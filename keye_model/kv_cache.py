"""Preallocated KV cache: per layer (B, S_max, Hkv, D) keys and values, one length per row."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class KVCache:
    k: list[torch.Tensor]
    v: list[torch.Tensor]
    lengths: torch.Tensor  # (B,) int64 on CPU: valid positions per row

    @classmethod
    def allocate(cls, layers: int, batch: int, max_len: int, kv_heads: int, head_dim: int, dtype, device) -> KVCache:
        shape = (batch, max_len, kv_heads, head_dim)
        k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        return cls(k, v, torch.zeros(batch, dtype=torch.long))

    @property
    def batch(self) -> int:
        return self.k[0].shape[0]

    @property
    def max_len(self) -> int:
        return self.k[0].shape[1]

    @property
    def device(self) -> torch.device:
        return self.k[0].device

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    def copy_rows(self, src: KVCache, src_row: int, dst_rows: list[int]) -> None:
        """Fork: the first src.lengths[src_row] positions of one row into several rows of self."""
        n = int(src.lengths[src_row])
        if n > self.max_len:
            raise ValueError(f"a {n}-token prefix does not fit a {self.max_len}-position cache")
        for layer in range(len(self.k)):
            for cache, source in ((self.k, src.k), (self.v, src.v)):
                cache[layer][dst_rows, :n] = source[layer][src_row, :n].unsqueeze(0)
        self.lengths[dst_rows] = n

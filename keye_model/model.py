"""The whole Keye-VL model: vision tower -> projector -> Qwen3 decoder -> lm_head.

Batches arrive left-padded (B, L) like the official processor's output; inside, every forward
runs on packed real tokens (padding stripped, cu_seqlens), so a padded batch computes exactly
what each sequence computes alone. Positions restart at 0 on each sequence's first real token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from keye_model.attention import Attend, PackedCausal
from keye_model.config import KeyeConfig
from keye_model.decoder import Decoder
from keye_model.errors import InputError
from keye_model.layout import save
from keye_model.projector import Projector
from keye_model.rope import VisionGrids, mrope_cos_sin, mrope_positions, text_inv_freq
from keye_model.vision import VisionModel

VISION_KEYS = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts")


@dataclass
class Packed:
    """Real tokens of a batch, packed: what one prefill needs."""

    embeds: torch.Tensor  # (T, hidden)
    positions: torch.Tensor  # (3, T)
    lengths: list[int]  # real tokens per sequence
    next_positions: list[int]  # per sequence: max position + 1 (decoding continues here)
    tokens: list[list[int]]  # real token ids per sequence
    mask: torch.Tensor  # (B, L) bool, where the real tokens sit in the padded layout


def _grids(x: Any, name: str) -> torch.Tensor | None:
    if x is None:
        return None
    g = torch.as_tensor(x).reshape(-1, 3).long().cpu()
    if (g <= 0).any():
        raise InputError(f"{name} has a non-positive entry: {g.tolist()}")
    return g


class KeyeModel(nn.Module):
    inv_freq: torch.Tensor  # the buffer registered in __init__

    def __init__(self, cfg: KeyeConfig) -> None:
        super().__init__()
        self.config = cfg
        self.mlp_AR = Projector(cfg)
        self.visual = VisionModel(cfg.vision)
        self.model = Decoder(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.register_buffer("inv_freq", text_inv_freq(cfg), persistent=False)

    @property
    def dtype(self) -> torch.dtype:  # the decoder's (training may swap the lm_head for its used rows)
        return self.model.norm.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.norm.weight.device

    # ---- vision --------------------------------------------------------------------------------
    def encode_vision(
        self, pixel_values=None, image_grid_thw=None, pixel_values_videos=None, video_grid_thw=None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Images and videos in ONE packed tower pass; returns LM-width embeddings of each kind."""
        parts: list[tuple[torch.Tensor, torch.Tensor]] = []
        for pix, grid, kind in (
            (pixel_values, image_grid_thw, "image"),
            (pixel_values_videos, video_grid_thw, "video"),
        ):
            if pix is None:
                continue
            g = _grids(grid, f"{kind}_grid_thw")
            if g is None:
                raise InputError(f"{kind} pixels were given without {kind}_grid_thw")
            m = self.config.vision.spatial_merge_size
            if ((g[:, 1:] % m) != 0).any():
                raise InputError(f"{kind}_grid_thw heights and widths must be multiples of {m}: {g.tolist()}")
            p = self.config.vision.patch_size
            if pix.dim() == 2:  # flattened patches (N, C*p*p)
                pix = pix.view(pix.shape[0], self.config.vision.num_channels, p, p)
            if int(g.prod(-1).sum()) != pix.shape[0]:
                raise InputError(f"{kind} grids cover {int(g.prod(-1).sum())} patches but {pix.shape[0]} were given")
            parts.append((pix, g))
        if not parts:
            return None, None
        pix = torch.cat([p.to(self.device) for p, _ in parts])
        grids = [tuple(int(x) for x in row) for _, g in parts for row in g]
        feats = self.mlp_AR(self.visual(pix, grids), grids)
        m2 = self.config.vision.spatial_merge_size**2
        counts = [int(g.prod(-1).sum()) // m2 for _, g in parts]
        split = list(feats.split(counts))
        img = split.pop(0) if pixel_values is not None else None
        vid = split.pop(0) if pixel_values_videos is not None else None
        return img, vid

    # ---- packing -------------------------------------------------------------------------------
    def pack(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values=None,
        image_grid_thw=None,
        pixel_values_videos=None,
        video_grid_thw=None,
        second_per_grid_ts=None,
        start_positions: list[int] | None = None,
    ) -> Packed:
        cfg = self.config
        input_ids = torch.as_tensor(input_ids)
        if input_ids.dim() == 1:
            input_ids = input_ids[None]
        if input_ids.dim() != 2:
            raise InputError(f"input_ids must be (batch, sequence), got shape {tuple(input_ids.shape)}")
        if attention_mask is None:
            mask = torch.ones_like(input_ids, dtype=torch.bool)
        else:
            mask = torch.as_tensor(attention_mask).reshape(input_ids.shape).bool()
        ids_cpu, mask_cpu = input_ids.cpu(), mask.cpu()
        if int(ids_cpu.min()) < 0 or int(ids_cpu.max()) >= cfg.vocab_size:
            raise InputError(f"input_ids must lie in [0, {cfg.vocab_size})")
        tokens = [row[m].tolist() for row, m in zip(ids_cpu, mask_cpu)]
        starts = start_positions or [0] * len(tokens)
        grids = VisionGrids(
            _grids(image_grid_thw, "image_grid_thw"), _grids(video_grid_thw, "video_grid_thw"), second_per_grid_ts
        )
        pos, nxt = [], []
        for toks, s in zip(tokens, starts):
            p, n = mrope_positions(toks, grids, cfg, start=s)
            pos.append(p)
            nxt.append(n)
        flat = ids_cpu[mask_cpu].to(self.device)
        embeds = self.model.embed_tokens(flat)
        img, vid = self.encode_vision(pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw)
        for feats, tok, kind in ((img, cfg.image_token_id, "image"), (vid, cfg.video_token_id, "video")):
            where = flat == tok
            n_tok = int(where.sum())
            n_feat = 0 if feats is None else feats.shape[0]
            if n_tok != n_feat:
                raise InputError(f"{kind} tokens and features do not match: {n_tok} tokens, {n_feat} features")
            if feats is not None and n_feat:  # n_feat > 0 only when feats is a tensor
                embeds[where] = feats.to(embeds.dtype)
        return Packed(embeds, torch.cat(pos, dim=1).to(self.device), [len(t) for t in tokens], nxt, tokens, mask_cpu)

    # ---- decoder -------------------------------------------------------------------------------
    def rope(self, positions: torch.Tensor):
        return mrope_cos_sin(positions, self.config, self.dtype, self.inv_freq)

    def run(self, embeds: torch.Tensor, positions: torch.Tensor, attend: Attend) -> torch.Tensor:
        cos, sin = self.rope(positions)
        return self.model(embeds, cos, sin, attend)

    def hidden_states(self, input_ids, attention_mask=None, **vision: Any) -> torch.Tensor:
        """Final-normed hidden states (batch, sequence, hidden); zeros at padding. With
        `lm_head.weight` this feeds kernels.fused_linear_cross_entropy without (N, V) logits."""
        packed, hidden = self._packed_hidden(input_ids, attention_mask, vision)
        return self._unpack(hidden, packed.mask)

    def forward(self, input_ids, attention_mask=None, logits_to_keep: int = 0, **vision: Any) -> torch.Tensor:
        """Logits (batch, sequence, vocab); zeros where attention_mask marks padding.

        logits_to_keep=n > 0 returns only each row's last n positions, (batch, n, vocab): long
        prompts never materialize (sequence x 151,936) logits. Rows shorter than n are left-padded
        with zeros.
        """
        packed, hidden = self._packed_hidden(input_ids, attention_mask, vision)
        if logits_to_keep <= 0:
            return self._unpack(self.lm_head(hidden), packed.mask)
        n = logits_to_keep
        keep = torch.zeros(len(packed.lengths), n, dtype=torch.bool)
        rows = []
        for i, seg in enumerate(hidden.split(packed.lengths)):
            rows.append(seg[-n:])
            keep[i, n - min(n, seg.shape[0]) :] = True
        return self._unpack(self.lm_head(torch.cat(rows)), keep)

    def _packed_hidden(self, input_ids, attention_mask, vision: dict[str, Any]) -> tuple[Packed, torch.Tensor]:
        unknown = set(vision) - set(VISION_KEYS)
        if unknown:
            raise InputError(f"unexpected model inputs: {sorted(unknown)}")
        packed = self.pack(input_ids, attention_mask, **vision)
        return packed, self.run(packed.embeds, packed.positions, PackedCausal(packed.lengths, self.device))

    @staticmethod
    def _unpack(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = values.new_zeros(*mask.shape, values.shape[-1])
        out[mask.to(out.device)] = values
        return out

    # ---- embeddings ----------------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, input_ids, attention_mask=None, **vision: Any) -> torch.Tensor:
        """One L2-normalized vector (hidden_size) per sequence, in one space for text, images, videos.

        Pooling: mean of the final-normed last-layer hidden states over the sequence's real
        tokens (the processor's prompt around the media included), computed in float32.
        """
        packed, hidden = self._packed_hidden(input_ids, attention_mask, vision)
        pooled = torch.stack([h.float().mean(0) for h in hidden.split(packed.lengths)])
        return F.normalize(pooled, dim=-1)

    # ---- generation ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        input_ids,
        attention_mask=None,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        stop_token_ids=None,
        seed: int | None = None,
        logits_processors=None,
        **vision: Any,
    ) -> torch.Tensor:
        """New token ids (batch, n), one row per input, padded with 151643 after a stop."""
        from keye_model.engine import Engine, SamplingParams

        params = SamplingParams(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            repetition_penalty=repetition_penalty,
            stop_token_ids=tuple(stop_token_ids) if stop_token_ids is not None else SamplingParams().stop_token_ids,
            seed=seed,
        )
        result = Engine(self).generate(
            dict(input_ids=input_ids, attention_mask=attention_mask, **vision), params, logits_processors
        )
        return result.padded(self.config.pad_token_id)

    # ---- checkpoint ----------------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path, max_shard_size: int = 5 * 2**30) -> None:
        save(self, folder, max_shard_size=max_shard_size)

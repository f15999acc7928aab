"""Multimodal prompts built like the processor builds them, for the model tests."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

VSTART, VEND, IMG, VID = 151652, 151653, 151655, 151656


@dataclass
class Prompt:
    """Token ids plus the media tensors, in the processor's output layout (one sequence)."""

    ids: list[int] = field(default_factory=list)
    images: list[tuple[torch.Tensor, tuple[int, int, int]]] = field(default_factory=list)
    videos: list[tuple[torch.Tensor, tuple[int, int, int], float]] = field(default_factory=list)

    def text(self, *ids: int) -> Prompt:
        self.ids += list(ids)
        return self

    def image(self, h: int, w: int, seed: int) -> Prompt:
        g = torch.Generator().manual_seed(seed)
        self.images.append((torch.randn(h * w, 3, 14, 14, generator=g), (1, h, w)))
        self.ids += [VSTART] + [IMG] * (h * w // 4) + [VEND]
        return self

    def video(self, t: int, h: int, w: int, seconds: float, seed: int) -> Prompt:
        g = torch.Generator().manual_seed(seed)
        self.videos.append((torch.randn(t * h * w, 3, 14, 14, generator=g), (t, h, w), seconds))
        self.ids += [VSTART] + [VID] * (t * h * w // 4) + [VEND]
        return self


def batch(prompts: list[Prompt], pad_id: int = 151643) -> dict:
    """Left-padded batch with the processor's keys; media of all rows concatenated in order."""
    width = max(len(p.ids) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p.ids) :] = torch.tensor(p.ids)
        mask[i, width - len(p.ids) :] = 1
    out: dict = {"input_ids": ids, "attention_mask": mask}
    imgs = [im for p in prompts for im in p.images]
    vids = [v for p in prompts for v in p.videos]
    if imgs:
        out["pixel_values"] = torch.cat([x for x, _ in imgs])
        out["image_grid_thw"] = torch.tensor([g for _, g in imgs])
    if vids:
        out["pixel_values_videos"] = torch.cat([x for x, _, _ in vids])
        out["video_grid_thw"] = torch.tensor([g for _, g, _ in vids])
        out["second_per_grid_ts"] = torch.tensor([s for _, _, s in vids], dtype=torch.float32)
    return out


def text_prompt(seed: int, n: int) -> Prompt:
    g = torch.Generator().manual_seed(seed)
    return Prompt().text(*torch.randint(0, 151000, (n,), generator=g).tolist())

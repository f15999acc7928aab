"""A contrastive objective: a video's embedding near its caption's, away from the batch's other captions.

    pairs = caption_pairs(processor, corpus_examples(processor, cfg, folder))
    train_full(model, pairs, FullConfig(batch_size=8), Contrastive(temperature=0.07))

Both sides go through the model's own embedding path (KeyeModel.embed: mean-pooled final hidden
states, L2-normalized), with gradients: a video is embedded like the analyzer embeds it (each visual
pass's prompt prefix, the passes' vectors averaged and normalized again), a caption like a search
query (keye.analysis.embedding.query_inputs). The loss is the symmetric InfoNCE over the batch
(video->caption and caption->video cross-entropy on scaled cosine similarities, the batch's other
pairs as negatives) with a learnable (or fixed) temperature. Under data parallelism each rank's
negatives are its own slice of the batch.

SupervisedAndContrastive trains both at once: its items (MixedItem) are supervised examples each
carrying a few caption pairs, so every micro-batch holds answers to learn and a contrastive batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from keye.analysis.embedding import query_inputs
from keye_model.model import KeyeModel
from training.dataset import ChunkPrompt, Example
from training.errors import TrainConfigError
from training.full import Supervised

MAX_SCALE = 100.0  # the similarity scale's ceiling (temperature 0.01): keeps a learned one from diverging

# KeyeModel.embed runs under no_grad for serving; training needs the very same pooling with gradients.
_embed = KeyeModel.embed.__wrapped__


@dataclass
class VideoCaption:
    video_id: str
    passes: list[ChunkPrompt]  # the analyzer's visual passes of the video
    text_ids: torch.Tensor  # (1, L) the caption framed as a query
    text_mask: torch.Tensor
    caption: str = ""


def caption_pairs(processor, made) -> list[VideoCaption]:
    """One pair per clip of corpus_examples' output (its decoded passes and its caption)."""
    out = []
    for vid, passes in made.clips.items():
        ids, mask = query_inputs(processor, made.captions[vid])
        out.append(VideoCaption(vid, passes, ids, mask, made.captions[vid]))
    return out


def video_vectors(model: nn.Module, pairs: Sequence[VideoCaption]) -> torch.Tensor:
    rows = []
    for p in pairs:
        per_pass = torch.cat([_embed(model, c.ids[None], **c.vision) for c in p.passes])
        rows.append(F.normalize(per_pass.mean(0), dim=-1))
    return torch.stack(rows)


def text_vectors(model: nn.Module, pairs: Sequence[VideoCaption]) -> torch.Tensor:
    return torch.cat([_embed(model, p.text_ids, p.text_mask) for p in pairs])


class Contrastive(nn.Module):
    def __init__(self, temperature: float = 0.07, learnable: bool = True) -> None:
        super().__init__()
        if not 1 / MAX_SCALE <= temperature <= 1.0:
            raise TrainConfigError(f"temperature must lie in [{1 / MAX_SCALE}, 1], got {temperature}")
        log_scale = torch.tensor(math.log(1 / temperature))
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def temperature(self) -> float:
        return float(1 / self.scale().detach())

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=MAX_SCALE)

    def weight(self, batch: Sequence[VideoCaption]) -> float:
        return float(len(batch))

    def logits(self, model: nn.Module, batch: Sequence[VideoCaption]) -> torch.Tensor:
        """(videos x captions) scaled cosine similarities."""
        v, t = video_vectors(model, batch), text_vectors(model, batch)
        return self.scale() * v @ t.t()

    def loss_sum(self, model: nn.Module, batch: Sequence[VideoCaption]) -> torch.Tensor:
        logits = self.logits(model, batch).float()
        match = torch.arange(len(batch), device=logits.device)
        video_to_text = F.cross_entropy(logits, match, reduction="sum")
        return 0.5 * (video_to_text + F.cross_entropy(logits.t(), match, reduction="sum"))


@torch.no_grad()
def caption_ranks(model: nn.Module, pairs: Sequence[VideoCaption]) -> list[int]:
    """For each video, the rank (0 = first) of its own caption among all the pairs' captions."""
    sims = video_vectors(model, pairs) @ text_vectors(model, pairs).t()
    own = sims.diagonal()[:, None]
    return (sims > own).sum(1).tolist()


# ---- both objectives in one step ----------------------------------------------------------------


@dataclass
class MixedItem:
    """One supervised example and the caption pairs it brings to its micro-batch's contrastive batch."""

    example: Example
    pairs: tuple[VideoCaption, ...]


def mixed_items(examples: Sequence[Example], pairs: Sequence[VideoCaption], pairs_per_item: int,
                seed: int) -> list[MixedItem]:
    """Each example with `pairs_per_item` pairs dealt from seeded permutations of `pairs`, so every clip
    serves about equally often; a micro-batch of b items then holds b examples and b * pairs_per_item pairs."""
    gen = torch.Generator().manual_seed(seed)
    dealt: list[int] = []
    while pairs and len(dealt) < len(examples) * pairs_per_item:
        dealt += torch.randperm(len(pairs), generator=gen).tolist()
    return [MixedItem(ex, tuple(pairs[j] for j in dealt[i * pairs_per_item:(i + 1) * pairs_per_item]))
            for i, ex in enumerate(examples)]


def distinct_pairs(items: Sequence[MixedItem]) -> list[VideoCaption]:
    """The micro-batch's pairs, one per caption: a clip dealt twice, or a near-duplicate sharing its
    caption, would be its own negative."""
    seen: dict[str, VideoCaption] = {}
    for item in items:
        for p in item.pairs:
            seen.setdefault(p.caption, p)
    return list(seen.values())


class SupervisedAndContrastive(nn.Module):
    """A micro-batch's answer NLL plus `contrastive_weight` times the InfoNCE of its distinct pairs.

    train_full divides a step's loss sums by the weights of its micro-batches; the weight here is the
    answer weight alone (answer tokens x example weight), so the NLL part is the mean per answer token,
    and the InfoNCE sum is scaled by answer weight / pairs to enter as the mean per pair (each micro-batch
    weighted by its share of the step's answer tokens). With one micro-batch a step, the loss is exactly
    mean answer NLL + contrastive_weight x mean InfoNCE; `parts` keeps those two means per micro-batch."""

    def __init__(self, contrastive_weight: float = 1.0, temperature: float = 0.07, sampled_vocab: int = 0) -> None:
        super().__init__()
        if contrastive_weight < 0:
            raise TrainConfigError(f"contrastive_weight must be >= 0, got {contrastive_weight}")
        self.supervised = Supervised(sampled_vocab)
        self.contrastive = Contrastive(temperature)
        self.contrastive_weight = contrastive_weight
        self.parts: list[tuple[float, float | None]] = []  # (answer NLL, InfoNCE) means, appended per micro-batch

    def weight(self, batch: Sequence[MixedItem]) -> float:
        return self.supervised.weight([it.example for it in batch])

    def loss_sum(self, model: nn.Module, batch: Sequence[MixedItem]) -> torch.Tensor:
        examples = [it.example for it in batch]
        answer_w = max(self.supervised.weight(examples), 1e-8)
        loss = self.supervised.loss_sum(model, examples)
        nll, nce = float(loss.detach()) / answer_w, None
        pairs = distinct_pairs(batch)
        if self.contrastive_weight and len(pairs) > 1:  # one pair has no negative: nothing to learn
            pair_loss = self.contrastive.loss_sum(model, pairs) / len(pairs)
            nce = float(pair_loss.detach())
            loss = loss + self.contrastive_weight * answer_w * pair_loss
        self.parts.append((nll, nce))
        return loss

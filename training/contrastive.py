"""A contrastive objective: a video's embedding near its caption's, away from the batch's other captions.

    pairs = caption_pairs(processor, corpus_examples(processor, cfg, folder))
    train_full(model, pairs, FullConfig(batch_size=8), Contrastive(temperature=0.07))

Both sides go through the model's own embedding path (KeyeModel.embed: mean-pooled final hidden
states, L2-normalized), with gradients: a video is embedded like the analyzer embeds it (each visual
pass's prompt prefix, the passes' vectors averaged and normalized again), a caption like a search
query (analysis.embedding.query_inputs). The loss is the symmetric InfoNCE over the batch
(video->caption and caption->video cross-entropy on scaled cosine similarities, the batch's other
pairs as negatives) with a learnable (or fixed) temperature. Under data parallelism each rank's
negatives are its own slice of the batch.

AnswersAndCaptions trains both at once on supervised examples: the answers' forward already holds
each clip's video embedding, so only the captions run again (what keye-demo trains with).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from analysis.embedding import query_inputs
from keye_model.model import KeyeModel
from service.train_config import TrainConfigError
from training.answer_loss import answer_nll, packed_hidden
from training.dataset import ChunkPrompt, Example
from training.full import PassFront, Supervised

MAX_SCALE = 100.0  # the similarity scale's ceiling (temperature 0.01): keeps a learned one from diverging

# KeyeModel.embed runs under no_grad for serving; training needs the very same pooling with gradients.
_embed = inspect.unwrap(KeyeModel.embed)


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
        return infonce(self.logits(model, batch), "sum")


def infonce(logits: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Symmetric InfoNCE of (videos x captions) scaled similarities, row i matching column i."""
    logits = logits.float()
    match = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (
        F.cross_entropy(logits, match, reduction=reduction) + F.cross_entropy(logits.t(), match, reduction=reduction)
    )


@torch.no_grad()
def caption_ranks(model: nn.Module, pairs: Sequence[VideoCaption]) -> list[int]:
    """For each video, the rank (0 = first) of its own caption among all the pairs' captions."""
    sims = video_vectors(model, pairs) @ text_vectors(model, pairs).t()
    own = sims.diagonal()[:, None]
    return (sims > own).sum(1).tolist()


# ---- both objectives in one step ----------------------------------------------------------------


class AnswersAndCaptions(nn.Module):
    """A micro-batch's answer NLL plus `contrastive_weight` times the InfoNCE of its distinct clips
    against their captions, the video side read off the same forward as the answers.

    An example's first prefix_len positions are its visual pass's prompt prefix, and causal attention
    makes their final hidden states exactly those KeyeModel.embed pools over the prefix alone (the
    analyzer's vector of that pass). So the videos cost nothing beyond the answers and only the
    captions (short texts) run again; the negatives are the micro-batch's other clips. A clip of
    several passes is represented by the pass in the batch (the analyzer averages its passes).
    train_full divides a step's loss sums by its micro-batches' weights: the weight is the answer weight
    alone (answer tokens x example weight), so the NLL enters as its mean per answer token, and the
    InfoNCE, scaled by that weight, as its mean per clip: with one micro-batch a step the loss is
    exactly mean answer NLL + contrastive_weight x mean InfoNCE; `parts` keeps the two means."""

    def __init__(
        self,
        captions: dict[str, tuple[str, torch.Tensor, torch.Tensor]],
        contrastive_weight: float = 1.0,
        temperature: float = 0.07,
        sampled_vocab: int = 0,
    ) -> None:
        super().__init__()
        if contrastive_weight < 0:
            raise TrainConfigError(f"contrastive_weight must be >= 0, got {contrastive_weight}")
        self.captions = captions  # video_id -> (caption, query ids, mask)
        self.supervised = Supervised(sampled_vocab)
        self.contrastive = Contrastive(temperature)
        self.contrastive_weight = contrastive_weight
        self.parts: list[tuple[float, float | None]] = []  # (answer NLL, InfoNCE) means per micro-batch

    def weight(self, batch: Sequence[Example]) -> float:
        return self.supervised.weight(batch)

    def loss_sum(self, model: KeyeModel, batch: Sequence[Example]) -> torch.Tensor:
        front = PassFront(model)
        hidden = packed_hidden(model, front, batch)
        loss = answer_nll(model, front, batch, sampled_vocab=self.supervised.sampled_vocab, hidden=hidden)[0]
        answer_w = max(self.weight(batch), 1e-8)
        nll, nce = float(loss.detach()) / answer_w, None
        videos, texts, seen, start = [], [], set(), 0
        for ex in batch:
            caption = self.captions.get(ex.video_id)
            if ex.prefix_len and caption is not None and caption[0] not in seen:  # a near-duplicate shares its caption
                seen.add(caption[0])
                videos.append(F.normalize(hidden[start : start + ex.prefix_len].float().mean(0), dim=-1))
                texts.append(_embed(model, caption[1], caption[2]))
            start += ex.input_ids.shape[0]
        if self.contrastive_weight and len(videos) > 1:  # one clip has no negative: nothing to learn
            pair_loss = infonce(self.contrastive.scale() * torch.stack(videos) @ torch.cat(texts).float().t())
            nce = float(pair_loss.detach())
            loss = loss + self.contrastive_weight * answer_w * pair_loss
        self.parts.append((nll, nce))
        return loss


def caption_table(processor, made) -> dict[str, tuple[str, torch.Tensor, torch.Tensor]]:
    """video_id -> (caption, query ids, mask) for AnswersAndCaptions, from corpus_examples' output."""
    return {vid: (text, *query_inputs(processor, text)) for vid, text in made.captions.items()}

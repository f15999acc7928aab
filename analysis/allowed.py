"""What a row's grammar admits next, in the form the decoder can use cheaply.

xgrammar fills a bitmask (bit b of int32 word w admits token 32w + b). Inside JSON structure
(punctuation, keys, enum literals, digits) only a few tokens pass; inside free text almost all
of the 151,936 do. The decoder needs, per row: the mask (full projection), the admitted ids when
they are few (sparse projection, or a single forced token that needs no logits at all).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import xgrammar as xgr

from analysis.errors import GrammarError

_BITS = torch.arange(32, dtype=torch.int32)


def admitted_ids(words: torch.Tensor, limit: int) -> torch.Tensor | None:
    """Ascending token ids set in one bitmask row, or None when more than `limit` are set.

    Every nonzero word holds at least one id, so a row with more nonzero words than `limit`
    is rejected before any unpacking (free-text rows cost one nonzero() over ~4.7k words)."""
    if limit < 1:
        return None
    nz = words.nonzero().squeeze(1)
    if nz.numel() > limit:
        return None
    bits = (words[nz].unsqueeze(1) >> _BITS) & 1
    ids = (nz.unsqueeze(1) * 32 + _BITS).masked_select(bits.bool()).long()
    return None if ids.numel() > limit else ids


@dataclass
class Admitted:
    """The next token's admissible set: `mask` (1, words) always, `ids` when at most the limit."""

    mask: torch.Tensor
    ids: torch.Tensor | None

    @property
    def forced(self) -> int | None:
        """The token when exactly one is admitted: its logits cannot change the choice."""
        return int(self.ids[0]) if self.ids is not None and self.ids.numel() == 1 else None


class RowGrammar:
    """One answer decoded under its grammar and token budget.

    Budget rule (as GrammarMasks): once `budget - 1` tokens are out, the stop token is the only
    choice, so no answer exceeds its budget (the parser then reports it incomplete)."""

    def __init__(self, compiled: xgr.CompiledGrammar, budget: int, stop_id: int, vocab_size: int) -> None:
        self.matcher = xgr.GrammarMatcher(compiled)
        self.budget = int(budget)
        self.stop_id = stop_id
        self.count = 0
        self._mask = xgr.allocate_token_bitmask(1, vocab_size)
        self._next: tuple[int, Admitted] | None = None

    def accept(self, token: int) -> None:
        self.count += 1
        self._next = None
        if token == self.stop_id:
            return  # the row ends here; a budget stop is not fed to the matcher (it may not admit it)
        if self.matcher.is_terminated() or not self.matcher.accept_token(int(token)):
            raise GrammarError(f"token {token} is not admitted by the grammar after {self.count - 1} tokens")

    def admitted(self, limit: int) -> Admitted:
        """The next token's set; ids are listed when at most `limit` (>= 1 to detect forced tokens)."""
        if self._next is not None and self._next[0] == limit:
            return self._next[1]
        if self.count >= self.budget - 1:
            mask = torch.zeros_like(self._mask)
            bit = 1 << (self.stop_id % 32)
            mask[0, self.stop_id // 32] = bit - (1 << 32) if bit >= 1 << 31 else bit  # int32 two's complement
            out = Admitted(mask, torch.tensor([self.stop_id]))
        else:
            restricted = self.matcher.fill_next_token_bitmask(self._mask, 0)
            mask = self._mask.clone()
            out = Admitted(mask, admitted_ids(mask[0], limit) if restricted else None)
            if out.ids is not None and out.ids.numel() == 0:
                raise GrammarError(f"the grammar admits no token after {self.count} tokens")
        self._next = (limit, out)
        return out

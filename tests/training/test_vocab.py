"""training.vocab: the used-rows head is the exact full-vocabulary softmax, and the model comes back whole."""

import pytest
import torch
from torch import nn

from service.train_config import TrainConfigError
from training.vocab import UsedEmbedding, UsedHead, used_ids, used_vocabulary, zero_unused


def _head(vocab=50, hidden=8, used=(1, 4, 9, 30)):
    torch.manual_seed(0)
    full = nn.Linear(hidden, vocab, bias=False)
    ids = torch.tensor(used)
    with torch.no_grad():
        keep = full.weight[ids].clone()
        full.weight.zero_()
        full.weight[ids] = keep
    return full, ids


def test_used_head_logprobs_equal_the_full_softmax_with_zero_rows():
    full, ids = _head()
    head = UsedHead(full, ids)
    h = torch.randn(6, 8)
    targets = ids[torch.tensor([0, 1, 2, 3, 0, 2])]
    want = torch.log_softmax(h @ full.weight.t(), -1).gather(1, targets[:, None]).squeeze(1)
    assert torch.allclose(head.logprobs(h, targets), want, atol=1e-5)
    assert torch.allclose(head(h), h @ full.weight.t(), atol=1e-6)
    with pytest.raises(TrainConfigError, match="outside the trained vocabulary"):
        head.logprobs(h[:1], torch.tensor([2]))


def test_used_embedding_trains_only_the_used_rows():
    torch.manual_seed(0)
    full = nn.Embedding(20, 4)
    emb = UsedEmbedding(full, torch.tensor([2, 5]))
    out = emb(torch.tensor([2, 3, 5]))
    assert torch.equal(out, full.weight[[2, 3, 5]].detach())
    out.sum().backward()
    assert emb.rows.grad.shape == (2, 4) and torch.equal(emb.rows.grad, torch.ones(2, 4))


def test_used_vocabulary_swaps_back_with_the_trained_rows():
    full, ids = _head()

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = nn.Module()
            self.model.embed_tokens = nn.Embedding(50, 8)
            self.lm_head = full

    m = Tiny()
    with used_vocabulary(m, ids):
        assert isinstance(m.lm_head, UsedHead)
        with torch.no_grad():
            m.lm_head.rows += 1.0
            m.model.embed_tokens.rows += 1.0
    assert type(m.lm_head) is nn.Linear and type(m.model.embed_tokens) is nn.Embedding
    outside = torch.ones(50, dtype=torch.bool)
    outside[ids] = False
    assert not m.lm_head.weight[outside].any() and m.lm_head.weight[ids].abs().min() > 0


def test_a_model_with_nonzero_unused_rows_is_refused_until_zeroed():
    torch.manual_seed(0)

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = nn.Module()
            self.model.embed_tokens = nn.Embedding(30, 4)
            self.lm_head = nn.Linear(4, 30, bias=False)

    m, ids = Tiny(), used_ids([torch.tensor([3, 7, 3]), torch.tensor([[1, 7]])], 30)
    assert ids.tolist() == [1, 3, 7]
    with pytest.raises(TrainConfigError, match="zero"):
        with used_vocabulary(m, ids):
            pass
    zero_unused(m, ids)
    with used_vocabulary(m, ids):
        pass

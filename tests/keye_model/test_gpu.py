"""On a CUDA device the model runs its Triton kernels and agrees with the CPU torch path."""

from __future__ import annotations

import pytest
import torch

import keye_model
from tests.support.prompts import Prompt, batch, text_prompt

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is absent: GPU-only test"),
]


def _inputs():
    return batch(
        [Prompt().text(1, 2).image(4, 6, seed=1).text(3).video(2, 4, 4, 0.5, seed=2).text(4), text_prompt(5, 9)]
    )


@torch.no_grad()
def test_cuda_triton_path_matches_cpu_and_generates_the_same(tiny):
    inputs = _inputs()
    gpu = keye_model.load("keye-tiny", device="cuda")
    assert gpu.device.type == "cuda"
    mask = inputs["attention_mask"].bool()
    cpu_logits = tiny(**inputs)[mask]
    gpu_logits = gpu(**inputs)[mask.cuda()].cpu()
    assert (cpu_logits - gpu_logits).abs().max() < 2e-3
    want = tiny.generate(**inputs, max_new_tokens=4, stop_token_ids=[])
    assert torch.equal(gpu.generate(**inputs, max_new_tokens=4, stop_token_ids=[]), want)


@torch.no_grad()
def test_cuda_bfloat16_generation_runs():
    gpu = keye_model.load("keye-tiny", dtype=torch.bfloat16, device="cuda")
    out = gpu.generate(**_inputs(), max_new_tokens=4, temperature=0.7, top_k=20, seed=0)
    assert out.shape[0] == 2 and out.dtype == torch.long

"""The whole tiny model through the Triton kernels (interpreter) matches the torch path."""

from __future__ import annotations

import pytest
import torch

import kernels

keye_model = pytest.importorskip("keye_model")

VSTART, VEND, IMG, VID = 151652, 151653, 151655, 151656


def inputs() -> dict:
    """Two left-padded rows: text + image + text, and text + 2-frame video + text (CPU tensors,
    as the processor produces them; the model moves them to its device)."""
    g = torch.Generator().manual_seed(3)
    row_a = [11, 12, VSTART] + [IMG] * 4 + [VEND, 13]
    row_b = [21, VSTART] + [VID] * 8 + [VEND, 22, 23, 24]
    width = max(len(row_a), len(row_b))
    ids = torch.full((2, width), 151643, device="cpu")
    mask = torch.zeros(2, width, dtype=torch.long, device="cpu")
    for i, row in enumerate((row_a, row_b)):
        ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "pixel_values": torch.randn(16, 3, 14, 14, generator=g, device="cpu"),
        "image_grid_thw": torch.tensor([[1, 4, 4]], device="cpu"),
        "pixel_values_videos": torch.randn(32, 3, 14, 14, generator=g, device="cpu"),
        "video_grid_thw": torch.tensor([[2, 4, 4]], device="cpu"),
        "second_per_grid_ts": torch.tensor([0.5], device="cpu"),
    }


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # interpreter on CPU, compiled kernels on CUDA


@pytest.fixture(scope="module")
def tiny():
    return keye_model.load("keye-tiny", dtype=torch.float32, seed=0, device=DEVICE)


def test_logits_match_between_backends(tiny, backend_env):
    batch = inputs()
    with torch.no_grad():
        with backend_env("torch"):
            ref = tiny(**batch)
        with backend_env("triton"):
            out = tiny(**batch)
    assert torch.isfinite(ref).all()
    assert (out - ref).abs().max().item() <= 1e-4


def test_model_really_calls_the_kernels(backend_env, monkeypatch):
    # With the interpreter switched off, Triton on CPU tensors must refuse: proof the model dispatches.
    cpu_model = keye_model.load("keye-tiny", dtype=torch.float32, seed=0, device="cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with backend_env("triton"), torch.no_grad(), pytest.raises(kernels.KernelBackendError):
        cpu_model(**inputs())


def test_gradients_match_between_backends(backend_env):
    # Training path: the backward kernels inside the model give the torch path's parameter gradients.
    tiny = keye_model.load("keye-tiny", dtype=torch.float32, seed=0, device=DEVICE)
    tiny.requires_grad_(True)
    batch = inputs()
    grads = {}
    for name in ("torch", "triton"):
        tiny.zero_grad(set_to_none=True)
        with backend_env(name):
            logits = tiny(**batch)
        target = torch.randn(logits.shape, generator=torch.Generator().manual_seed(5), device="cpu").to(logits.device)
        (logits * target).sum().backward()
        grads[name] = {n: p.grad.clone() for n, p in tiny.named_parameters() if p.grad is not None}
    assert grads["torch"].keys() == grads["triton"].keys() and len(grads["torch"]) > 10
    for n, g in grads["torch"].items():
        # The upstream gradient spans the 151,936-way vocabulary, so gradients are large: compare
        # relative to each tensor's scale (float32 sums in a different order differ at ~1e-6 of it).
        err = (grads["triton"][n] - g).abs().max().item()
        assert err <= 1e-5 * g.abs().max().item() + 1e-6, f"{n}: max error {err:.3g}, scale {g.abs().max().item():.3g}"


def test_greedy_generation_matches_between_backends(tiny, backend_env):
    # Prefill (varlen attention) then decoding over the KV cache (decode attention).
    batch = inputs()
    runs = {}
    for name in ("torch", "triton"):
        with backend_env(name):
            runs[name] = tiny.generate(**batch, max_new_tokens=4, temperature=0.0, stop_token_ids=[])
    assert runs["torch"].shape == (2, 4)
    assert torch.equal(runs["triton"], runs["torch"])

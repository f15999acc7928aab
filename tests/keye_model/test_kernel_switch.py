"""KEYE_KERNELS drives the whole model: the Triton kernels (interpreted on CPU) give the same
logits and greedy tokens as the torch references. Runs in subprocesses because TRITON_INTERPRET
must be set before triton is imported."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from tests.support.paths import REPO

SCRIPT = r"""
import sys, torch
sys.path.insert(0, {repo!r})
torch.set_num_threads(1)
import keye_model
from tests.support.prompts import Prompt, batch, text_prompt
m = keye_model.load("keye-tiny")
inp = batch([Prompt().text(1, 2).image(4, 4, seed=1).text(3), text_prompt(2, 5)])
with torch.no_grad():
    logits = m(**inp)[inp["attention_mask"].bool()][:, :64]
gen = m.generate(**inp, max_new_tokens=3, stop_token_ids=[])
torch.save({{"logits": logits, "gen": gen}}, sys.argv[1])
"""


def _run(tmp_path, name: str, **env: str) -> dict:
    out = tmp_path / f"{name}.pt"
    full_env = {k: v for k, v in os.environ.items() if k not in ("KEYE_KERNELS", "TRITON_INTERPRET")}
    full_env.update(env)
    subprocess.run(
        [sys.executable, "-c", SCRIPT.format(repo=str(REPO)), str(out)],
        check=True,
        env=full_env,
        cwd=REPO,
        timeout=600,
    )
    return torch.load(out)


def test_triton_kernels_match_torch_references_end_to_end(tmp_path):
    ref = _run(tmp_path, "torch", KEYE_KERNELS="torch")
    tri = _run(tmp_path, "triton", KEYE_KERNELS="triton", TRITON_INTERPRET="1")
    assert (ref["logits"] - tri["logits"]).abs().max() < 1e-4
    assert torch.equal(ref["gen"], tri["gen"])

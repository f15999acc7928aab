"""Baseline half of bench/model_generate.py: the OFFICIAL Keye code through transformers' `generate`.

Runs in its own process (the official file needs transformers 4.x; our venv has 5.x) and imports
nothing from this repo but bench/_timing.py (stdlib only). Nothing official is kept in this repo: the caller names the folder
that holds the release's configuration_keye.py and modeling_keye.py, a PYTHONPATH with
transformers 4.51.3 + einops, and modules to import first (CPU stand-ins for flash_attn, which the
official file imports unconditionally). See bench/model_generate.py for how to obtain them.

Usage (normally started by bench/model_generate.py): python bench/official_generate.py JOB.json
JOB.json: {official_dir, preload, checkpoint, ids: [path of a torch.save'd int64 tensor per batch],
steps, threads}; prints one JSON line {"points": [{"batch", "prefill_tps", "decode_tps"}]}.
"""

from __future__ import annotations

import importlib
import json
import sys
import types

import torch
from _timing import best_of  # bench/, stdlib only


def official_package(folder: str):
    """Import the release folder as a package (its modeling file uses relative imports)."""
    pkg = types.ModuleType("keye_official")
    pkg.__path__ = [folder]
    sys.modules["keye_official"] = pkg
    cfg = importlib.import_module("keye_official.configuration_keye")
    mod = importlib.import_module("keye_official.modeling_keye")
    return cfg.KeyeConfig, mod.KeyeForConditionalGeneration


def main(job_path: str) -> None:
    job = json.loads(open(job_path).read())
    torch.set_num_threads(job["threads"])
    for name in job["preload"]:  # flash_attn stand-ins must be registered before the official import
        importlib.import_module(name)
    Config, Model = official_package(job["official_dir"])
    model = Model.from_pretrained(
        job["checkpoint"],
        config=Config.from_pretrained(job["checkpoint"]),
        torch_dtype=getattr(torch, job["dtype"]),
        attn_implementation="sdpa",
    ).eval()
    points = []
    for path in job["ids"]:
        ids = torch.load(path)
        b, prompt = ids.shape
        mask = torch.ones_like(ids)

        def prefill(ids=ids, mask=mask):
            with torch.no_grad():
                model(input_ids=ids, attention_mask=mask, use_cache=True)

        def gen(n, ids=ids, mask=mask):
            with torch.no_grad():
                model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=n,
                    min_new_tokens=n,
                    do_sample=False,
                    eos_token_id=None,
                    pad_token_id=0,
                    temperature=None,
                    top_k=None,
                    top_p=None,
                )

        t_pre = best_of(prefill)
        t_all = best_of(lambda: gen(job["steps"] + 1))
        t_first = best_of(lambda: gen(1))
        points.append(
            {"batch": b, "prefill_tps": b * prompt / t_pre, "decode_tps": b * job["steps"] / max(t_all - t_first, 1e-9)}
        )
    print(json.dumps({"points": points}))


if __name__ == "__main__":
    main(sys.argv[1])

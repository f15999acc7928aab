"""Peak memory of keye_model.load against the size of the weights it loads.

Writes a bf16 checkpoint of Keye-8B shapes to a scratch folder (the full 36 decoder layers with
--layers 36: 16.3 GB on disk; by default a proportional slice with fewer decoder layers and the
full vision tower, embedding and lm_head), then loads it in a fresh subprocess and reports
(peak RSS - RSS before loading) / weight bytes. Target: <= 1.1. The folder is deleted after.

Run: .venv/bin/python bench/model_load_memory.py [--layers 4] [--dir /tmp/keye-load-bench] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHILD = r"""
import resource, sys, time, json
sys.path.insert(0, {root!r})
import torch, keye_model
def rss():  # current resident set, bytes
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
before = rss()
t = time.perf_counter()
model = keye_model.load({folder!r}, dtype=torch.bfloat16)
elapsed = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
weights = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps(dict(before=before, peak=peak, after=rss(), weights=weights, seconds=elapsed)))
"""


def write_checkpoint(folder: Path, layers: int, shard_gb: float) -> int:
    from dataclasses import replace

    import torch

    from keye_model import safetensors_io as st
    from keye_model.config import preset_config
    from keye_model.layout import GENERATION_CONFIG, INDEX
    from keye_model.model import KeyeModel

    cfg = replace(preset_config("keye-vl-8b"), num_hidden_layers=layers)
    with torch.device("meta"):
        meta = KeyeModel(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    names = [(n, p.shape) for n, p in meta.named_parameters()]
    shards, cur, size = [], [], 0
    for n, shape in names:
        nbytes = 2 * torch.Size(shape).numel()
        if cur and size + nbytes > shard_gb * 2**30:
            shards.append(cur)
            cur, size = [], 0
        cur.append((n, shape))
        size += nbytes
    shards.append(cur)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        # one shard's tensors at a time: the writer never holds the whole model
        tensors = [(n, torch.full(shape, 0.01, dtype=torch.bfloat16)) for n, shape in shard]
        st.write(folder / fname, tensors)
        for n, t in tensors:
            weight_map[n] = fname
            total += t.numel() * 2
        del tensors
    (folder / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(cfg.to_dict()))
    (folder / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG))
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4, help="decoder layers (36 = the real 8B checkpoint)")
    ap.add_argument("--dir", default="/tmp/keye-load-bench")
    ap.add_argument("--shard-gb", type=float, default=2.0)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    folder = Path(args.dir)
    root = str(Path(__file__).resolve().parents[1])
    try:
        t = time.perf_counter()
        total = write_checkpoint(folder, args.layers, args.shard_gb)
        print(
            f"wrote {total / 1e9:.2f} GB bf16 ({args.layers} of 36 decoder layers, full vision tower, "
            f"embedding, lm_head) in {time.perf_counter() - t:.0f} s"
        )
        out = subprocess.run(
            [sys.executable, "-c", CHILD.format(root=root, folder=str(folder))],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        ratio = (r["peak"] - r["before"]) / r["weights"]
        print(
            f"load: {r['seconds']:.1f} s, weights {r['weights'] / 1e9:.2f} GB, RSS before {r['before'] / 1e9:.2f} GB, "
            f"peak {r['peak'] / 1e9:.2f} GB -> (peak - before) / weights = {ratio:.3f} (target <= 1.1)"
        )
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

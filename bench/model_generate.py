"""Generation throughput of keye_model on this machine, as a share of its own measured limits.

Prefill and decode tokens/s at batch 1 and 8 for the given presets (random weights). Limits are
measured in the same run: memory bandwidth from a large tensor copy, matmul throughput from a
large float32 (or bf16) matmul. Decode at batch 1 is bound by reading the weights once per step
(decoder layers + lm_head); at batch 8 by min(bandwidth, FLOP/s) (roofline); prefill by FLOP/s.
Greedy decode on a float32 CPU model reads the lm_head as its bf16 screen (keye_model/engine/head.py),
so decode is reported against two limits: reading every weight in float32 (what the baseline reads),
and reading the layers in float32 plus the lm_head in bf16 (the least our exact greedy path reads).

Run: .venv/bin/python bench/model_generate.py [--presets keye-tiny keye-mid] [--prompt 128] [--steps 16] [--rounds 3]

Baseline (optional): the OFFICIAL Keye code (Kwai-Keye/Keye, keye-vl-8b-preview/modeling_keye.py)
through transformers' `generate`, on the same random weights (our model.save_pretrained), the same
prompts, batch sizes and token counts, greedy, with the same torch thread count, in a subprocess
(bench/official_generate.py) because it needs transformers 4.x. Nothing official lives in this repo;
provide, outside it:
  --official-dir DIR        (or KEYE_OFFICIAL_DIR) the release folder with configuration_keye.py and
                            modeling_keye.py (e.g. `git show HEAD:keye-vl-8b-preview/modeling_keye.py`
                            from a clone of github.com/Kwai-Keye/Keye)
  --official-pythonpath P   (or KEYE_OFFICIAL_PYTHONPATH) put first on the subprocess's PYTHONPATH, e.g.
                            a folder from `pip install --target /tmp/tf4 transformers==4.51.3
                            huggingface_hub==0.30.2 tokenizers==0.21.1 einops`, plus the folder of the
                            stand-in module below
  --official-preload MOD    (or KEYE_OFFICIAL_PRELOAD, comma-separated) modules imported before the
                            official file: the official file imports flash_attn unconditionally, so on
                            CPU you need your own small module that registers `flash_attn`
                            (flash_attn_varlen_func), `flash_attn.bert_padding` and
                            `flash_attn.layers.rotary.apply_rotary_emb` in sys.modules and sets
                            transformers.utils.is_flash_attn_2_available to return True. Text-only
                            generation with attn_implementation="sdpa" never calls them.
Without --official-dir the baseline is skipped with a message.
Example: .venv/bin/python bench/model_generate.py --threads 1 --prompt 64 --steps 32 \
  --official-dir /tmp/refpkg/keye_ref --official-pythonpath /tmp/tf4:/tmp/refpkg --official-preload stub_flash
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

import keye_model
from bench._timing import best_of
from keye_model.attention import PackedCausal
from keye_model.engine import Engine, SamplingParams
from keye_model.engine.head import screened_head


def copy_bandwidth(nbytes: int = 512 * 2**20) -> float:
    """GB/s of a large copy, counting the read and the write."""
    src = torch.ones(nbytes // 4)
    dst = torch.empty_like(src)
    return 2 * nbytes / best_of(lambda: dst.copy_(src), repeat=3) / 1e9


def matmul_flops(dtype: torch.dtype, n: int = 1536) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 / best_of(lambda: a @ b, repeat=3) / 1e9  # GFLOP/s


def decoder_params(model) -> tuple[int, int]:
    """(decoder-layer weights, lm_head weights): what one token multiplies through (not the embedding table)."""
    layers = sum(
        p.numel() for n, p in model.named_parameters() if n.startswith("model.layers") or n.startswith("model.norm")
    )
    return layers, model.lm_head.weight.numel()


def measure(model, engine, prompts: dict, prompt: int, steps: int) -> dict[int, tuple[float, float]]:
    """Our prefill and decode tokens/s per batch size."""
    out = {}
    for b, ids in prompts.items():

        def prefill(ids=ids):
            with torch.no_grad():
                packed = model.pack(ids)
                hidden = model.run(packed.embeds, packed.positions, PackedCausal(packed.lengths, model.device))
                model.lm_head(hidden[prompt - 1 :: prompt])  # logits of each row's last token only

        t_pre = best_of(prefill, repeat=2)
        params = SamplingParams(max_new_tokens=steps + 1, stop_token_ids=())
        t_all = best_of(lambda ids=ids, params=params: engine.generate({"input_ids": ids}, params), repeat=2)
        params1 = SamplingParams(max_new_tokens=1, stop_token_ids=())
        t_first = best_of(lambda ids=ids, params1=params1: engine.generate({"input_ids": ids}, params1), repeat=2)
        out[b] = (b * prompt / t_pre, b * steps / max(t_all - t_first, 1e-9))
    return out


def run(
    preset: str, prompt: int, steps: int, dtype: torch.dtype, official: dict | None = None, rounds: int = 1
) -> list[str]:
    """Rounds alternate our measurement, the machine's limits and the baseline; each figure is the
    best over the rounds, so on a shared, noisy machine every side gets the same chances."""
    model = keye_model.load(preset, dtype=dtype)
    p_layers, p_head = decoder_params(model)
    p = p_layers + p_head
    wbytes = p * model.lm_head.weight.element_size()
    engine = Engine(model)
    # Bytes per lm_head weight that greedy decode reads: 2 through the bf16 screen where it applies.
    screen_bytes = 2 if screened_head(model.lm_head) is not None else model.lm_head.weight.element_size()
    gen = torch.Generator().manual_seed(0)
    prompts = {b: torch.randint(0, 150000, (b, prompt), generator=gen) for b in (1, 8)}
    ours: dict[int, tuple[float, float]] = {}
    base: dict[int, dict] = {}
    bw = gflops = 0.0
    for _ in range(rounds):
        bw, gflops = max(bw, copy_bandwidth()), max(gflops, matmul_flops(dtype))
        for b, (pre, dec) in measure(model, engine, prompts, prompt, steps).items():
            ours[b] = tuple(max(x, y) for x, y in zip((pre, dec), ours.get(b, (0.0, 0.0))))
        if official is not None:
            for ref in run_official(model, prompts, steps, dtype, official):
                old = base.get(ref["batch"], ref)
                base[ref["batch"]] = {k: max(ref[k], old[k]) for k in ("prefill_tps", "decode_tps")}
    rows = [
        f"machine (best of {rounds} round(s)): copy {bw:.1f} GB/s, {str(dtype).split('.')[-1]} matmul {gflops:.1f} GFLOP/s"
    ]
    for b, (pre_tps, dec_tps) in ours.items():
        flops = 2 * p_layers * b * prompt + 2 * p_head * b  # attention FLOPs are small at this length
        pre_limit = b * prompt / (flops / (gflops * 1e9))
        limits = []
        for nbytes in (wbytes, wbytes - p_head * (model.lm_head.weight.element_size() - screen_bytes)):
            bw_limit = b * bw * 1e9 / nbytes
            limits.append(
                (bw_limit, "bandwidth")
                if b == 1 or bw_limit < gflops * 1e9 / (2 * p)
                else (gflops * 1e9 / (2 * p), "matmul")
            )
        (full, full_kind), (screened, screened_kind) = limits
        rows.append(
            f"{preset:10s} b={b}  prefill {pre_tps:9.1f} tok/s = {pre_tps / pre_limit:6.1%} of {pre_limit:9.1f} (matmul)"
            f" | decode {dec_tps:8.1f} tok/s = {dec_tps / full:6.1%} of {full:8.1f} (all weights, {full_kind})"
            f" = {dec_tps / screened:6.1%} of {screened:8.1f} (bf16 lm_head screen, {screened_kind})"
        )
    for b, ref in base.items():
        pre, dec = ours[b]
        rows.append(
            f"{preset:10s} b={b}  official prefill {ref['prefill_tps']:9.1f} tok/s, ours x{pre / ref['prefill_tps']:5.2f}"
            f" | official decode {ref['decode_tps']:8.1f} tok/s, ours x{dec / ref['decode_tps']:5.2f}"
        )
    return rows


def run_official(model, prompts: dict, steps: int, dtype: torch.dtype, official: dict) -> list[dict]:
    """Time the official code on our weights and prompts in a subprocess with its own transformers."""
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(Path(d) / "ckpt")
        paths = []
        for b, ids in prompts.items():
            paths.append(str(Path(d) / f"ids{b}.pt"))
            torch.save(ids, paths[-1])
        job = {
            "official_dir": official["dir"],
            "preload": official["preload"],
            "checkpoint": str(Path(d) / "ckpt"),
            "ids": paths,
            "steps": steps,
            "threads": torch.get_num_threads(),
            "dtype": str(dtype).split(".")[-1],
        }
        (Path(d) / "job.json").write_text(json.dumps(job))
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(p for p in (official["pythonpath"], os.environ.get("PYTHONPATH")) if p),
        )
        out = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("official_generate.py")), str(Path(d) / "job.json")],
            env=env,
            capture_output=True,
            text=True,
        )
    if out.returncode != 0:
        raise RuntimeError(f"official baseline failed (exit {out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["points"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", nargs="+", default=["keye-tiny", "keye-mid"])
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate ours / limits / baseline this many times, keep each side's best (noisy machines)",
    )
    ap.add_argument(
        "--official-dir",
        default=os.environ.get("KEYE_OFFICIAL_DIR"),
        help="folder with the release's configuration_keye.py and modeling_keye.py (baseline)",
    )
    ap.add_argument(
        "--official-pythonpath",
        default=os.environ.get("KEYE_OFFICIAL_PYTHONPATH", ""),
        help="prepended to PYTHONPATH for the baseline: transformers 4.x, einops, flash_attn stand-ins",
    )
    ap.add_argument(
        "--official-preload",
        default=os.environ.get("KEYE_OFFICIAL_PRELOAD", ""),
        help="comma-separated modules the baseline imports first (flash_attn stand-ins)",
    )
    args = ap.parse_args()
    official = None
    if args.official_dir:
        if not (Path(args.official_dir) / "modeling_keye.py").is_file():
            ap.error(f"--official-dir {args.official_dir} has no modeling_keye.py")
        official = {
            "dir": str(Path(args.official_dir).resolve()),
            "pythonpath": args.official_pythonpath,
            "preload": [m for m in args.official_preload.split(",") if m],
        }
    else:
        print("official baseline skipped: pass --official-dir (or KEYE_OFFICIAL_DIR); see this file's docstring")
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(
        f"{torch.get_num_threads()} threads, prompt {args.prompt} tokens, {args.steps} decode steps, {args.dtype}, "
        "text only, greedy"
    )
    for preset in args.presets:
        for row in run(preset, args.prompt, args.steps, dtype, official, args.rounds):
            print(row, flush=True)


if __name__ == "__main__":
    main()

"""bench/kernels.py --smoke runs on the CPU and both paths agree on every row."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke_runs_and_paths_agree():
    env = {k: v for k, v in os.environ.items() if k != "KEYE_KERNELS"}  # the bench picks the interpreter itself
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "kernels.py"), "--smoke", "--reps", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    diffs = re.findall(r"^(\S.*?)\s{2,}.*max\|diff\| (\S+)$", proc.stdout, flags=re.M)
    names = {name.strip() for name, _ in diffs}
    for kernel in (
        "rms_norm",
        "add_rms_norm",
        "layer_norm",
        "gelu_tanh",
        "swiglu",
        "qk_norm_rope",
        "vision_rope",
        "decode_attention",
        "fused_linear_cross_entropy fwd+bwd",
        "varlen_attention prefill fwd+bwd",
        "rms_norm fwd+bwd",
        "qk_norm_rope fwd+bwd",
        "swiglu fwd+bwd",
    ):
        assert kernel in names, f"{kernel} missing from the benchmark output:\n{proc.stdout}"
    for name, diff in diffs:
        assert float(diff) < 1e-4, f"{name}: triton and torch differ by {diff}"

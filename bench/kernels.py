"""Kernel benchmark: Triton kernels against PyTorch eager (and SDPA) at Keye-8B shapes.

Each row reports the achieved rate of both paths (GB/s for memory-bound kernels, TFLOP/s for
attention and the fused cross-entropy), the Triton/torch speedup, and the Triton rate as a share
of what this device measured itself doing: a plain copy (GB/s) and a large bf16 matmul (TFLOP/s).
Attention rows add torch's scaled_dot_product_attention on the same tokens (dense batch of equal
segments). The fused cross-entropy row also prints peak memory against the unfused logits path.

Run on a CUDA machine: .venv/bin/python bench/kernels.py [--only NAME ...]
Smoke test on CPU (tiny shapes, torch vs the Triton interpreter): .venv/bin/python bench/kernels.py --smoke
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

if "--smoke" in sys.argv and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede the first triton import

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kernels
from kernels.cross_entropy import linear_cross_entropy_reference


@dataclass
class Case:
    name: str
    shape: str
    unit: str  # "GB/s" or "TFLOP/s"
    amount: float  # bytes or flops per call
    call: Callable[[], object]  # runs the public kernel (backend chosen by KEYE_KERNELS)
    sdpa: Callable[[], object] | None = None


def timed_ms(fn: Callable[[], object], device: torch.device, reps: int) -> float:
    if device.type == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=10, rep=max(reps * 10, 50))
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1e3


def on(backend: str) -> None:
    """Select the backend for the next calls (set once, outside the timed region)."""
    os.environ["KEYE_KERNELS"] = backend


def max_diff(ref: object, got: object) -> float:
    if isinstance(ref, torch.Tensor):
        return (ref.float() - got.float()).abs().max().item()
    if isinstance(ref, (tuple, list)):
        return max((max_diff(a, b) for a, b in zip(ref, got)), default=0.0)
    return float("nan")


def device_peaks(device: torch.device, smoke: bool) -> tuple[float, float]:
    """(copy GB/s, bf16 matmul TFLOP/s) measured here, the ceilings the kernels are judged against."""
    n = (1 << 20) if smoke else (1 << 30)
    src = torch.empty(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    copy_gbs = 2 * n / (timed_ms(lambda: dst.copy_(src), device, 5) * 1e-3) / 1e9
    m = 256 if smoke else 8192
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    a, b = torch.randn(m, m, device=device, dtype=dtype), torch.randn(m, m, device=device, dtype=dtype)
    mm_tflops = 2 * m**3 / (timed_ms(lambda: a @ b, device, 5) * 1e-3) / 1e12
    return copy_gbs, mm_tflops


def with_backward(name: str, shape: str, amount: float, fn: Callable, args: list, grad_idx: tuple[int, ...]) -> Case:
    """A fwd+bwd case: `amount` is the minimal traffic of both passes (inputs, outputs, their grads)."""
    leaves = [
        a.detach().clone().requires_grad_(i in grad_idx) if isinstance(a, torch.Tensor) else a
        for i, a in enumerate(args)
    ]
    with torch.no_grad():
        outs = fn(*leaves)
    ups = [torch.randn_like(o) for o in (outs if isinstance(outs, tuple) else (outs,))]

    def call():
        outs = fn(*leaves)
        return torch.autograd.grad(outs if isinstance(outs, tuple) else (outs,), [leaves[i] for i in grad_idx], ups)

    return Case(name + " fwd+bwd", shape, "GB/s", amount, call)


def cases(device: torch.device, dtype: torch.dtype, smoke: bool) -> list[Case]:
    e = torch.tensor([], dtype=dtype).element_size()
    # Keye-8B shapes; --smoke shrinks tokens and widths so the interpreter finishes in seconds.
    T = 64 if smoke else 8192  # decoder tokens in a prefill / training step
    TV = 64 if smoke else 16384  # vision patches
    D, FF, DV, FFV = (64, 96, 48, 80) if smoke else (4096, 12288, 1152, 4304)
    HQ, HKV, HD = (4, 1, 32) if smoke else (32, 8, 128)
    HV, HDV = (2, 72) if smoke else (16, 72)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, device=device) * scale).to(dtype)

    out: list[Case] = []
    x, res, w = r(T, D), r(T, D), r(D)
    out.append(Case("rms_norm", f"({T},{D})", "GB/s", 2 * T * D * e, lambda: kernels.rms_norm(x, w, 1e-6)))
    out.append(Case("add_rms_norm", f"({T},{D})", "GB/s", 4 * T * D * e, lambda: kernels.add_rms_norm(x, res, w, 1e-6)))
    xv, wv, bv = r(TV, DV), r(DV), r(DV)
    out.append(
        Case("layer_norm", f"({TV},{DV})", "GB/s", 2 * TV * DV * e, lambda: kernels.layer_norm(xv, wv, bv, 1e-6))
    )
    g = r(TV, FFV, scale=3)
    out.append(Case("gelu_tanh", f"({TV},{FFV})", "GB/s", 2 * TV * FFV * e, lambda: kernels.gelu_tanh(g)))
    gate, up = r(T, FF), r(T, FF)
    out.append(Case("swiglu", f"({T},{FF})", "GB/s", 3 * T * FF * e, lambda: kernels.swiglu(gate, up)))
    q, k = r(T, HQ, HD), r(T, HKV, HD)
    qw, kw = r(HD), r(HD)
    ang = torch.rand(T, HD // 2, device=device) * 100
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    out.append(
        Case(
            "qk_norm_rope",
            f"q({T},{HQ},{HD}) k({T},{HKV},{HD})",
            "GB/s",
            2 * T * (HQ + HKV) * HD * e + 2 * T * HD * 4,
            lambda: kernels.qk_norm_rope(q, k, qw, kw, cos, sin, 1e-6),
        )
    )
    qv, kv = r(TV, HV, HDV), r(TV, HV, HDV)
    vang = torch.rand(TV, HDV // 2, device=device) * 30
    vcos, vsin = torch.cat([vang, vang], -1).cos(), torch.cat([vang, vang], -1).sin()
    out.append(
        Case(
            "vision_rope",
            f"({TV},{HV},{HDV}) x2",
            "GB/s",
            4 * TV * HV * HDV * e + 2 * TV * HDV * 4,
            lambda: kernels.vision_rope(qv, kv, vcos, vsin),
        )
    )
    qkv = T * (HQ + HKV) * HD
    out += [
        with_backward("rms_norm", f"({T},{D})", 5 * T * D * e, kernels.rms_norm, [x, w, 1e-6], (0, 1)),
        with_backward("add_rms_norm", f"({T},{D})", 8 * T * D * e, kernels.add_rms_norm, [x, res, w, 1e-6], (0, 1, 2)),
        with_backward("layer_norm", f"({TV},{DV})", 5 * TV * DV * e, kernels.layer_norm, [xv, wv, bv, 1e-6], (0, 1, 2)),
        with_backward("gelu_tanh", f"({TV},{FFV})", 5 * TV * FFV * e, kernels.gelu_tanh, [g], (0,)),
        with_backward("swiglu", f"({T},{FF})", 8 * T * FF * e, kernels.swiglu, [gate, up], (0, 1)),
        with_backward(
            "qk_norm_rope",
            f"q({T},{HQ},{HD}) k({T},{HKV},{HD})",
            5 * qkv * e + 4 * T * HD * 4,
            kernels.qk_norm_rope,
            [q, k, qw, kw, cos, sin, 1e-6],
            (0, 1, 2, 3),
        ),
        with_backward(
            "vision_rope",
            f"({TV},{HV},{HDV}) x2",
            8 * TV * HV * HDV * e + 4 * TV * HDV * 4,
            kernels.vision_rope,
            [qv, kv, vcos, vsin],
            (0, 1),
        ),
    ]

    # Attention: equal segments so SDPA can run the same work as one dense batch.
    for label, n_seg, seg, hq, hkv, hd, causal in (
        ("varlen_attention prefill", 2 if smoke else 4, 24 if smoke else 2048, HQ, HKV, HD, True),
        ("varlen_attention vision", 2 if smoke else 4, 24 if smoke else 4096, HV, HV, HDV, False),
    ):
        n = n_seg * seg
        qa, ka, va = r(n, hq, hd), r(n, hkv, hd), r(n, hkv, hd)
        cu = torch.arange(0, n + 1, seg, dtype=torch.int32, device=device)
        pairs = n_seg * seg * (seg + 1) / 2 if causal else n_seg * seg * seg
        flops = 4 * pairs * hq * hd

        def call(qa=qa, ka=ka, va=va, cu=cu, seg=seg, causal=causal, hd=hd):
            return kernels.varlen_attention(qa, ka, va, cu, cu, seg, seg, causal, hd**-0.5)

        def sdpa(qa=qa, ka=ka, va=va, n_seg=n_seg, seg=seg, causal=causal, hq=hq, hkv=hkv, hd=hd):
            qb = qa.view(n_seg, seg, hq, hd).transpose(1, 2)
            kb = ka.view(n_seg, seg, hkv, hd).transpose(1, 2)
            vb = va.view(n_seg, seg, hkv, hd).transpose(1, 2)
            return F.scaled_dot_product_attention(qb, kb, vb, is_causal=causal, scale=hd**-0.5, enable_gqa=hq != hkv)

        out.append(Case(label, f"{n_seg}x{seg} tok, {hq}/{hkv} heads, d{hd}", "TFLOP/s", flops, call, sdpa))
        qg, kg, vg = (t.detach().requires_grad_() for t in (qa, ka, va))
        dout = torch.randn_like(qa)

        def fwd_bwd(qg=qg, kg=kg, vg=vg, cu=cu, seg=seg, causal=causal, hd=hd, dout=dout):
            o = kernels.varlen_attention(qg, kg, vg, cu, cu, seg, seg, causal, hd**-0.5)
            return torch.autograd.grad(o, (qg, kg, vg), dout)

        out.append(Case(label + " fwd+bwd", f"{n_seg}x{seg} tok", "TFLOP/s", flops * 3.5, fwd_bwd))

    b, s_max = (3, 40) if smoke else (32, 8192)
    qd, kc, vc = r(b, HQ, HD), r(b, s_max, HKV, HD), r(b, s_max, HKV, HD)
    lens = torch.full((b,), s_max, dtype=torch.int32, device=device)
    out.append(
        Case(
            "decode_attention",
            f"B{b} x {s_max} cached, {HQ}/{HKV} heads",
            "GB/s",
            2 * b * s_max * HKV * HD * e,
            lambda: kernels.decode_attention(qd, kc, vc, lens, HD**-0.5),
        )
    )

    n, v = (16, 1000) if smoke else (4096, 151_936)
    hidden = r(n, D).requires_grad_()
    head = r(v, D, scale=0.02).requires_grad_()
    targets = torch.randint(0, v, (n,), device=device)

    def fused_ce():
        loss = kernels.fused_linear_cross_entropy(hidden, head, targets, chunk_size=8 if smoke else 1024)
        return (loss,) + torch.autograd.grad(loss, (hidden, head))

    out.append(Case("fused_linear_cross_entropy fwd+bwd", f"N{n} H{D} V{v}", "TFLOP/s", 3 * 2 * n * v * D, fused_ce))
    return out


def ce_peak_memory(device: torch.device, dtype: torch.dtype, smoke: bool) -> None:
    if device.type != "cuda":
        print("fused cross-entropy peak memory: needs CUDA (skipped)")
        return
    n, h, v = (16, 64, 1000) if smoke else (4096, 4096, 151_936)
    hidden = torch.randn(n, h, device=device, dtype=dtype, requires_grad=True)
    head = (torch.randn(v, h, device=device) * 0.02).to(dtype).requires_grad_()
    targets = torch.randint(0, v, (n,), device=device)
    peaks = {}
    for name, fn in (
        ("unfused", lambda: linear_cross_entropy_reference(hidden, head, targets)),
        ("fused", lambda: kernels.fused_linear_cross_entropy(hidden, head, targets, chunk_size=1024)),
    ):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        torch.autograd.grad(fn(), (hidden, head))
        torch.cuda.synchronize()
        peaks[name] = (torch.cuda.max_memory_allocated() - base) / 2**30
    print(
        f"fused cross-entropy peak extra memory (N{n} H{h} V{v}): unfused {peaks['unfused']:.2f} GiB, "
        f"fused {peaks['fused']:.2f} GiB, ratio {peaks['unfused'] / max(peaks['fused'], 1e-9):.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes; CPU runs Triton under the interpreter")
    parser.add_argument("--only", nargs="*", default=None, help="substrings of kernel names to run")
    parser.add_argument("--reps", type=int, default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not args.smoke:
        sys.exit("no CUDA device: run with --smoke (tiny shapes, Triton interpreter) on a CPU machine")
    # --smoke checks agreement, so it stays in float32 (on CUDA too); full runs measure bf16.
    dtype = torch.bfloat16 if device.type == "cuda" and not args.smoke else torch.float32
    reps = args.reps or (2 if device.type == "cpu" else 10)
    torch.manual_seed(0)
    copy_gbs, mm_tflops = device_peaks(device, args.smoke)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu (Triton interpreter)"
    print(f"device: {name}; {dtype}; measured copy {copy_gbs:.3g} GB/s, matmul {mm_tflops:.3g} TFLOP/s")
    header = (
        f"{'kernel':38s} {'shape':36s} {'torch':>10s} {'triton':>10s} {'sdpa':>10s} {'speedup':>8s} {'of peak':>8s}"
    )
    print(header)
    print("-" * len(header))
    for case in cases(device, dtype, args.smoke):
        if args.only and not any(s in case.name for s in args.only):
            continue
        with torch.no_grad() if "bwd" not in case.name else torch.enable_grad():
            on("torch")
            ref = case.call()
            t_torch = timed_ms(case.call, device, reps)
            on("triton")
            diff = max_diff(ref, case.call())
            t_triton = timed_ms(case.call, device, reps)
            t_sdpa = timed_ms(case.sdpa, device, reps) if case.sdpa else None
        scale = 1e9 if case.unit == "GB/s" else 1e12

        def rate(ms: float, amount: float = case.amount, scale: float = scale) -> float:
            return amount / (ms * 1e-3) / scale

        peak = copy_gbs if case.unit == "GB/s" else mm_tflops
        sdpa = f"{rate(t_sdpa):10.3g}" if t_sdpa else f"{'-':>10s}"
        print(
            f"{case.name:38s} {case.shape:36s} {rate(t_torch):10.3g} {rate(t_triton):10.3g} {sdpa} "
            f"{t_torch / t_triton:7.2f}x {rate(t_triton) / peak:7.1%}  {case.unit}  max|diff| {diff:.2e}"
        )
    ce_peak_memory(device, dtype, args.smoke)
    os.environ.pop("KEYE_KERNELS", None)


if __name__ == "__main__":
    main()

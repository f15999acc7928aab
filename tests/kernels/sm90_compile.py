"""Compile every Triton kernel for an H100/H200 (sm_90) without a GPU, at the launch settings the
wrappers use on CUDA, and report shared memory, registers and spills.

The interpreter accepts programs the GPU compiler rejects (loop-carried type changes, dot shapes,
shared-memory overflow), so this catches what CPU tests cannot. Run without TRITON_INTERPRET:
    python tests/kernels/sm90_compile.py
Prints one JSON line per kernel configuration.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from kernels import attention_triton as at
from kernels import cross_entropy_triton as ce
from kernels import decode_attention_triton as da
from kernels import gelu_triton as ge
from kernels import layer_norm_triton as ln
from kernels import qk_norm_rope_triton as qr
from kernels import rms_norm_triton as rn
from kernels import swiglu_triton as sw
from kernels._launch import row_tile, row_warps

TARGET = GPUTarget("cuda", 90, 32)
SMEM_LIMIT = 232_448  # bytes of shared memory one block may use on sm_90
PTR = {torch.bfloat16: "*bf16", torch.float32: "*fp32", torch.int32: "*i32", torch.int64: "*i64"}
CUOBJDUMP = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"


def signature(fn, values: dict) -> tuple[dict, dict]:
    sig, const = {}, {}
    for p in fn.params:
        v = values[p.name]
        if p.is_constexpr:
            sig[p.name] = "constexpr"
            const[p.name] = v
        elif isinstance(v, torch.dtype):
            sig[p.name] = PTR[v]
        elif isinstance(v, bool) or isinstance(v, int):
            sig[p.name] = "i32"
        else:
            sig[p.name] = "fp32"
    return sig, const


def registers(cubin: bytes) -> tuple[int, int]:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([str(CUOBJDUMP), "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
    regs = re.search(r"REG:(\d+)", out)
    spill = re.search(r"STACK:(\d+)", out)
    return (int(regs.group(1)) if regs else -1, int(spill.group(1)) if spill else -1)


def configs():
    bf, f32, i32, i64 = torch.bfloat16, torch.float32, torch.int32, torch.int64
    for d in (4096, 1152, 128, 72):
        br, bd = row_tile(d)
        w = row_warps(br, bd)
        for has_res in (False, True):
            yield (
                f"rms_norm_fwd d{d} res={has_res}",
                rn._rms_norm_fwd,
                dict(
                    X=bf,
                    RES=bf,
                    W=bf,
                    Y=bf,
                    RES_OUT=bf,
                    RSTD=f32,
                    R=1,
                    D=d,
                    eps=1e-6,
                    HAS_RES=has_res,
                    BLOCK_R=br,
                    BLOCK_D=bd,
                ),
                w,
            )
        yield (
            f"rms_norm_bwd d{d}",
            rn._rms_norm_bwd,
            dict(
                DY=bf,
                X=bf,
                W=bf,
                RSTD=f32,
                DRES=bf,
                DX=bf,
                DW_PART=f32,
                R=1,
                D=d,
                n_blocks=1,
                HAS_DRES=True,
                BLOCK_R=br,
                BLOCK_D=bd,
            ),
            w,
        )
        yield (
            f"layer_norm_fwd d{d}",
            ln._layer_norm_fwd,
            dict(X=bf, W=bf, B=bf, Y=bf, MEAN=f32, RSTD=f32, R=1, D=d, eps=1e-6, BLOCK_R=br, BLOCK_D=bd),
            w,
        )
        yield (
            f"layer_norm_bwd d{d}",
            ln._layer_norm_bwd,
            dict(
                DY=bf,
                X=bf,
                W=bf,
                MEAN=f32,
                RSTD=f32,
                DX=bf,
                DW_PART=f32,
                DB_PART=f32,
                R=1,
                D=d,
                n_blocks=1,
                BLOCK_R=br,
                BLOCK_D=bd,
            ),
            w,
        )
    for d, norm in ((128, True), (72, False)):
        br, bd = row_tile(d)
        w = row_warps(br, bd)
        yield (
            f"rope_fwd d{d} norm={norm}",
            qr._rope_fwd,
            dict(
                X=bf,
                COS=f32,
                SIN=f32,
                W=bf,
                Y=bf,
                R=1,
                H=1,
                D=d,
                HALF=d // 2,
                eps=1e-6,
                NORM=norm,
                BLOCK_R=br,
                BLOCK_D=bd,
            ),
            w,
        )
        yield (
            f"rope_bwd d{d} norm={norm}",
            qr._rope_bwd,
            dict(
                DY=bf,
                X=bf,
                COS=f32,
                SIN=f32,
                W=bf,
                DX=bf,
                DW_PART=f32,
                R=1,
                H=1,
                D=d,
                HALF=d // 2,
                eps=1e-6,
                n_blocks=1,
                NORM=norm,
                BLOCK_R=br,
                BLOCK_D=bd,
            ),
            w,
        )
    yield "gelu_fwd", ge._gelu_fwd, dict(X=bf, Y=bf, N=1, C=ge.SQRT_2_OVER_PI, BLOCK=ge.BLOCK), 4
    yield "gelu_bwd", ge._gelu_bwd, dict(DY=bf, X=bf, DX=bf, N=1, C=ge.SQRT_2_OVER_PI, BLOCK=ge.BLOCK), 4
    yield "swiglu_fwd", sw._swiglu_fwd, dict(G=bf, U=bf, Y=bf, N=1, BLOCK=sw.BLOCK), 4
    yield "swiglu_bwd", sw._swiglu_bwd, dict(DY=bf, G=bf, U=bf, DG=bf, DU=bf, N=1, BLOCK=sw.BLOCK), 4
    for dtype, prec in ((bf, "tf32"), (f32, "ieee")):
        for d, causal in ((128, True), (72, False)):
            common = dict(
                CU_Q=i32,
                CU_K=i32,
                qk_scale=0.1,
                sq_t=1,
                sq_h=1,
                sk_t=1,
                sk_h=1,
                n_heads=1,
                D=d,
                GROUP=1,
                CAUSAL=causal,
                PRECISION=prec,
                BLOCK_D=128,
            )
            tag = f"{'bf16' if dtype == bf else 'fp32'} d{d} causal={causal}"
            bwd = dict(common, sm_scale=0.1, LSE=f32, DELTA=f32, Q=dtype, K=dtype, V=dtype, DO=dtype)
            for kind, fn, values in (
                ("fwd", at._attn_fwd, dict(common, Q=dtype, K=dtype, V=dtype, OUT=dtype, LSE=f32, so_t=1, so_h=1)),
                ("dkdv", at._attn_bwd_dkdv, dict(bwd, DK=dtype, DV=dtype)),
                ("dq", at._attn_bwd_dq, dict(bwd, DQ=dtype)),
            ):
                cfg = at._config(dtype, kind)
                launch = {k: cfg.pop(k) for k in ("num_warps", "num_stages")}
                if kind == "fwd":  # decoder: 4 q heads per kv head packed in the tile; vision: 1
                    group = 4 if d == 128 else 1
                    cfg = dict(cfg, GROUP_P=group, BLOCK_M=max(1, cfg["BLOCK_M"] // group))
                yield f"attn_{kind} {tag}", fn, dict(values, **cfg), launch
    for dtype, prec, tag in ((bf, "tf32", "bf16"), (f32, "ieee", "fp32")):
        yield (
            f"decode_split {tag} d128 group4",
            da._decode_split,
            dict(
                Q=dtype,
                K=dtype,
                V=dtype,
                SEQLENS=i32,
                MID_O=f32,
                MID_LSE=f32,
                qk_scale=0.1,
                sq_b=1,
                sq_h=1,
                sk_b=1,
                sk_s=1,
                sk_h=1,
                sv_b=1,
                sv_s=1,
                sv_h=1,
                n_heads=1,
                n_splits=1,
                split_len=64,
                S_MAX=1,
                D=128,
                GROUP=4,
                PRECISION=prec,
                BLOCK_G=16,
                BLOCK_N=64,
                BLOCK_D=128,
            ),
            4,
        )
    yield (
        "decode_reduce",
        da._decode_reduce,
        dict(MID_O=f32, MID_LSE=f32, OUT=bf, so_b=1, so_h=1, n_heads=1, n_splits=1, D=128, BLOCK_S=64, BLOCK_D=128),
        4,
    )
    for grad in (False, True):
        for dtype, tag in ((bf, "bf16"), (f32, "fp32")):
            yield (
                f"ce_rows {tag} grad={grad}",
                ce._ce_rows,
                dict(
                    LOGITS=dtype,
                    TARGETS=i64,
                    SCALE=f32,
                    LSE=f32,
                    TGT=f32,
                    stride=1,
                    V=1,
                    ignore_index=-100,
                    WRITE_GRAD=grad,
                    BLOCK_V=8192,
                ),
                16,
            )


def main() -> int:
    failed = 0
    for name, fn, values, warps in configs():
        sig, const = signature(fn, values)
        try:
            options = warps if isinstance(warps, dict) else {"num_warps": warps}
            k = triton.compile(ASTSource(fn, sig, constexprs=const), target=TARGET, options=options)
            regs, stack = registers(k.asm["cubin"])
            # Shared memory must fit; bf16 kernels (the GPU path) must not spill registers to the stack.
            ok = k.metadata.shared <= SMEM_LIMIT and (stack == 0 or "fp32" in name)
            print(
                json.dumps({"kernel": name, "ok": ok, "shared": k.metadata.shared, "regs": regs, "stack": stack}),
                flush=True,
            )
        except Exception as e:  # noqa: BLE001 - report every kernel, then fail
            ok = False
            print(json.dumps({"kernel": name, "ok": False, "error": f"{type(e).__name__}: {e}"[:2000]}), flush=True)
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

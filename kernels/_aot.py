"""Compile the perspective_cross_entropy kernels ahead of time for a GPU target, without a GPU.

``python -m mindcore.kernels._aot [sm] [dtype] [d]`` prints shared memory, registers and whether the
tensor-core path (wgmma on sm90) was used, for the configs ``gpu_configs`` picks. Must run with
TRITON_INTERPRET unset (interpreted kernels cannot be compiled).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from . import perspective_cross_entropy as K
from . import perspective_cross_entropy_cublas as KC

_TYPES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def _signature(kern, consts, dt, **overrides):
    special = dict(h_ptr=dt, w_ptr=dt, b_ptr=dt, e_ptr=dt, g_ptr=dt, gh_ptr=dt, gw_ptr=dt,
                   tgt_ptr="*i64", pid_ptr="*i64", ptok_ptr="*i64", cnt_ptr="*i64", slots_ptr="*i64",
                   ncnt_ptr="*i64", ticket_ptr="*i32", momentum="fp32", one_minus_momentum="fp32")
    special.update(overrides)
    return {name: "constexpr" if name in consts else special.get(name, "*fp32" if name.endswith("_ptr") else "i32")
            for name in kern.arg_names}


def compile_all(sm=90, dtype=torch.bfloat16, d=4096):
    """[(kernel name, compiled kernel)] for the config of (sm, dtype, d)."""
    cfg = K.gpu_configs(sm // 10, dtype, d)
    mm, dt = cfg["mm"], "*" + _TYPES[dtype]
    ieee = dtype == torch.float32
    grad_mm = dict(mm, BN=cfg["bn_d"])
    kernels = [
        (K._logits_kernel, dict(HAS_BIAS=True, STORE_E=True, UPCAST=False, RNE_BF16=False, IEEE=ieee, **mm), True),
        (K._grad_hidden_kernel, dict(UPCAST=False, RNE_BF16=False, IEEE=ieee, **grad_mm), True),
        (K._grad_weight_kernel, dict(ACCUMULATE=True, HAS_BIAS=True, UPCAST=False, RNE_BF16=False, IEEE=ieee, **grad_mm), True),
        (K._rows_kernel, dict(WRITE_GRAD=True, HAS_SLOTS=True, RNE_BF16=False, BR=cfg["BR"], VSPLIT=cfg["VSPLIT"], BT=cfg["BT"],
                              TILE_N=mm["BN"], BP=cfg["BP"]), False),
        # the cublas provider's row kernel (its GEMMs are cuBLAS'): fp32 logits and bias, 16-bit G
        (KC._row_kernel, dict(HAS_BIAS=True, WRITE_GRAD=True, IN_PLACE_16=dtype != torch.float32, RNE_BF16=False,
                              BLOCK=4096), False),
    ]
    out = []
    for kern, consts, gemm in kernels:
        sig = _signature(kern, consts, dt, **({"b_ptr": "*fp32"} if kern is KC._row_kernel else {}))
        # What the JIT specialises at real shapes: 16-byte aligned pointers, d and V multiples of 16.
        attrs = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(kern.arg_names)
                 if name not in consts and (sig[name].startswith("*") or name in ("V", "D"))}
        opts = dict(num_warps=cfg["warps"] if gemm else (8 if kern is KC._row_kernel else 4),
                    num_stages=cfg["stages"] if gemm else 1)
        src = ASTSource(fn=kern, signature=sig, constexprs=consts, attrs=attrs)
        name = f"{kern.__module__.rsplit('.', 1)[-1]}.{kern.__name__}"
        out.append((name, triton.compile(src, target=GPUTarget("cuda", sm, 32), options=opts)))
    return out


def _registers(compiled):
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(tool):
        return "?"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        res = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True).stdout
    return " ".join(w for line in res.splitlines() if "REG:" in line for w in line.split()[:2])


def main(argv):
    sm = int(argv[0]) if argv else 90
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[argv[1] if len(argv) > 1 else "bf16"]
    d = int(argv[2]) if len(argv) > 2 else 4096
    for name, k in compile_all(sm, dtype, d):
        ptx = k.asm["ptx"]
        print(f"{name:22s} smem={k.metadata.shared:7d} {_registers(k)} wgmma={'wgmma.mma_async' in ptx} "
              f"mma={'mma.sync' in ptx}")


if __name__ == "__main__":
    main(sys.argv[1:])

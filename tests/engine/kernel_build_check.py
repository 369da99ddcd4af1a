"""Compile engine/fused_norm.py's and engine/subpixel.py's kernels for an H100 (sm_90) without a GPU, each size argument also fixed to 1.

Triton turns an integer argument equal to 1 into a compile-time constant on a real GPU (a
16x16 picture gives 1x1 latents), which its CPU interpreter never does; a kernel that calls
a method on such an argument compiles in the interpreter and fails on the GPU. Run by
tests/engine/test_fused_norm.py in a process of its own (without TRITON_INTERPRET).
Prints one line per failure and exits 1 if any.
"""

from __future__ import annotations

import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from engine import fused_norm as fn
from engine import subpixel

SIZES = ("C", "P", "H", "W", "G", "CPG", "splits", "rows_per_program")
ACTIVATIONS = ("x_ptr", "y_ptr", "dy_ptr", "dx_ptr", "src_ptr", "dst_ptr", "gy_ptr", "g_ptr")
FLOATS = ("eps",)


def main() -> int:
    kernels = [fn._stats_kernel, fn._stats_finalize_kernel, fn._apply_kernel, fn._grad_sums_kernel,
               fn._grad_finalize_kernel, fn._grad_input_kernel, subpixel._interleave_kernel, subpixel._phases_kernel]
    meta = {"BLOCK_P": 16, "BLOCK_C": 128, "HAS_PB": True, "SILU": True, "CPG": 4, "BLOCK_CPG": 4, "BLOCK_S": 8}
    target = GPUTarget("cuda", 90, 32)
    failures = 0
    for kernel in kernels:
        names = kernel.arg_names
        constexprs = {name: value for name, value in meta.items() if name in names}
        sizes = [name for name in names if name in SIZES and name not in constexprs]
        for one in [None, *sizes]:
            signature = {}
            for name in names:
                if name in constexprs or name == one:
                    signature[name] = "constexpr"
                elif name.endswith("_ptr"):
                    signature[name] = "*bf16" if name in ACTIVATIONS else "*fp32"
                else:
                    signature[name] = "fp32" if name in FLOATS else "i32"
            fixed = {(names.index(name),): value for name, value in constexprs.items()}
            if one:
                fixed[(names.index(one),)] = 1
            try:
                triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=fixed), target=target)
            except Exception as error:
                failures += 1
                last = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
                print(f"{kernel.fn.__name__} with {one or 'no argument'} = 1: {last[:200]}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

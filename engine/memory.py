"""Admission: predict a batch's GPU memory before it starts, so a worker never runs out.

The figures are peak-memory measurements of the engine on an H200 and an H100 (bench/results/,
512x512 and 256x256, 32 cutouts, VQGAN f16 + ViT-B/32, bf16 weights): a job costs
a part that grows with its pixels and a part that grows with its cutouts. A safety
margin covers other VQGANs and allocator fragmentation.
"""

from __future__ import annotations

from dataclasses import dataclass

# Per job at 512x512 and 32 cutouts, eager: 3.18 GiB; at 256x256: 1.22 GiB. Solving
# a + b = 3.18 and a + b/4 = 1.22 gives the cutout part a and the pixel part b.
PIXEL_GIB_AT_512 = 2.61
CUTOUT_GIB_AT_32 = 0.57
# torch.compile's step without engine/fused_norm.py's kernels: 1.82 GiB a job at 512x512 against 3.18
# (H100, CUDA graphs, channels-last, engine/layers.py: peak = 1.43 + 1.82 x jobs GiB, 1 to 16 jobs).
COMPILED_FACTOR = 0.57
# With the fused group norm and frozen convolutions (H100, bench/results/2026-11-27-h100-fused.log):
# peak = 1.35 + 1.09 x jobs GiB at 512x512 and 1.36 + 0.60 x jobs at 256x256 (2 to 16 jobs), so
# a + b = 1.09 and a + b/4 = 0.60 for the cutout part a and the pixel part b.
FUSED_PIXEL_GIB_AT_512 = 0.65
FUSED_CUTOUT_GIB_AT_32 = 0.44
MARGIN = 1.25
RESERVE_GIB = 0.75  # left free for the allocator, previews and the CUDA context's growth


@dataclass(frozen=True)
class BatchShape:
    width: int
    height: int
    cutn: int
    compiled: bool = False
    fused: bool = False  # compiled with the fused group norm kernels (CUDA with triton)


def job_gib(shape: BatchShape) -> float:
    """Predicted GPU memory one job adds to a batch, in GiB, margin included."""
    pixels = shape.width * shape.height / (512 * 512)
    if shape.compiled and shape.fused:
        gib = FUSED_PIXEL_GIB_AT_512 * pixels + FUSED_CUTOUT_GIB_AT_32 * shape.cutn / 32
    else:
        gib = PIXEL_GIB_AT_512 * pixels + CUTOUT_GIB_AT_32 * shape.cutn / 32
        if shape.compiled:
            gib *= COMPILED_FACTOR
    return gib * MARGIN


def max_batch(free_gib: float, shape: BatchShape, *, limit: int) -> int:
    """How many jobs of this shape fit in ``free_gib`` (at most ``limit``; 0 when not even one fits)."""
    usable = free_gib - RESERVE_GIB
    if usable <= 0:
        return 0
    return max(0, min(limit, int(usable // job_gib(shape))))

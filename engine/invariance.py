"""What keeps a job's numbers its own, whatever batch it is in, whenever it joined, however often resumed.

- Random numbers come from counter-based streams: a stream's seed is a hash of (what it is for, the
  job's seed, the step number), never the state of a generator that earlier steps advanced. A job's
  step 137 draws the same cutouts alone, in a batch of eight, after joining late or after a resume.
  Reseeding one generator per draw is host-side bookkeeping (no device sync, nothing inside the
  compiled step: the draws are the step's inputs).
- Kernels: a batched convolution or matmul picks its kernel (and so its rounding) by the batch's size,
  on the CPU (oneDNN, MKL) as on CUDA. The CPU's eager step therefore computes each job as a batch of one
  (``one_at_a_time``; a CPU gains next to nothing from batching), so there a job's picture is bit for bit
  the same alone, batched, joined late or resumed. Batched GPU steps (cuDNN, cuBLAS, bf16) match a job's
  solo run within float tolerance.
"""

from __future__ import annotations

import torch

START, STEP, IMAGE_PROMPT = 0, 1, 2  # what a stream is for; part of its seed
_MASK = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def stream_seed(purpose: int, seed: int, counter: int = 0) -> int:
    """The seed of one random stream: a hash of its purpose, the job's seed and a counter (the step).

    63 bits, a valid ``manual_seed`` on every device; its low 32 bits (all the CPU's Mersenne twister
    reads) are as well mixed as the rest, so seeds that differ only in high bits still differ.
    """
    h = 0
    for part in (purpose, seed, counter):
        h = _splitmix64(h ^ (part & _MASK))
    return h >> 1


def step_seed(seed: int, step: int) -> int:
    """The stream of a job's step ``step`` (0 for its first): cutout sizes, offsets, augmentations, noise."""
    return stream_seed(STEP, seed, step)


def start_seed(seed: int) -> int:
    """The stream of a job's random start latent."""
    return stream_seed(START, seed)


def one_at_a_time(device: torch.device, compile_mode: str) -> bool:
    """Whether a batch on ``device`` steps its jobs one by one: the CPU's eager step. Compiled CPU steps
    (tests of the compiled path) stay batched, as on a GPU."""
    return device.type == "cpu" and compile_mode == "none"

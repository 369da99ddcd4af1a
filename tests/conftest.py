"""Session-wide test settings."""

from __future__ import annotations

import os

import torch

# engine/fused_norm.py's Triton kernels run in Triton's CPU interpreter on machines without a GPU
# (CI); the variable must be set before triton is first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

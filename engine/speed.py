"""Speed levers that keep the computation the same: a parallel group norm, bf16 weights, torch.compile.

PyTorch's GroupNorm kernel computes each group's statistics in one thread
block: the VQGAN decoder's 32 groups of 4 x 512 x 512 values at 512x512 leave
most of an H100 idle (a quarter of a step's GPU time in a profile).
``ParallelGroupNorm`` computes the same function through batch norm's kernels,
which split each group's reduction over many blocks.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


class ParallelGroupNorm(nn.Module):
    """Same result as ``nn.GroupNorm`` (affine), computed with batch norm's parallel reduction."""

    def __init__(self, norm: nn.GroupNorm) -> None:
        super().__init__()
        self.num_groups, self.num_channels, self.eps = norm.num_groups, norm.num_channels, norm.eps
        self.weight = norm.weight
        self.bias = norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W), normalised over each group of C / num_groups channels."""
        b, c, h, w = x.shape
        grouped = x.reshape(1, b * self.num_groups, -1)
        normed = F.batch_norm(grouped, None, None, training=True, momentum=0.0, eps=self.eps).view(b, c, h, w)
        return torch.addcmul(self.bias.view(1, c, 1, 1).to(x.dtype), normed, self.weight.view(1, c, 1, 1).to(x.dtype))


def use_parallel_group_norm(module: nn.Module) -> int:
    """Swap every nn.GroupNorm inside ``module`` for ParallelGroupNorm; returns how many."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.GroupNorm) and child.affine:
            setattr(module, name, ParallelGroupNorm(child))
            count += 1
        else:
            count += use_parallel_group_norm(child)
    return count

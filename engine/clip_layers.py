"""Drop-in versions of open_clip's image-tower layers that compile into faster GPU code.

They compute what the originals compute, with the same weights and state_dict keys
(class swaps, like engine/layers.py does for the VQGAN decoder):

- Self-attention batch-first from end to end. ``nn.MultiheadAttention`` turns a
  batch-first input into (tokens, batch, width) and splits the packed projection
  along a middle axis; with the batch dimension dynamic (engine/compiling.py),
  Inductor's kernel that packs the q/k/v gradients back together divided indices
  by the symbolic batch size and ran at a tenth of its static speed (3.2 ms a step
  of 8 jobs on an H100, bench/results/2026-11-28-h100-clip.log). Here the batch
  stays the outermost axis, so no index is divided by it, and the packed
  projection is one matrix product instead of one per token.
- The patch embedding (a convolution whose stride is its kernel size) as one
  matrix product over the patches: cuDNN ran it as a 40 TFLOP/s kernel (1.5 ms a
  step of 8 jobs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BatchFirstSelfAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention for self-attention on batch-first input without a mask, as open_clip's
    image tower calls it; any other call goes to nn.MultiheadAttention's own code."""

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_padding_mask=None,
                need_weights: bool = True, attn_mask=None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        if (query is not key or key is not value or need_weights or attn_mask is not None
                or key_padding_mask is not None or is_causal or query.dim() != 3 or not _plain_attention(self)):
            return super().forward(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                                   attn_mask=attn_mask, average_attn_weights=average_attn_weights, is_causal=is_causal)
        n, length, width = query.shape
        heads = self.num_heads
        qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(n, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)  # (n, heads, L, d)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(n, length, width)
        return F.linear(out, self.out_proj.weight, self.out_proj.bias), None


def _plain_attention(attn: nn.MultiheadAttention) -> bool:
    """Packed q/k/v weights, batch-first, and nothing beyond softmax(qk^T/sqrt(d))v (no dropout in training)."""
    return (attn.batch_first and attn._qkv_same_embed_dim and attn.bias_k is None and not attn.add_zero_attn
            and (attn.dropout == 0 or not attn.training))


class PatchEmbedding(nn.Conv2d):
    """A convolution whose stride equals its kernel size (ViT's patch embedding), as one matrix product
    over the patches; other shapes and settings go to nn.Conv2d's own code."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        if (x.dim() != 4 or tuple(self.stride) != (kh, kw) or self.groups != 1 or any(self.padding)
                or tuple(self.dilation) != (1, 1) or self.padding_mode != "zeros" or x.shape[2] % kh or x.shape[3] % kw):
            return super().forward(x)
        n, c, h, w = x.shape
        gh, gw = h // kh, w // kw
        patches = x.view(n, c, gh, kh, gw, kw).permute(0, 2, 4, 1, 3, 5).reshape(n * gh * gw, c * kh * kw)
        out = F.linear(patches, self.weight.reshape(self.out_channels, -1), self.bias)
        # (n, out, gh, gw) as a view of the (n, gh, gw, out) product: open_clip flattens and transposes it back
        return out.view(n, gh, gw, self.out_channels).permute(0, 3, 1, 2)


def use_fast_clip_layers(model: nn.Module) -> nn.Module:
    """Swap the image tower's attention and patch embedding of an open_clip model for the versions above.

    Only the image tower (``model.visual``): the text tower's attention has a causal
    mask, and text embeddings are computed once a job. Modules of other types (other
    architectures) are left as they are.
    """
    visual = getattr(model, "visual", None)
    if visual is None:
        return model
    for module in visual.modules():
        if type(module) is nn.MultiheadAttention and _plain_attention(module):
            module.__class__ = BatchFirstSelfAttention
    conv1 = getattr(visual, "conv1", None)
    if type(conv1) is nn.Conv2d and tuple(conv1.stride) == tuple(conv1.kernel_size) and conv1.padding in ((0, 0), "valid"):
        conv1.__class__ = PatchEmbedding  # a ViT's patch embedding (not e.g. a ResNet's stem)
    return model

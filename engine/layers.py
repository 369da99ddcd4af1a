"""Drop-in versions of the decoder's layers and of grid_sample that compile into fast GPU code.

They compute what the originals compute. Under ``torch.compile`` they are
written so that Inductor emits good kernels whatever memory layout it picks
for the activations (channels-last keeps cuDNN's Hopper convolutions free of
layout transposes); run eagerly, they call the original fused kernels.

- GroupNorm: statistics as per-channel reductions over the pixels, then per
  group. Inductor's own group-norm reduction is about 6x slower on
  channels-last activations (profile in bench/results/).
- Nearest 2x upsampling as a broadcast: its gradient is a sum over each 2x2
  block, where the interpolate kernel's gradient is a scatter with atomics.
- grid_sample as one opaque operation: the aten CUDA kernel reads any layout;
  Inductor's decomposition of it is 7x slower on a channels-last picture.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from taming.modules.diffusionmodules.model import Upsample
from torch import nn


def group_norm_by_channels(x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None,
                           eps: float) -> torch.Tensor:
    """torch.nn.functional.group_norm for (B, C, H, W), in float32, with two-pass statistics."""
    b, c = x.shape[:2]
    per = c // groups
    xf = x.float()
    mean = xf.mean(dim=(2, 3)).view(b, groups, per).mean(2)
    centred = xf - mean.view(b, groups, 1).expand(b, groups, per).reshape(b, c, 1, 1)
    var = centred.square().mean(dim=(2, 3)).view(b, groups, per).mean(2)
    y = centred * torch.rsqrt(var + eps).view(b, groups, 1).expand(b, groups, per).reshape(b, c, 1, 1)
    if weight is not None:
        y = y * weight.float().view(1, c, 1, 1) + bias.float().view(1, c, 1, 1)
    if x.device.type == "cuda" and torch.is_autocast_enabled("cuda"):
        return y  # CUDA autocast runs group_norm in float32 and returns float32; so do we
    return y.to(x.dtype)


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm whose compiled form reduces per channel first (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or not torch.compiler.is_compiling():
            return super().forward(x)
        return group_norm_by_channels(x, self.num_groups, self.weight, self.bias, self.eps)


def upsample_nearest_2x(x: torch.Tensor) -> torch.Tensor:
    """F.interpolate(x, scale_factor=2, mode="nearest") for (B, C, H, W), as a broadcast."""
    b, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)


class NearestUpsample(Upsample):
    """taming's Upsample (nearest 2x, then an optional conv) with a compile-friendly gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            x = upsample_nearest_2x(x)
        else:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.with_conv else x


def use_fast_layers(model: nn.Module) -> nn.Module:
    """Swap the GroupNorm and taming Upsample modules of ``model`` for the versions above (same weights)."""
    for module in model.modules():
        if type(module) is nn.GroupNorm:
            module.__class__ = GroupNorm
        elif type(module) is Upsample:
            module.__class__ = NearestUpsample
    return model


@torch.library.custom_op("vqbot::grid_sample", mutates_args=())
def grid_sample(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """F.grid_sample(image, grid), bilinear, zero padding, align_corners=False; one opaque op under compile."""
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@grid_sample.register_fake
def _grid_sample_shape(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return image.new_empty(image.shape[0], image.shape[1], grid.shape[1], grid.shape[2])


def _grid_sample_setup(ctx, inputs, output) -> None:  # noqa: ANN001
    ctx.save_for_backward(*inputs)


def _grid_sample_backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN202
    image, grid = ctx.saved_tensors
    want = [ctx.needs_input_grad[0], ctx.needs_input_grad[1]]
    grad_image, grad_grid = torch.ops.aten.grid_sampler_2d_backward(grad.contiguous(), image, grid, 0, 0, False, want)
    return (grad_image if want[0] else None), (grad_grid if want[1] else None)


grid_sample.register_autograd(_grid_sample_backward, setup_context=_grid_sample_setup)

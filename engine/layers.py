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
- Group norm followed by SiLU (the decoder's ResnetBlocks and its last layers)
  as one operation with hand-written kernels on CUDA (engine/fused_norm.py):
  fewer passes over the activations and only the input kept for the backward.
- Frozen convolutions (frozen_conv2d): the backward pass keeps only the weight,
  not the input; the upsampling conv doubles its input inside the operation.
- grid_sample as one opaque operation: the aten CUDA kernel reads any layout;
  Inductor's decomposition of it is 7x slower on a channels-last picture.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from taming.modules.diffusionmodules.model import Decoder, ResnetBlock, Upsample, nonlinearity
from torch import nn

from engine import fused_norm, subpixel
from engine.compiling import custom_op


@dataclass(frozen=True)
class LayerSwitches:
    """Which of the fast paths below compiled steps take; read when a step is traced.

    ``fused_norm_devices``: devices whose compiled steps use engine/fused_norm.py's kernels for
    group norm + SiLU (an engine with ``fused_kernels=False`` leaves its device out; the CPU tests
    add "cpu", where the kernels run in Triton's interpreter; bench/profile_engine.py turns them
    off to measure what they give). ``subpixel_upsample``: on that path, the upsampling 3x3
    convolutions run on the small picture (engine/subpixel.py).
    """

    fused_norm_devices: frozenset[str] = frozenset({"cuda"})
    subpixel_upsample: bool = True


DEFAULT_SWITCHES = LayerSwitches()
# A module global, not a ContextVar: the switches are read while Dynamo traces a step, and Dynamo
# (torch 2.11) breaks the graph at a ContextVar read (each decoder block then compiled apart:
# 14 steps/s on an H200 instead of ~90). Dynamo guards on a global, so a change recompiles.
_switches = DEFAULT_SWITCHES


def switches() -> LayerSwitches:
    """The switches in force now."""
    return _switches


@contextlib.contextmanager
def switched(*, fused_norm_devices: Iterable[str] | None = None,
             subpixel_upsample: bool | None = None) -> Iterator[LayerSwitches]:
    """Change the switches for the code inside the block; as they were again on exit. They hold for the
    whole process while the block runs (one engine per process runs compiled steps)."""
    global _switches
    before = _switches
    now = before
    if fused_norm_devices is not None:
        now = replace(now, fused_norm_devices=frozenset(fused_norm_devices))
    if subpixel_upsample is not None:
        now = replace(now, subpixel_upsample=subpixel_upsample)
    _switches = now
    try:
        yield now
    finally:
        _switches = before


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
        y = y * weight.float().view(1, c, 1, 1)
    if bias is not None:
        y = y + bias.float().view(1, c, 1, 1)
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
        if self.with_conv and isinstance(self.conv, FrozenConv2d) and self.conv.frozen(x):
            return self.conv.upsampled(x)
        if torch.compiler.is_compiling():
            x = upsample_nearest_2x(x)
        else:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.with_conv else x


def uses_fused_kernels(device: torch.device, *, autocast: bool = False) -> bool:
    """Whether compiled steps on ``device`` run the fused kernels and frozen convolutions (it changes their
    memory, engine/memory.py): a listed device, and no autocast (the engine runs bf16 weights; the
    kernels were measured so; fp16 precision keeps Inductor's code)."""
    return not autocast and device.type in switches().fused_norm_devices and fused_norm.available()


def fast_path(x: torch.Tensor, *frozen: torch.Tensor | None) -> bool:
    """Whether this compiled step may use the fused kernels and frozen convolutions (frozen parameters)."""
    return (uses_fused_kernels(x.device, autocast=torch.is_autocast_enabled(x.device.type)) and x.dim() == 4
            and torch.compiler.is_compiling() and not any(p is not None and p.requires_grad for p in frozen))


def norm_silu(norm: nn.GroupNorm, x: torch.Tensor, pre_bias: torch.Tensor | None = None) -> torch.Tensor:
    """nonlinearity(norm(x + pre_bias)); one fused operation in a compiled CUDA step (frozen weights)."""
    if fast_path(x, norm.weight, norm.bias, pre_bias):
        return fused_norm.group_norm_silu(x, norm.weight, norm.bias, norm.num_groups, norm.eps, True, x.dtype,
                                          pre_bias=pre_bias)
    if pre_bias is not None:
        x = x + pre_bias.view(1, -1, 1, 1)
    return nonlinearity(norm(x))


@custom_op("vqbot::frozen_conv2d", flexible_layout=True)
def frozen_conv2d(x: torch.Tensor, weight: torch.Tensor, padding: int, upsample: bool = False) -> torch.Tensor:
    """F.conv2d(x, weight, padding=padding) (stride 1, no bias) whose backward keeps only the weight.

    Autograd's own convolution keeps its input for the backward pass even when the
    weight is frozen and only the input's gradient is wanted; for the decoder that
    is every SiLU output at full resolution. The input's gradient of a stride-1
    convolution is the transposed convolution of the gradient, which needs only
    the weight. ``upsample`` first doubles x's size (nearest), inside the op: the
    doubled activations are written in x's layout and never kept (Inductor wrote
    them NCHW whatever was asked, and cuDNN copied them to channels-last again).
    """
    if upsample:
        x = upsample_nearest_2x_channels_last(x)
    return F.conv2d(x, weight, None, 1, padding)


@frozen_conv2d.register_fake
def _frozen_conv2d_shape(x: torch.Tensor, weight: torch.Tensor, padding: int, upsample: bool = False) -> torch.Tensor:
    if upsample:  # on fake tensors: the shape and strides the real one has
        x = upsample_nearest_2x_channels_last(x)
    return F.conv2d(x, weight, None, 1, padding)


def upsample_nearest_2x_channels_last(x: torch.Tensor) -> torch.Tensor:
    """Nearest 2x upsampling of (B, C, H, W), returned channels-last: one broadcasting copy with the
    channels innermost (aten's channels-last nearest-upsampling kernel took 5x longer on an H100)."""
    b, c, h, w = x.shape
    pixels = x.permute(0, 2, 3, 1)
    doubled = pixels[:, :, None, :, None, :].expand(b, h, 2, w, 2, c).reshape(b, 2 * h, 2 * w, c)
    return doubled.permute(0, 3, 1, 2)


def _frozen_conv2d_setup(ctx, inputs, output) -> None:
    _x, weight, padding, upsample = inputs
    ctx.save_for_backward(weight)
    ctx.padding, ctx.upsample = padding, upsample


def _frozen_conv2d_backward(ctx, grad: torch.Tensor):
    (weight,) = ctx.saved_tensors
    if ctx.needs_input_grad[1]:
        raise NotImplementedError("frozen_conv2d has no gradient for its weight")
    grad_x = F.conv_transpose2d(grad, weight, None, 1, ctx.padding)
    if ctx.upsample:  # nearest 2x: each input pixel's gradient is the sum over its 2x2 block
        n, c, h, w = grad_x.shape
        grad_x = grad_x.view(n, c, h // 2, 2, w // 2, 2).sum((3, 5))
    return grad_x, None, None, None


frozen_conv2d.register_autograd(_frozen_conv2d_backward, setup_context=_frozen_conv2d_setup)


class FrozenConv2d(nn.Conv2d):
    """nn.Conv2d that, in a compiled step with frozen weights, keeps only its weight for the backward pass."""

    def frozen(self, x: torch.Tensor) -> bool:
        """Whether this call may use frozen_conv2d (compiled fast path, a plain stride-1 convolution)."""
        return (fast_path(x, self.weight, self.bias) and self.stride == (1, 1) and self.dilation == (1, 1)
                and self.groups == 1 and self.padding_mode == "zeros" and isinstance(self.padding, tuple)
                and self.padding[0] == self.padding[1])

    def without_bias(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution before its bias is added."""
        if self.frozen(x):
            return frozen_conv2d(x, self.weight, self.padding[0])
        return self._conv_forward(x, self.weight, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.frozen(x):
            return super().forward(x)
        return self._frozen_forward(x, upsample=False)

    def upsampled(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution of x doubled in size (nearest), for calls where ``frozen(x)`` holds (stride 1,
        ungrouped): a 3x3 one with padding 1 on the small picture (engine/subpixel.py), any other in one
        frozen_conv2d."""
        if switches().subpixel_upsample and self.kernel_size == (3, 3) and self.padding == (1, 1):
            return self._plus_bias(subpixel.upsample_conv3x3(x, subpixel.phase_weights(self.weight)))
        return self._frozen_forward(x, upsample=True)

    def _frozen_forward(self, x: torch.Tensor, *, upsample: bool) -> torch.Tensor:
        c = self.out_channels
        if c % 8:
            # cuDNN's channels-last kernels want a multiple of 8 output channels; zero
            # filters up to the next multiple, sliced off again (the decoder's conv_out has 3)
            weight = F.pad(self.weight, (0, 0, 0, 0, 0, 0, 0, -c % 8)).contiguous(memory_format=torch.channels_last)
            return self._plus_bias(frozen_conv2d(x, weight, self.padding[0], upsample)[:, :c])
        return self._plus_bias(frozen_conv2d(x, self.weight, self.padding[0], upsample))

    def _plus_bias(self, out: torch.Tensor) -> torch.Tensor:
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


class FusedResnetBlock(ResnetBlock):
    """taming's ResnetBlock with group norm + SiLU as one operation in compiled CUDA steps (same weights)."""

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        if temb is not None or not fast_path(x, self.norm1.weight) or not isinstance(self.conv1, FrozenConv2d):
            return super().forward(x, temb)
        # conv1's bias goes into the second group norm instead of a pass of its own
        h = self.conv1.without_bias(norm_silu(self.norm1, x))
        h = self.conv2(self.dropout(norm_silu(self.norm2, h, pre_bias=self.conv1.bias)))
        if self.in_channels != self.out_channels:
            x = self.conv_shortcut(x) if self.use_conv_shortcut else self.nin_shortcut(x)
        return x + h


class FusedDecoder(Decoder):
    """taming's Decoder whose last group norm + SiLU is one operation (same weights, same result)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.last_z_shape = z.shape
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z), None)), None)
        for i_level in reversed(range(self.num_resolutions)):
            level = self.up[i_level]
            for i_block in range(self.num_res_blocks + 1):
                h = level.block[i_block](h, None)
                if len(level.attn) > 0:
                    h = level.attn[i_block](h)
            if i_level != 0:
                h = level.upsample(h)
        if self.give_pre_end:
            return h
        h = self.conv_out(norm_silu(self.norm_out, h))
        return torch.tanh(h) if getattr(self, "tanh_out", False) else h


def prepare_for_compile(model: nn.Module, device: torch.device, *, autocast: bool = False) -> None:
    """Channels-last convolution weights where the fused kernels run, so activations stay channels-last.

    The frozen convolutions are opaque to Inductor, which therefore no longer picks
    their layout: cuDNN follows the weights' layout, and channels-last is what its
    Hopper kernels want. Eager runs keep the weights as they are (eager bf16 is
    faster on contiguous weights, bench/results/2026-11-27-h200-profile.log).
    """
    if uses_fused_kernels(device, autocast=autocast):
        model.to(memory_format=torch.channels_last)


def use_fast_layers(model: nn.Module) -> nn.Module:
    """Swap taming's modules in ``model`` for the versions above (same weights, same state_dict keys)."""
    swaps = {nn.GroupNorm: GroupNorm, Upsample: NearestUpsample, ResnetBlock: FusedResnetBlock, Decoder: FusedDecoder,
             nn.Conv2d: FrozenConv2d}
    for module in model.modules():
        if type(module) in swaps:
            module.__class__ = swaps[type(module)]
    return model


@torch.library.custom_op("vqbot::grid_sample", mutates_args=())
def grid_sample(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """F.grid_sample(image, grid), bilinear, zero padding, align_corners=False; one opaque op under compile."""
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@grid_sample.register_fake
def _grid_sample_shape(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return image.new_empty(image.shape[0], image.shape[1], grid.shape[1], grid.shape[2])


def _grid_sample_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _grid_sample_backward(ctx, grad: torch.Tensor):
    image, grid = ctx.saved_tensors
    want = [ctx.needs_input_grad[0], ctx.needs_input_grad[1]]
    grad_image, grad_grid = torch.ops.aten.grid_sampler_2d_backward(grad.contiguous(), image, grid, 0, 0, False, want)
    return (grad_image if want[0] else None), (grad_grid if want[1] else None)


grid_sample.register_autograd(_grid_sample_backward, setup_context=_grid_sample_setup)

"""Nearest 2x upsampling then a 3x3 convolution (padding 1), computed on the small picture.

Through the 3x3 kernel, the upsampled picture's pixel (2i+a, 2j+b) sees only input
rows i-1..i (a = 0) or i..i+1 (a = 1), and the same for columns. So each of the
four phases (a, b) is a 2x2 convolution of the small picture whose taps are sums of
the 3x3 taps, and all four run as one 2x2 convolution with four times the output
channels over the small picture padded by one: 4/9 of the multiply-adds of the 3x3
convolution of the doubled picture, and the doubled input is never written. A
gather kernel interleaves the four phases into the output; the backward pass
gathers the gradient back into phases and runs the transposed 2x2 convolution.

What differs from the plain computation: the summed taps are rounded once to the
weights' dtype (bf16 on the GPU), where the plain convolution adds the same
products in float32 inside cuDNN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.compiling import custom_op
from engine.fused_norm import ELEMENTWISE_TILE, ELEMENTWISE_WARPS, _launch, _strides, triton

if triton is not None:
    import triton.language as tl

    @triton.jit
    def _interleave_kernel(src_ptr, dst_ptr, C, H, W, ssn, ssc, ssh, ssw, sdn, sdc, sdh, sdw,
                           BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        """dst[n, c, 2i+a, 2j+b] = src[n, (2a+b)C + c, i+a, j+b] for a tile of dst's pixels of picture n."""
        n = tl.program_id(1)
        ps = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        pmask = ps < 4 * H * W
        p = ps // (2 * W)
        q = ps % (2 * W)
        a = p % 2
        b = q % 2
        src_pixel = (p // 2 + a) * ssh + (q // 2 + b) * ssw + (2 * a + b) * C * ssc
        dst_pixel = p * sdh + q * sdw
        src = src_ptr + n.to(tl.int64) * ssn
        dst = dst_ptr + n.to(tl.int64) * sdn
        for c0 in range(0, C, BLOCK_C):
            cs = c0 + tl.arange(0, BLOCK_C)
            mask = pmask[:, None] & (cs < C)[None, :]
            v = tl.load(src + src_pixel[:, None] + (cs * ssc)[None, :], mask=mask)
            tl.store(dst + dst_pixel[:, None] + (cs * sdc)[None, :], v, mask=mask)

    @triton.jit
    def _phases_kernel(gy_ptr, g_ptr, C, H, W, syn, syc, syh, syw, sgn, sgc, sgh, sgw,
                       BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        """The reverse gather: g[n, (2a+b)C + c, i', j'] = gy[n, c, 2(i'-a)+a, 2(j'-b)+b], zero off the picture."""
        n = tl.program_id(1)
        ps = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        pmask = ps < (H + 1) * (W + 1)
        i = ps // (W + 1)
        j = ps % (W + 1)
        gy = gy_ptr + n.to(tl.int64) * syn
        g = g_ptr + n.to(tl.int64) * sgn
        for phase in tl.static_range(4):
            a = phase // 2
            b = phase % 2
            inside = pmask & (i - a >= 0) & (i - a < H) & (j - b >= 0) & (j - b < W)
            gy_pixel = (2 * i - a) * syh + (2 * j - b) * syw
            g_pixel = i * sgh + j * sgw + phase * C * sgc
            for c0 in range(0, C, BLOCK_C):
                cs = c0 + tl.arange(0, BLOCK_C)
                cmask = (cs < C)[None, :]
                v = tl.load(gy + gy_pixel[:, None] + (cs * syc)[None, :], mask=inside[:, None] & cmask, other=0.0)
                tl.store(g + g_pixel[:, None] + (cs * sgc)[None, :], v, mask=pmask[:, None] & cmask)


def phase_weights(weight: torch.Tensor) -> torch.Tensor:
    """(Cout, Cin, 3, 3) 3x3 taps -> (4 Cout, Cin, 2, 2) 2x2 taps of the four phases, in order (a, b),
    summed in float32, in the weight's dtype."""
    _cout, _cin = weight.shape[:2]
    w = weight.float()

    def phases(t: torch.Tensor, dim: int) -> list[torch.Tensor]:
        first, middle, last = t.unbind(dim)
        return [torch.stack([first, middle + last], dim), torch.stack([first + middle, last], dim)]

    four = [col for row in phases(w, 2) for col in phases(row, 3)]
    return torch.cat(four).to(weight.dtype)


def _channels_last(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """An empty channels-last tensor in ``like``'s dtype and device. The operations below always return
    channels-last tensors: Inductor hands them inputs in whatever layout it has (flexible_layout), so
    an output layout that followed the inputs' could differ from what was traced."""
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=torch.channels_last)


def _check(x: torch.Tensor, phase_weight: torch.Tensor) -> None:
    _n, cin, h, w = x.shape
    if phase_weight.dim() != 4 or phase_weight.shape[1:] != (cin, 2, 2) or phase_weight.shape[0] % 4:
        raise ValueError(f"upsample_conv3x3: phase weights of shape {tuple(phase_weight.shape)} for {cin} channels")
    if x.dtype != phase_weight.dtype:
        raise ValueError(f"upsample_conv3x3: input {x.dtype} and weights {phase_weight.dtype} differ")
    if phase_weight.shape[0] * (h + 1) * (w + 1) >= 2**31:  # the kernels index within a picture in int32
        raise ValueError(f"upsample_conv3x3: a {h}x{w} picture with {phase_weight.shape[0] // 4} channels is too large")


def _tile(c: int) -> tuple[int, int]:
    block_c = min(triton.next_power_of_2(c), 256)
    return max(1, ELEMENTWISE_TILE // block_c), block_c


@custom_op("vqbot::upsample_conv3x3", flexible_layout=True)
def upsample_conv3x3(x: torch.Tensor, phase_weight: torch.Tensor) -> torch.Tensor:
    """F.conv2d(nearest_2x(x), weight, padding=1) (stride 1, no bias), given phase_weights(weight);
    the backward pass keeps only the weights (frozen)."""
    _check(x, phase_weight)
    n, _, h, w = x.shape
    c = phase_weight.shape[0] // 4
    # channels-last weights: cuDNN's NHWC kernels, and a channels-last output whatever x's layout
    phased = F.conv2d(x, phase_weight.contiguous(memory_format=torch.channels_last), None, 1, 1)  # (n, 4c, h+1, w+1)
    y = _channels_last((n, c, 2 * h, 2 * w), phased)
    if y.numel():
        block_p, block_c = _tile(c)
        _launch(_interleave_kernel, x.device, (triton.cdiv(4 * h * w, block_p), n), phased, y, c, h, w,
                *_strides(phased), *_strides(y), BLOCK_P=block_p, BLOCK_C=block_c, num_warps=ELEMENTWISE_WARPS)
    return y


@upsample_conv3x3.register_fake
def _upsample_conv3x3_shape(x: torch.Tensor, phase_weight: torch.Tensor) -> torch.Tensor:
    _check(x, phase_weight)
    n, _, h, w = x.shape
    return _channels_last((n, phase_weight.shape[0] // 4, 2 * h, 2 * w), x)


def _setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[1])


@custom_op("vqbot::upsample_conv3x3_phases", flexible_layout=True)
def gradient_phases(grad: torch.Tensor) -> torch.Tensor:
    """The gradient of upsample_conv3x3's output (n, c, 2h, 2w) gathered into the phases of its 2x2
    convolution's output (n, 4c, h + 1, w + 1), zero where a phase has no pixel."""
    n, c, h2, w2 = grad.shape
    h, w = h2 // 2, w2 // 2
    phased = _channels_last((n, 4 * c, h + 1, w + 1), grad)
    if phased.numel():
        block_p, block_c = _tile(c)
        _launch(_phases_kernel, grad.device, (triton.cdiv((h + 1) * (w + 1), block_p), n), grad, phased, c, h, w,
                *_strides(grad), *_strides(phased), BLOCK_P=block_p, BLOCK_C=block_c, num_warps=ELEMENTWISE_WARPS)
    return phased


@gradient_phases.register_fake
def _gradient_phases_shape(grad: torch.Tensor) -> torch.Tensor:
    n, c, h2, w2 = grad.shape
    return _channels_last((n, 4 * c, h2 // 2 + 1, w2 // 2 + 1), grad)


def _backward(ctx, grad: torch.Tensor):
    (phase_weight,) = ctx.saved_tensors
    if ctx.needs_input_grad[1]:
        raise NotImplementedError("upsample_conv3x3 has no gradient for its weight")
    weight = phase_weight.contiguous(memory_format=torch.channels_last)
    return F.conv_transpose2d(gradient_phases(grad), weight, None, 1, 1), None


upsample_conv3x3.register_autograd(_backward, setup_context=_setup)

"""The fused group norm + SiLU kernels (engine/fused_norm.py) and the frozen convolution compute what torch computes.

On a machine without a GPU the Triton kernels run in Triton's interpreter (tests/conftest.py).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from taming.modules.diffusionmodules.model import Decoder
from torch import nn

from engine import fused_norm, layers
from engine.fused_norm import group_norm_silu
from tests.engine.compiled_groups import FUSED_GRAPHS

pytestmark = pytest.mark.skipif(not fused_norm.available(), reason="triton is not installed")


def _reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, silu: bool,
               pre_bias: torch.Tensor | None = None) -> torch.Tensor:
    if pre_bias is not None:
        x = x + pre_bias.double().view(1, -1, 1, 1)
    y = F.group_norm(x, groups, weight.double(), bias.double(), 1e-6)
    return F.silu(y) if silu else y


def _case(shape: tuple[int, ...], layout, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    # a large mean against a small spread: one-pass statistics would lose the variance
    x = (torch.randn(shape, generator=g) * 0.5 + 300).to(dtype).to(memory_format=layout)
    c = shape[1]
    return x, torch.randn(c, generator=g), torch.randn(c, generator=g), torch.randn(shape, generator=g).to(dtype)


def _fused_and_exact(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, silu: bool,
                     upstream: torch.Tensor, pre_bias: torch.Tensor | None = None):
    """(output, input gradient) of the fused op and of the float64 reference, for the same upstream gradient."""
    x = x.detach().requires_grad_(True)
    y = group_norm_silu(x, weight, bias, groups, 1e-6, silu, pre_bias=pre_bias)
    y.backward(upstream)
    xr = x.detach().double().requires_grad_(True)
    expected = _reference(xr, weight, bias, groups, silu, pre_bias)
    expected.backward(upstream.double())
    return y, x.grad, expected, xr.grad


def _torch_float32(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, silu: bool,
                   upstream: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().float().requires_grad_(True)
    y = F.group_norm(x, groups, weight, bias, 1e-6)
    y = F.silu(y) if silu else y
    y.backward(upstream.float())
    return y.detach(), x.grad


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("silu", [True, False])
def test_values_and_input_gradient_are_as_accurate_as_torch_float32(layout, silu: bool) -> None:
    x, weight, bias, upstream = _case((2, 64, 7, 5), layout)
    y, grad, expected, expected_grad = _fused_and_exact(x, weight, bias, 32, silu, upstream)
    torch_y, torch_grad = _torch_float32(x, weight, bias, 32, silu, upstream)
    assert y.dtype == torch.float32 and y.stride() == x.stride()
    for got, theirs, exact in [(y, torch_y, expected), (grad, torch_grad, expected_grad)]:
        error = (got.double() - exact).abs().max().item()
        assert error <= max(3 * (theirs.double() - exact).abs().max().item(), 1e-5), error


def test_a_pre_bias_is_added_before_normalising() -> None:
    x, weight, bias, upstream = _case((3, 32, 6, 6), torch.channels_last, seed=1)
    pre_bias = torch.randn(32, generator=torch.Generator().manual_seed(5)) * 3  # differs inside each group
    y, grad, expected, expected_grad = _fused_and_exact(x, weight, bias, 8, True, upstream, pre_bias)
    torch.testing.assert_close(y.double(), expected, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(grad.double(), expected_grad, atol=2e-4, rtol=1e-3)


def test_an_outlying_first_pixel_does_not_cost_the_variance_its_precision() -> None:
    x, weight, bias, _upstream = _case((1, 32, 64, 64), torch.channels_last, seed=7)
    x[:, :, 0, 0] += 100 * 0.5  # 100 standard deviations off
    y = group_norm_silu(x, weight, bias, 8, 1e-6, True)
    exact = _reference(x.double(), weight, bias, 8, True)
    theirs = F.silu(F.group_norm(x, 8, weight, bias, 1e-6))
    error = (y.double() - exact).abs().max().item()
    assert error <= max(3 * (theirs.double() - exact).abs().max().item(), 1e-5), error


@pytest.mark.parametrize("silu", [True, False])
def test_channel_counts_that_are_not_powers_of_two_nchw_and_a_pre_bias(silu: bool) -> None:
    x, weight, bias, upstream = _case((2, 48, 5, 7), torch.contiguous_format, seed=8)  # 12 channels a group
    pre_bias = torch.randn(48, generator=torch.Generator().manual_seed(9))
    y, grad, expected, expected_grad = _fused_and_exact(x, weight, bias, 4, silu, upstream, pre_bias)
    torch.testing.assert_close(y.double(), expected, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(grad.double(), expected_grad, atol=2e-4, rtol=1e-3)


def test_a_gradient_in_another_layout_than_the_input() -> None:
    x, weight, bias, upstream = _case((2, 64, 6, 6), torch.channels_last, seed=10)
    _, grad, _, expected_grad = _fused_and_exact(x, weight, bias, 32, True, upstream.contiguous())  # NCHW gradient
    assert grad.stride() == x.stride()
    torch.testing.assert_close(grad.double(), expected_grad, atol=2e-4, rtol=1e-3)


def test_the_kernels_build_for_an_h100_even_with_a_size_of_one() -> None:
    """A 16x16 picture has 1x1 latents; on a GPU Triton turns such a 1 into a constant (the interpreter doesn't)."""
    import os
    import subprocess
    import sys

    import triton.backends

    if "nvidia" not in getattr(triton.backends, "backends", {}):
        pytest.skip("this triton has no CUDA backend to compile with")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-m", "tests.engine.kernel_build_check"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def test_bf16_input_gives_bf16_rounded_once_from_float32() -> None:
    x, weight, bias, _upstream = _case((2, 64, 8, 8), torch.channels_last, torch.bfloat16, seed=2)
    y = group_norm_silu(x, weight, bias, 32, 1e-6, True, torch.bfloat16)
    expected = _reference(x.double(), weight, bias, 32, True).to(torch.bfloat16)
    assert y.dtype == torch.bfloat16
    # at most one bf16 rounding step apart (float32 vs float64 arithmetic before the rounding)
    torch.testing.assert_close(y.float(), expected.float(), atol=1e-2, rtol=8e-3)


def test_bad_shapes_are_refused_with_a_message() -> None:
    x = torch.randn(2, 30, 4, 4)
    with pytest.raises(ValueError, match="30 channels in 32 groups"):
        group_norm_silu(x, torch.ones(30), torch.zeros(30), 32, 1e-6)
    with pytest.raises(ValueError, match="batch, channels, height, width"):
        group_norm_silu(torch.randn(2, 32, 4), torch.ones(32), torch.zeros(32), 32, 1e-6)


def test_the_operations_pass_torch_library_checks() -> None:
    x, weight, bias, _ = _case((2, 32, 4, 3), torch.channels_last)
    x.requires_grad_(True)
    torch.library.opcheck(torch.ops.vqbot.group_norm_silu.default, (x, weight, bias, None, 8, 1e-6, True, torch.float32),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
    conv_weight = torch.randn(16, 32, 3, 3)
    torch.library.opcheck(torch.ops.vqbot.frozen_conv2d.default, (x, conv_weight, 1, True),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


@pytest.mark.parametrize("padding, kernel", [(1, 3), (0, 1)])
def test_the_frozen_convolution_gives_the_input_gradient_of_a_convolution(padding: int, kernel: int) -> None:
    x = torch.randn(2, 6, 9, 7, requires_grad=True)
    weight = torch.randn(5, 6, kernel, kernel)
    upstream = torch.randn(2, 5, 9, 7)
    expected = F.conv2d(x, weight, None, 1, padding)
    (expected_grad,) = torch.autograd.grad(expected, x, upstream)
    got = layers.frozen_conv2d(x, weight, padding)
    (got_grad,) = torch.autograd.grad(got, x, upstream)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_grad, expected_grad, atol=1e-4, rtol=1e-4)


def _decoder() -> nn.Module:
    torch.manual_seed(0)
    dec = Decoder(ch=32, out_ch=3, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=[8], in_channels=3,
                  resolution=16, z_channels=8, dropout=0.0)
    return layers.use_fast_layers(dec).eval().requires_grad_(False)


@pytest.fixture
def fused_on_the_cpu():
    """The engine's CUDA path on the CPU: the fused kernels run in Triton's interpreter."""
    with layers.switched(fused_norm_devices={"cpu"}):
        yield


@FUSED_GRAPHS
def test_a_compiled_decoder_step_with_the_fused_kernels_matches_the_plain_decoder(fused_on_the_cpu) -> None:
    """What the engine runs on CUDA (fused kernels, frozen convolutions, channels-last weights), on the CPU."""
    from torch._inductor.utils import run_and_get_code

    plain = _decoder()
    fused = _decoder()
    layers.prepare_for_compile(fused, torch.device("cpu"))
    assert fused.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    z = torch.randn(2, 8, 8, 8, generator=torch.Generator().manual_seed(3))

    def step(decoder: nn.Module, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = z.clone().requires_grad_(True)
        loss = decoder(z).square().mean()
        return loss, torch.autograd.grad(loss, z)[0]

    expected_loss, expected_grad = step(plain, z)
    torch._dynamo.reset()
    (loss, grad), code = run_and_get_code(torch.compile(step, options={"force_layout_optimization": True}), fused, z)
    code = "\n".join(code)
    torch.testing.assert_close(loss, expected_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad, expected_grad, atol=1e-6, rtol=1e-4)
    # every ResnetBlock's two norms and the last one; conv_in, conv_out and the blocks' convs; the upsampling
    # conv on the small picture (engine/subpixel.py)
    blocks = sum(isinstance(m, layers.FusedResnetBlock) for m in fused.modules())
    assert blocks == 6
    assert code.count("vqbot.group_norm_silu.default(") == 2 * blocks + 1
    assert code.count("vqbot.group_norm_silu_backward.default(") == 2 * blocks + 1
    assert code.count("vqbot.frozen_conv2d.default(") >= 2 * blocks + 2
    assert code.count("vqbot.upsample_conv3x3.default(") == 1
    # the SiLU outputs are not kept for the backward pass: no conv input is among the saved tensors
    assert "convolution_backward" not in code


def test_the_frozen_convolution_of_an_upsampled_input_matches_upsample_then_conv() -> None:
    x = torch.randn(2, 4, 5, 3, generator=torch.Generator().manual_seed(4)).to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    weight = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(5))
    upstream = torch.randn(2, 6, 10, 6, generator=torch.Generator().manual_seed(6))
    expected = F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), weight, None, 1, 1)
    (expected_grad,) = torch.autograd.grad(expected, x, upstream)
    got = layers.frozen_conv2d(x, weight, 1, True)
    (got_grad,) = torch.autograd.grad(got, x, upstream)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_grad, expected_grad, atol=1e-4, rtol=1e-4)
    assert layers.upsample_nearest_2x_channels_last(x.detach()).is_contiguous(memory_format=torch.channels_last)


@FUSED_GRAPHS
def test_under_autocast_the_decoder_keeps_the_plain_layers(fused_on_the_cpu) -> None:
    """The fused kernels are measured and used with bf16 weights; autocast runs (fp16 precision) keep Inductor's code."""
    from torch._inductor.utils import run_and_get_code

    fused = _decoder()
    z = torch.randn(1, 8, 8, 8)

    def step(z: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fused(z).float().mean()

    torch._dynamo.reset()
    _, code = run_and_get_code(torch.compile(step), z)
    assert "vqbot.group_norm_silu" not in "\n".join(code) and "vqbot.frozen_conv2d" not in "\n".join(code)


def test_on_a_torch_without_custom_op_tags_the_ops_register_without_them(monkeypatch) -> None:
    from engine import compiling

    real = torch.library.custom_op

    def without_tags(name, fn=None, /, *, mutates_args, tags=None, **kwargs):
        if tags is not None:
            raise TypeError("custom_op() got an unexpected keyword argument 'tags'")
        return real(name, fn, mutates_args=mutates_args, **kwargs)

    monkeypatch.setattr(torch.library, "custom_op", without_tags)

    @compiling.custom_op("vqbot_test::twice", flexible_layout=True)
    def twice(x: torch.Tensor) -> torch.Tensor:
        return x * 2

    assert torch.equal(twice(torch.ones(3)), torch.full((3,), 2.0))
    assert torch.Tag.flexible_layout not in torch.ops.vqbot_test.twice.default.tags

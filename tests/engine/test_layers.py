"""The compile-friendly layers compute what the layers they replace compute, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from taming.modules.diffusionmodules.model import Upsample
from torch import nn

from engine.layers import GroupNorm, NearestUpsample, grid_sample, group_norm_by_channels, upsample_nearest_2x
from engine.vqgan import VQGAN


def _with_grad(*shape: int, seed: int = 0, layout=torch.contiguous_format) -> torch.Tensor:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3 + 1
    return x.to(memory_format=layout).requires_grad_(True)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_group_norm_by_channels_matches_group_norm_and_its_gradient(layout) -> None:
    norm = nn.GroupNorm(4, 16, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = _with_grad(3, 16, 9, 7, layout=layout)
    upstream = torch.randn(3, 16, 9, 7, generator=torch.Generator().manual_seed(1))
    expected = norm(x)
    (expected_grad,) = torch.autograd.grad((expected * upstream).sum(), x)
    got = group_norm_by_channels(x, 4, norm.weight, norm.bias, 1e-6)
    (got_grad,) = torch.autograd.grad((got * upstream).sum(), x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_grad, expected_grad, atol=1e-5, rtol=1e-5)


def test_group_norm_by_channels_keeps_bf16_input_bf16_and_close() -> None:
    x = torch.randn(2, 8, 5, 5).to(torch.bfloat16)
    got = group_norm_by_channels(x, 2, None, None, 1e-6)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), F.group_norm(x.float(), 2, eps=1e-6), atol=2e-2, rtol=2e-2)


def test_nearest_upsampling_by_broadcast_matches_interpolate_and_its_gradient() -> None:
    x = _with_grad(2, 3, 4, 5)
    upstream = torch.randn(2, 3, 8, 10)
    expected = F.interpolate(x, scale_factor=2.0, mode="nearest")
    (expected_grad,) = torch.autograd.grad((expected * upstream).sum(), x)
    got = upsample_nearest_2x(x)
    (got_grad,) = torch.autograd.grad((got * upstream).sum(), x)
    assert torch.equal(got, expected)
    torch.testing.assert_close(got_grad, expected_grad)


def test_the_grid_sample_op_matches_grid_sample_and_its_gradient() -> None:
    image = _with_grad(2, 3, 12, 10)
    grid = torch.rand(2, 7, 6, 2, generator=torch.Generator().manual_seed(2)) * 2.4 - 1.2  # some points outside
    upstream = torch.randn(2, 3, 7, 6)
    expected = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    (expected_grad,) = torch.autograd.grad((expected * upstream).sum(), image)
    got = grid_sample(image, grid)
    (got_grad,) = torch.autograd.grad((got * upstream).sum(), image)
    assert torch.equal(got, expected)
    torch.testing.assert_close(got_grad, expected_grad)
    torch.library.opcheck(grid_sample, (image.detach().requires_grad_(True), grid))


def test_the_vqgan_uses_the_compile_friendly_layers_with_the_same_weights(vqgan: VQGAN) -> None:
    kinds = {type(m) for m in vqgan.modules()}
    assert GroupNorm in kinds and NearestUpsample in kinds
    assert nn.GroupNorm not in kinds and Upsample not in kinds
    keys = set(vqgan.state_dict())
    assert any(k.startswith("decoder.up.") and k.endswith("upsample.conv.weight") for k in keys)
    assert any(k.endswith("norm_out.weight") for k in keys)

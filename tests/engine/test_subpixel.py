"""engine/subpixel.py: nearest 2x upsampling then a 3x3 convolution, computed on the small picture,
gives what upsampling then convolving gives (values and the input's gradient), in any layout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.subpixel import phase_weights, upsample_conv3x3


def _case(n: int, cin: int, cout: int, h: int, w: int, layout: torch.memory_format, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin, h, w, generator=g).to(memory_format=layout).requires_grad_(True)
    weight = torch.randn(cout, cin, 3, 3, generator=g).to(memory_format=layout)
    upstream = torch.randn(n, cout, 2 * h, 2 * w, generator=g).to(memory_format=layout)
    return x, weight, upstream


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("n, cin, cout, h, w", [(2, 4, 6, 5, 3), (1, 3, 8, 1, 1), (1, 2, 300, 2, 3)])
def test_the_small_picture_convolution_matches_upsample_then_conv(layout, n, cin, cout, h, w) -> None:
    x, weight, upstream = _case(n, cin, cout, h, w, layout)
    expected = F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), weight, None, 1, 1)
    (expected_grad,) = torch.autograd.grad(expected, x, upstream)
    got = upsample_conv3x3(x, phase_weights(weight))
    (got_grad,) = torch.autograd.grad(got, x, upstream)
    assert got.shape == expected.shape
    assert got.is_contiguous(memory_format=torch.channels_last)  # whatever the input's layout
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got_grad, expected_grad, atol=1e-4, rtol=1e-4)


def test_in_bf16_it_stays_within_bf16_rounding_of_the_float32_result() -> None:
    x, weight, _upstream = _case(2, 16, 16, 6, 4, torch.channels_last, seed=3)
    reference = F.conv2d(F.interpolate(x.detach(), scale_factor=2.0, mode="nearest"), weight, None, 1, 1)
    got = upsample_conv3x3(x.detach().bfloat16(), phase_weights(weight.bfloat16())).float()
    assert got.dtype == torch.float32 and (got - reference).abs().max() < 0.02 * reference.abs().max()


def test_phase_weights_are_sums_of_the_taps() -> None:
    weight = torch.arange(9.0).view(1, 1, 3, 3)
    four = phase_weights(weight)
    assert four.shape == (4, 1, 2, 2)
    # phase (0, 0): rows {top, middle + bottom}, columns {left, middle + right}
    torch.testing.assert_close(four[0, 0], torch.tensor([[0.0, 1 + 2], [3 + 6, 4 + 5 + 7 + 8]]))
    # phase (1, 1): rows {top + middle, bottom}, columns {left + middle, right}
    torch.testing.assert_close(four[3, 0], torch.tensor([[0 + 1 + 3 + 4, 2 + 5], [6 + 7, 8.0]]))
    assert phase_weights(torch.randn(8, 4, 3, 3).bfloat16()).dtype == torch.bfloat16


def test_the_operation_passes_torchs_custom_op_checks() -> None:
    x, weight, _ = _case(2, 4, 8, 3, 5, torch.channels_last)
    torch.library.opcheck(torch.ops.vqbot.upsample_conv3x3.default, (x, phase_weights(weight)),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


def test_the_gradient_gather_passes_torchs_custom_op_checks() -> None:
    grad = torch.randn(2, 8, 6, 10).to(memory_format=torch.channels_last)
    torch.library.opcheck(torch.ops.vqbot.upsample_conv3x3_phases.default, (grad,),
                          test_utils=("test_schema", "test_faketensor"))


def test_mismatched_weights_or_dtypes_are_refused_with_a_clear_error() -> None:
    x, weight, _ = _case(1, 4, 8, 3, 3, torch.channels_last)
    with pytest.raises(ValueError, match="differ"):
        upsample_conv3x3(x.detach().bfloat16(), phase_weights(weight))
    with pytest.raises(ValueError, match="phase weights"):
        upsample_conv3x3(x.detach(), weight)

import torch
from torch import nn

from engine.speed import ParallelGroupNorm, use_parallel_group_norm


def test_the_parallel_group_norm_computes_what_group_norm_computes() -> None:
    torch.manual_seed(0)
    norm = nn.GroupNorm(32, 64, eps=1e-6)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = (torch.randn(3, 64, 9, 7) * 4 + 2).requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    expected = norm(x)
    got = ParallelGroupNorm(norm)(x2)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(expected)
    expected.backward(grad)
    got.backward(grad)
    torch.testing.assert_close(x2.grad, x.grad, atol=1e-4, rtol=1e-4)


def test_every_group_norm_of_the_vqgan_is_swapped_and_the_picture_is_unchanged(vqgan) -> None:
    import copy

    fast = copy.deepcopy(vqgan)
    swapped = use_parallel_group_norm(fast)
    assert swapped == sum(isinstance(m, nn.GroupNorm) for m in vqgan.modules()) > 0
    assert not any(isinstance(m, nn.GroupNorm) for m in fast.modules())
    z = torch.randn(2, 32, 2, 3)
    torch.testing.assert_close(fast.decode(z), vqgan.decode(z), atol=1e-4, rtol=1e-4)

"""Clamping the decoded picture: values clamp, gradients pass only where they lead back into range."""

from __future__ import annotations

import torch

from engine.latents import clamp_with_grad


def test_clamp_with_grad_clamps_and_lets_through_only_gradients_that_lead_back_into_range() -> None:
    x = torch.tensor([-0.5, 0.25, 1.5, -0.5, 1.5], requires_grad=True)
    grad = torch.tensor([-1.0, 3.0, 2.0, 1.0, -2.0])
    y = clamp_with_grad(x, 0.0, 1.0)
    assert y.tolist() == [0.0, 0.25, 1.0, 0.0, 1.0] and x.tolist()[0] == -0.5  # x itself untouched
    (got,) = torch.autograd.grad(y, x, grad)
    # Descent moves x by -grad: below the range, a negative gradient raises it (passes), a positive one
    # would push it further out (blocked); above the range the other way round; inside, all passes.
    assert got.tolist() == [-1.0, 3.0, 2.0, 0.0, 0.0]


def test_clamp_with_grad_is_a_well_formed_op_for_compiling() -> None:
    x = (torch.randn(2, 3, 4, 4) * 2).to(memory_format=torch.channels_last).requires_grad_(True)
    torch.library.opcheck(clamp_with_grad, (x, 0.0, 1.0))

"""engine/cutouts.py: the batched cutouts are what cutting each one out on its own gives, and the
colour jitter's saturation uses the usual luma weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.cutouts import N_RANDOM, Augment, colour_and_noise, make_cutouts, sampling_grid


def test_batched_cutouts_match_each_cutout_sampled_and_pooled_on_its_own() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 40, 56, generator=g)
    uniform = torch.rand(2, 5, N_RANDOM, generator=g)
    noise = torch.zeros(2, 5, 3, 8, 8)
    cut_pow = torch.tensor([1.0, 2.0])
    aug = Augment(colour_p=0, noise=0)
    got = make_cutouts(images, uniform, noise, size=8, cut_pow=cut_pow, aug=aug)
    grid = sampling_grid(uniform, height=40, width=56, size=8, cut_pow=cut_pow, aug=aug)  # (10, 16, 16, 2)
    expected = torch.cat([
        F.avg_pool2d(F.grid_sample(images[i // 5:i // 5 + 1], grid[i:i + 1], align_corners=False), 2)
        for i in range(10)])
    assert got.shape == (10, 3, 8, 8)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_full_desaturation_gives_the_luma_of_each_pixel() -> None:
    cutouts = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    uniform = torch.full((3, N_RANDOM), 0.5)
    uniform[:, 18] = 0.0  # colour jitter on
    uniform[:, 21] = 0.0  # saturation factor 1 - 1 = 0
    aug = Augment(brightness=0, contrast=0, saturation=1.0, noise=0)
    grey = colour_and_noise(cutouts, uniform, torch.zeros_like(cutouts), aug)
    luma = 0.299 * cutouts[:, 0] + 0.587 * cutouts[:, 1] + 0.114 * cutouts[:, 2]
    for channel in range(3):
        torch.testing.assert_close(grey[:, channel], luma)

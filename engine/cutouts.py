"""Random cutouts of the decoded picture, augmented, as one batched sampling grid.

Crop, resize, flip, affine (rotation, shear, shift) and a small perspective-like
warp are folded into one ``grid_sample`` call for all jobs and cutouts; colour
jitter and noise follow as element-wise ops. Random parameters come from each
job's own stream (engine.invariance: its seed and the step number), so a job's
cutouts don't depend on what else is in the batch, nor on when it joined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.layers import grid_sample

N_RANDOM = 23  # random numbers per cutout, see _draw


@dataclass(frozen=True)
class Augment:
    """Strength of each augmentation; probabilities are per cutout."""

    flip_p: float = 0.5
    affine_p: float = 0.7
    degrees: float = 15.0
    shear_degrees: float = 5.0
    translate: float = 0.1
    perspective_p: float = 0.7
    perspective: float = 0.2
    colour_p: float = 0.7
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    noise: float = 0.1
    supersample: int = 2  # sample at this multiple of the cutout size, then average-pool: less aliasing


NO_AUGMENT = Augment(flip_p=0, affine_p=0, perspective_p=0, colour_p=0, noise=0)


def draw_random(seeds: Sequence[int], cutn: int, size: int, *, device: torch.device,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each job's random numbers from its stream seed alone (engine.invariance.step_seed):
    uniform (B, cutn, N_RANDOM) and normal noise (B, cutn, 3, size, size).

    ``generator`` (on ``device``) is reseeded for every job, so a step makes no new generator; reseeding
    is host bookkeeping, the draws stay asynchronous on a GPU.
    """
    generator = generator if generator is not None else torch.Generator(device=device)
    uniform = torch.empty(len(seeds), cutn, N_RANDOM, device=device)
    noise = torch.empty(len(seeds), cutn, 3, size, size, device=device)
    for i, seed in enumerate(seeds):
        generator.manual_seed(seed)
        uniform[i].uniform_(generator=generator)
        noise[i].normal_(generator=generator)
    return uniform, noise


def sampling_grid(
    uniform: torch.Tensor, *, height: int, width: int, size: int, cut_pow: torch.Tensor, aug: Augment
) -> torch.Tensor:
    """Sampling grid for every cutout.

    uniform: (B, cutn, N_RANDOM) in [0, 1); cut_pow: (B,) — larger means smaller crops.
    Returns (B * cutn, size * ss, size * ss, 2) in grid_sample's [-1, 1] coordinates.
    """
    b, n, _ = uniform.shape
    u = uniform.reshape(b * n, N_RANDOM)
    pw = cut_pow.to(u.dtype).repeat_interleave(n)
    side = min(height, width)
    min_size = min(side, size)
    crop = u[:, 0].pow(pw) * (side - min_size) + min_size  # pixels
    ox = u[:, 1] * (width - crop)
    oy = u[:, 2] * (height - crop)
    # Crop centre and half-size in normalised coordinates.
    cx = (ox + crop / 2) * 2 / width - 1
    cy = (oy + crop / 2) * 2 / height - 1
    sx = crop / width
    sy = crop / height

    flip = torch.where(u[:, 3] < aug.flip_p, -1.0, 1.0)
    use_affine = (u[:, 4] < aug.affine_p).to(u.dtype)
    angle = (u[:, 5] * 2 - 1) * math.radians(aug.degrees) * use_affine
    shear = (u[:, 6] * 2 - 1) * math.radians(aug.shear_degrees) * use_affine
    tx = (u[:, 7] * 2 - 1) * aug.translate * 2 * use_affine
    ty = (u[:, 8] * 2 - 1) * aug.translate * 2 * use_affine
    use_persp = (u[:, 9] < aug.perspective_p).to(u.dtype)
    corners = (u[:, 10:18] * 2 - 1).view(-1, 4, 2) * aug.perspective * use_persp.view(-1, 1, 1)

    out = size * aug.supersample
    lin = (torch.arange(out, device=u.device, dtype=u.dtype) + 0.5) * 2 / out - 1
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")  # (out, out)
    # Perspective-like warp: each corner moves, points move by bilinear weights of the corners.
    wx0, wx1 = (1 - gx) / 2, (1 + gx) / 2
    wy0, wy1 = (1 - gy) / 2, (1 + gy) / 2
    weights = torch.stack([wx0 * wy0, wx1 * wy0, wx0 * wy1, wx1 * wy1], dim=-1)  # (out, out, 4)
    shift = torch.einsum("hwk,nkc->nhwc", weights, corners)  # (N, out, out, 2)
    px = gx + shift[..., 0]
    py = gy + shift[..., 1]
    # Flip, shear and rotate around the cutout centre, then shift.
    px = px * flip.view(-1, 1, 1)
    px = px + torch.tan(shear).view(-1, 1, 1) * py
    cos, sin = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    rx = cos * px - sin * py + tx.view(-1, 1, 1)
    ry = sin * px + cos * py + ty.view(-1, 1, 1)
    # Into the crop, in image coordinates.
    grid_x = cx.view(-1, 1, 1) + rx * sx.view(-1, 1, 1)
    grid_y = cy.view(-1, 1, 1) + ry * sy.view(-1, 1, 1)
    return torch.stack([grid_x, grid_y], dim=-1)


def colour_and_noise(cutouts: torch.Tensor, uniform: torch.Tensor, noise: torch.Tensor, aug: Augment) -> torch.Tensor:
    """Brightness, contrast, saturation jitter and Gaussian noise.

    cutouts: (N, 3, S, S) in [0, 1]; uniform: (N, N_RANDOM); noise: (N, 3, S, S).
    """
    use = (uniform[:, 18] < aug.colour_p).to(cutouts.dtype).view(-1, 1, 1, 1)
    brightness = ((uniform[:, 19] * 2 - 1) * aug.brightness).view(-1, 1, 1, 1) * use
    contrast = 1 + ((uniform[:, 20] * 2 - 1) * aug.contrast).view(-1, 1, 1, 1) * use
    saturation = 1 + ((uniform[:, 21] * 2 - 1) * aug.saturation).view(-1, 1, 1, 1) * use
    # luma weights as Python numbers: a tensor made here would be a CUDA constant of the compiled graph,
    # which the on-disk AOTAutograd cache can't store (the batch graph then recompiled on every restart)
    grey = cutouts[:, 0:1] * 0.299 + cutouts[:, 1:2] * 0.587 + cutouts[:, 2:3] * 0.114
    x = grey + (cutouts - grey) * saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + brightness
    sigma = (uniform[:, 22] * aug.noise).view(-1, 1, 1, 1).to(cutouts.dtype)
    return x + sigma * noise.to(cutouts.dtype)


def make_cutouts(
    images: torch.Tensor,
    uniform: torch.Tensor,
    noise: torch.Tensor,
    *,
    size: int,
    cut_pow: torch.Tensor,
    aug: Augment = Augment(),
) -> torch.Tensor:
    """Cut, warp and jitter every job's picture.

    images: (B, 3, H, W) in [0, 1]; uniform: (B, cutn, N_RANDOM); noise: (B, cutn, 3, size, size).
    Returns (B * cutn, 3, size, size).
    """
    b, _, h, w = images.shape
    cutn = uniform.shape[1]
    grid = sampling_grid(uniform, height=h, width=w, size=size, cut_pow=cut_pow, aug=aug).to(images.dtype)
    out = grid.shape[1]
    # All cutouts of a job as one tall grid: no copy of the picture per cutout.
    tall = grid.view(b, cutn * out, out, 2)
    cut = grid_sample(images, tall)
    if aug.supersample > 1:
        # pooled while still one tall picture a job (no window straddles two cutouts): the
        # reordering below then moves a quarter of the data (1 ms a step of 8 jobs on an H100)
        cut = F.avg_pool2d(cut, aug.supersample)
    cut = cut.view(b, 3, cutn, size, size).transpose(1, 2).reshape(b * cutn, 3, size, size)
    flat_u = uniform.reshape(b * cutn, N_RANDOM)
    return colour_and_noise(cut, flat_u, noise.reshape(b * cutn, 3, size, size), aug)

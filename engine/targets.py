"""Prompt targets: CLIP embeddings of text, image and seeded-noise prompts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from engine.clip import Clip
from engine.cutouts import Augment, draw_random, make_cutouts
from engine.invariance import IMAGE_PROMPT, stream_seed
from engine.latents import resize_cover
from jobspec import JobParams

IMAGE_PROMPT_CUTS = 16


@dataclass(frozen=True)
class Targets:
    """One job's targets: embeddings (P, D), weights (P,), stops (P,) with NaN for none."""

    embeds: torch.Tensor
    weights: torch.Tensor
    stops: torch.Tensor


def embed_image_prompt(clip: Clip, image: torch.Tensor, *, seed: int, index: int = 0) -> torch.Tensor:
    """One target embedding for an image (1, 3, H, W) in [0, 1]: the mean direction of the
    whole picture and random cutouts of it (so it reads the content, not a framing), drawn from
    the stream of the job's ``seed`` and the prompt's ``index``."""
    device = clip.device
    size = clip.input_size
    image = image.to(device)
    uniform, noise = draw_random([stream_seed(IMAGE_PROMPT, seed, index)], IMAGE_PROMPT_CUTS, size, device=device)
    cuts = make_cutouts(image, uniform, noise, size=size, cut_pow=torch.ones(1, device=device),
                        aug=Augment(colour_p=0, noise=0, perspective_p=0))
    whole = resize_cover(image, size, size)
    pixels = torch.cat([whole, cuts]).to(next(clip.model.parameters()).dtype)
    with torch.no_grad():
        embeds = clip.encode_image(clip.normalize(pixels)).float()
    return torch.nn.functional.normalize(embeds, dim=-1).mean(0)


def noise_embedding(seed: int, dim: int) -> torch.Tensor:
    """A seeded random direction (D,), the same on every device."""
    generator = torch.Generator().manual_seed(seed)
    return torch.empty(dim).normal_(generator=generator)


def build_targets(clip: Clip, params: JobParams, image_prompts: list[torch.Tensor]) -> Targets:
    """All of a job's targets on the CLIP device. ``image_prompts`` are the loaded pictures of
    ``params.image_prompts``, in order, each (1, 3, H, W) in [0, 1]."""
    embeds: list[torch.Tensor] = []
    weights: list[float] = []
    stops: list[float] = []
    if params.prompts:
        embeds.extend(clip.encode_text([p.text for p in params.prompts]))
        for p in params.prompts:
            weights.append(p.weight)
            stops.append(math.nan if p.stop is None else p.stop)
    for i, (prompt, picture) in enumerate(zip(params.image_prompts, image_prompts, strict=True)):
        embeds.append(embed_image_prompt(clip, picture, seed=params.seed, index=i))
        weights.append(prompt.weight)
        stops.append(math.nan if prompt.stop is None else prompt.stop)
    dim = int(embeds[0].shape[-1]) if embeds else int(clip.encode_text(["x"]).shape[-1])
    for noise in params.noise_prompts:
        embeds.append(noise_embedding(noise.seed, dim).to(clip.device))
        weights.append(noise.weight)
        stops.append(math.nan)
    device = clip.device
    return Targets(
        embeds=torch.stack([e.float().to(device) for e in embeds]),
        weights=torch.tensor(weights, device=device, dtype=torch.float32),
        stops=torch.tensor(stops, device=device, dtype=torch.float32),
    )


def stack_targets(targets: list[Targets]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad to a bucket of the largest prompt count: embeds (B, P, D), weights (B, P), stops (B, P).

    P is a power of two (at least 4), so a compiled step sees few shapes: jobs
    with 1 to 4 prompts share one compiled kernel set. Padding has weight 0.
    """
    count = 4
    while count < max(t.embeds.shape[0] for t in targets):
        count *= 2
    dim = targets[0].embeds.shape[1]
    device = targets[0].embeds.device
    embeds = torch.zeros(len(targets), count, dim, device=device)
    weights = torch.zeros(len(targets), count, device=device)
    stops = torch.full((len(targets), count), math.nan, device=device)
    for i, t in enumerate(targets):
        p = t.embeds.shape[0]
        embeds[i, :p] = t.embeds
        embeds[i, p:] = 1.0  # padding: any non-zero vector, its weight is 0
        weights[i, :p] = t.weights
        stops[i, :p] = t.stops
    return embeds, weights, stops

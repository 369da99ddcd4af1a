"""The CLIP objective: weighted spherical distances to the prompts' embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def spherical_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared great-circle distance between unit-normalised a and b (broadcasting), in [0, pi^2/2]."""
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    return (a - b).norm(dim=-1).div(2).clamp(max=1).arcsin().pow(2).mul(2)


def prompt_loss(embeds: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, stops: torch.Tensor) -> torch.Tensor:
    """Per-job prompt loss.

    embeds: (B, N, D) cutout embeddings; targets: (B, P, D); weights: (B, P)
    (0 for padding); stops: (B, P) distances (NaN for none). A positive prompt
    stops pulling once its distance falls below its stop, a negative one stops
    pushing once its distance rises above it. Returns (B,) — the weighted mean
    distances, whose value does not depend on the stops (only the gradient does).
    """
    dist = spherical_distance(embeds.unsqueeze(2).float(), targets.unsqueeze(1).float())  # (B, N, P)
    has_stop = ~torch.isnan(stops)
    stop = stops.unsqueeze(1)
    done = torch.where((weights > 0).unsqueeze(1), dist < stop, dist > stop) & has_stop.unsqueeze(1)
    # Same value, no gradient where the prompt is done.
    effective = torch.where(done, dist.detach(), dist)
    return (effective.mean(1) * weights).sum(1)

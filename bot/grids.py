"""Four candidates of one prompt (a grid), and the jobs made from a candidate: upscale and vary.

A grid is four jobs of one group (``Store.enqueue_many(..., group=True)``): the prompt's
parameters at the server's grid settings (a smaller size and fewer steps) with four seeds. They
share a batch key (model, size, cutouts), so a worker steps them together. A candidate keeps the
size and steps it was asked for in ``extra["full"]``: its upscale re-optimises the candidate's
picture, as an init image, at that size and step count (docs/grids.md says why). Its variations
are four new candidates that start from its picture, each with a new seed and a small noise
prompt of its own.

Pure functions of parameters and settings; bot/grid_pictures.py draws the 2x2 picture.
"""

from __future__ import annotations

from typing import Any

from bot.options import MAX_SEED, MULTIPLE, new_seed, round_side
from db import GuildSettings
from jobspec import JobParams
from jobspec.prompts import NoisePrompt

GRID = 4
"""Candidates in a grid (2x2)."""
FULL = "full"
"""``extra`` key: the size and steps a grid's candidate stands in for, {"width", "height", "steps"}."""
VARY_NOISE_WEIGHT = 0.2
"""Weight of a variation's own noise prompt: enough to move it off its parent, not off the prompt."""


def scaled(width: int, height: int, most: int) -> tuple[int, int]:
    """(width, height) shrunk, aspect kept, so that neither side is over ``most`` (multiples of 16)."""
    scale = min(1.0, most / max(width, height))
    return min(width, round_side(width * scale)), min(height, round_side(height * scale))


def grid_params(params: JobParams, settings: GuildSettings) -> list[JobParams]:
    """The four candidates of ``params`` at the server's grid size and steps; the first keeps the
    seed (a given seed gives the same grid again), the others the seeds after it."""
    width, height = scaled(params.width, params.height, max(MULTIPLE, settings.grid_size))
    extra: dict[str, Any] = dict(params.extra) | {
        FULL: {"width": params.width, "height": params.height, "steps": params.steps}
    }
    small = params.with_changes(width=width, height=height, steps=min(params.steps, settings.grid_steps),
                                extra=extra)
    return [small.with_changes(seed=(params.seed + i) % (MAX_SEED + 1), extra=dict(extra)) for i in range(GRID)]


def full_size(params: JobParams, settings: GuildSettings) -> tuple[int, int, int]:
    """(width, height, steps) an upscale of a candidate makes: what the candidate stands in for,
    within the server's largest size and steps now."""
    full = params.extra.get(FULL)
    if isinstance(full, dict) and all(isinstance(full.get(k), int) for k in ("width", "height", "steps")):
        width, height, steps = int(full["width"]), int(full["height"]), int(full["steps"])
    else:  # not a grid's candidate: twice its size, its steps
        width, height, steps = params.width * 2, params.height * 2, params.steps
    width, height = scaled(max(width, MULTIPLE), max(height, MULTIPLE), settings.max_size)
    return width, height, max(1, min(steps, settings.max_steps))


def upscale_params(params: JobParams, picture: str, settings: GuildSettings) -> JobParams:
    """The upscale of a candidate whose finished picture is at ``picture``: the same prompts and
    seed, at the full size and steps, starting from the picture."""
    width, height, steps = full_size(params, settings)
    extra = {k: v for k, v in params.extra.items() if k != FULL}
    return params.with_changes(width=width, height=height, steps=steps, init_image=picture, init_weight=0.0,
                               extra=extra)


def variation_params(params: JobParams, picture: str) -> list[JobParams]:
    """Four new candidates near a candidate whose finished picture is at ``picture``: the same
    prompts and size, each from the picture with a new seed and a noise prompt of its own."""
    out = []
    for _ in range(GRID):
        seed = new_seed()
        noise = (*params.noise_prompts, NoisePrompt(seed=seed, weight=VARY_NOISE_WEIGHT))
        out.append(params.with_changes(seed=seed, init_image=picture, init_weight=0.0, noise_prompts=noise,
                                       extra=dict(params.extra)))
    return out


def reroll_params(candidates: list[JobParams]) -> list[JobParams]:
    """A grid's candidates again with four new seeds."""
    return [params.with_changes(seed=new_seed(), extra=dict(params.extra)) for params in candidates]

"""From /imagine's options to validated job parameters, under the server's limits.

Everything here is checked before anything is queued or even deferred, so a
refusal can be an immediate ephemeral sentence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from bot.config import BotConfig
from bot.errors import OptionError
from bot.text import plain
from db import GuildSettings
from jobspec import JobParams, ParamError, Prompt, PromptError, parse_prompts
from jobspec.params import parse_size

MULTIPLE = 16
MAX_SEED = 2**32 - 1
ASPECTS: dict[str, tuple[int, int]] = {
    "1:1": (1, 1),
    "4:3": (4, 3),
    "3:4": (3, 4),
    "3:2": (3, 2),
    "2:3": (2, 3),
    "16:9": (16, 9),
    "9:16": (9, 16),
}


@dataclass(frozen=True)
class ImagineOptions:
    prompt: str
    steps: int | None = None
    size: str | None = None
    aspect: str | None = None
    seed: int | None = None
    cutouts: int | None = None
    model: str | None = None
    style: str | None = None  # the style's prompt text, already looked up
    timelapse: bool = False


def new_seed() -> int:
    return random.SystemRandom().randint(0, MAX_SEED)


def round_side(value: float) -> int:
    return max(MULTIPLE, round(value / MULTIPLE) * MULTIPLE)


def pick_size(opts: ImagineOptions, limits: GuildSettings, config: BotConfig) -> tuple[int, int]:
    if opts.size and opts.aspect:
        raise OptionError("Give either a size or an aspect ratio, not both.")
    if opts.size:
        try:
            width, height = parse_size(opts.size)
        except ParamError as exc:
            raise OptionError(plain(exc)) from None
        if width % MULTIPLE or height % MULTIPLE:
            raise OptionError(
                f"The size {width}x{height} must be a multiple of {MULTIPLE} on each side, "
                f"e.g. {round_side(width)}x{round_side(height)}."
            )
    else:
        side = min(config.default_side, limits.max_size)
        if opts.aspect is not None and opts.aspect not in ASPECTS:
            raise OptionError(f"The aspect ratio {plain(opts.aspect, 20)} is not one I know; "
                              f"choose one of: {', '.join(ASPECTS)}.")
        a, b = ASPECTS[opts.aspect or "1:1"]
        if a >= b:
            width, height = side, round_side(side * b / a)
        else:
            width, height = round_side(side * a / b), side
    if width < MULTIPLE or height < MULTIPLE:
        raise OptionError(f"The size {width}x{height} is too small; each side needs at least {MULTIPLE} pixels.")
    return width, height


def pick_prompts(opts: ImagineOptions) -> tuple[Prompt, ...]:
    """The prompt's parts and then the style's, parsed; OptionError with one sentence otherwise (also for
    CLIP's own start and end markers, which parse_prompts refuses)."""
    try:
        prompts = parse_prompts(opts.prompt)
        if opts.style:
            prompts = prompts + parse_prompts(opts.style)
    except PromptError as exc:
        raise OptionError(plain(exc)) from None
    return prompts


def pick_model(opts: ImagineOptions, limits: GuildSettings, config: BotConfig) -> str:
    """The asked-for model if it is installed, else the first installed one the server allows."""
    model = opts.model or next(
        (m for m in config.models if not limits.allowed_models or m in limits.allowed_models), config.models[0]
    )
    if model not in config.models:
        raise OptionError(f"The model {plain(model, 100)} is not installed; choose one of: "
                          f"{plain(', '.join(config.models))}.")
    return model


def build_params(opts: ImagineOptions, limits: GuildSettings, config: BotConfig) -> JobParams:
    """Validated JobParams for the options, without the uploaded pictures (they are fetched
    after every cheap check); OptionError with one sentence otherwise.

    The store checks the server's rules (steps, size, cutouts, models, channels, banned
    words) when it queues the job made from these params.
    """
    prompts = pick_prompts(opts)
    model = pick_model(opts, limits, config)
    width, height = pick_size(opts, limits, config)
    extra: dict[str, Any] = dict(config.extra_params)
    if opts.timelapse:
        extra["timelapse"] = True
    params = JobParams(
        prompts=prompts,
        width=width,
        height=height,
        steps=opts.steps if opts.steps is not None else min(config.default_steps, limits.max_steps),
        cutn=opts.cutouts if opts.cutouts is not None else min(config.default_cutouts, limits.max_cutouts),
        seed=opts.seed if opts.seed is not None else new_seed(),
        model=model,
        clip_model=config.clip_model,
        clip_pretrained=config.clip_pretrained,
        extra=extra,
    )
    try:
        return params.validate(multiple_of=MULTIPLE)
    except (ParamError, PromptError) as exc:
        raise OptionError(plain(exc)) from None

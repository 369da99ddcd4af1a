"""Prompt syntax: ``a temple | trending on artstation:0.5 | blurry:-1``.

Prompts are separated by ``|``. Each may end with ``:weight`` and then
``:stop``. The weight scales how hard the prompt pulls (negative weights push
away); the stop is a spherical distance: a positive prompt stops pulling once
the picture is closer than it, a negative prompt stops pushing once the
picture is farther than it. CLIP's own start and end markers (``<end_of_text>``, in any case
or as HTML entities: ``jobspec.clip_text.first_marker``) are refused: CLIP reads them as no
words and stops reading a prompt at an end marker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from jobspec.clip_text import first_marker

MAX_PROMPTS = 16
MAX_PROMPT_CHARS = 400
MAX_TOTAL_CHARS = 2000
MAX_ABS_WEIGHT = 100.0
MAX_STOP = 4.0  # spherical distance lies in [0, pi^2 / 2] ~ [0, 4.93]


class PromptError(ValueError):
    """A prompt the user wrote can't be used; the message says why and how to fix it."""


@dataclass(frozen=True)
class Prompt:
    """One weighted prompt: text (or, for image prompts, a file path)."""

    text: str
    weight: float = 1.0
    stop: float | None = None

    def to_syntax(self) -> str:
        out = self.text
        if self.weight != 1.0 or self.stop is not None:
            out += f":{self.weight:g}"
        if self.stop is not None:
            out += f":{self.stop:g}"
        return out


@dataclass(frozen=True)
class NoisePrompt:
    """A target made of seeded random noise in CLIP's embedding space."""

    seed: int
    weight: float = 1.0


def _parse_number(token: str, what: str, part: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise PromptError(f"The {what} in “{part}” must be a number, not “{token}”.") from None
    if not math.isfinite(value):
        raise PromptError(f"The {what} in “{part}” must be a finite number, not “{token}”.")
    return value


def _looks_numeric(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _split_part(part: str) -> tuple[str, list[str]]:
    """Split one prompt part (``text:w:s``) into its text and up to two trailing number tokens.

    Tokens after the last colons are taken from the end, at most two, while each reads as a
    number to ``float`` (``12``, `` 0.5 ``, ``1e3``, ``inf``, ``nan``: the caller refuses what
    is not finite or out of range). The first one that doesn't read as a number ends the
    search, and it and everything before it are text: ``time: 12 o'clock``, ``cat:abc`` and
    ``cat:1:x`` are all text with no numbers, ``a:b:0.5`` is ``a:b`` with one, ``a:1:2:3`` is
    ``a:1`` with two (``2`` and ``3``).
    """
    pieces = part.split(":")
    numbers: list[str] = []
    while len(pieces) > 1 and len(numbers) < 2:
        token = pieces[-1].strip()
        if _looks_numeric(token):
            numbers.insert(0, token)
            pieces.pop()
        else:
            break
    return ":".join(pieces), numbers


def _parse_one(part: str) -> Prompt:
    text, numbers = _split_part(part)
    text = text.strip()
    if not text:
        raise PromptError(f"“{part.strip()}” has a weight but no text; write the words before the colon.")
    if len(text) > MAX_PROMPT_CHARS:
        raise PromptError(
            f"One prompt is {len(text)} characters long; keep each prompt under {MAX_PROMPT_CHARS}."
        )
    marker = first_marker(text)
    if marker is not None:
        raise PromptError(
            f"Your prompt contains “{marker}”, which CLIP reads as a marker of where a text starts or ends, "
            "not as words; remove it."
        )
    weight = _parse_number(numbers[0], "weight", part.strip()) if numbers else 1.0
    stop = _parse_number(numbers[1], "stop value", part.strip()) if len(numbers) > 1 else None
    if abs(weight) > MAX_ABS_WEIGHT:
        raise PromptError(f"The weight {weight:g} is too large; use a weight between -{MAX_ABS_WEIGHT:g} and {MAX_ABS_WEIGHT:g}.")
    if weight == 0:
        raise PromptError(f"“{text}” has weight 0, so it would do nothing; remove it or give it a weight.")
    if stop is not None and not (-MAX_STOP <= stop <= MAX_STOP):
        raise PromptError(f"The stop value {stop:g} is out of range; use a value between -{MAX_STOP:g} and {MAX_STOP:g}.")
    return Prompt(text=text, weight=weight, stop=stop)


def parse_prompts(source: str, *, allow_empty: bool = False) -> tuple[Prompt, ...]:
    """Parse ``a | b:0.5 | c:-1:0.9`` into prompts.

    Raises PromptError with a sentence for the user on malformed input.
    """
    if len(source) > MAX_TOTAL_CHARS:
        raise PromptError(f"The prompt is {len(source)} characters long; keep it under {MAX_TOTAL_CHARS}.")
    parts = list(source.split("|"))
    prompts = tuple(_parse_one(p) for p in parts if p.strip())
    if not prompts and not allow_empty:
        raise PromptError("The prompt is empty; describe the picture, e.g. “a wooden banana temple | trending on artstation”.")
    if len(prompts) > MAX_PROMPTS:
        raise PromptError(f"There are {len(prompts)} prompts; use at most {MAX_PROMPTS}, separated by “|”.")
    return prompts


def parse_noise_prompts(source: str) -> tuple[NoisePrompt, ...]:
    """Parse noise prompts written as ``seed:weight | seed:weight`` (weight optional)."""
    result: list[NoisePrompt] = []
    for part in (p.strip() for p in source.split("|")):
        if not part:
            continue
        seed_text, _, weight_text = part.partition(":")
        try:
            seed = int(seed_text.strip())
        except ValueError:
            raise PromptError(f"A noise prompt starts with a whole-number seed, not “{seed_text.strip()}”.") from None
        weight = _parse_number(weight_text.strip(), "weight", part) if weight_text.strip() else 1.0
        if abs(weight) > MAX_ABS_WEIGHT or weight == 0:
            raise PromptError(f"The noise prompt weight {weight:g} must be non-zero and between -{MAX_ABS_WEIGHT:g} and {MAX_ABS_WEIGHT:g}.")
        result.append(NoisePrompt(seed=seed, weight=weight))
    if len(result) > MAX_PROMPTS:
        raise PromptError(f"There are {len(result)} noise prompts; use at most {MAX_PROMPTS}.")
    return tuple(result)

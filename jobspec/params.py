"""Parameters of one picture job, validated, and their JSON form."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from jobspec.prompts import NoisePrompt, Prompt, PromptError

DEFAULT_VQGAN = "vqgan_imagenet_f16_16384"
DEFAULT_CLIP = "ViT-B-32-quickgelu"
DEFAULT_CLIP_PRETRAINED = "openai"


class ParamError(ValueError):
    """A job parameter is out of range; the message names it and the valid range."""


@dataclass(frozen=True)
class Range:
    low: float
    high: float


# Hard limits of the engine itself; guild settings may only narrow them.
LIMITS: dict[str, Range] = {
    "steps": Range(1, 5000),
    "width": Range(16, 2048),
    "height": Range(16, 2048),
    "cutn": Range(1, 256),
    "cut_pow": Range(0.1, 10.0),
    "lr": Range(1e-4, 10.0),
    "init_weight": Range(0.0, 100.0),
    "alpha": Range(0.0, 100.0),
    "seed": Range(0, 2**63 - 1),
}


@dataclass(frozen=True)
class JobParams:
    """Everything the engine needs to make one picture (besides the models)."""

    prompts: tuple[Prompt, ...]
    image_prompts: tuple[Prompt, ...] = ()
    noise_prompts: tuple[NoisePrompt, ...] = ()
    width: int = 512
    height: int = 512
    steps: int = 500
    cutn: int = 32
    cut_pow: float = 1.0
    lr: float = 0.1
    seed: int = 0
    init_image: str | None = None
    init_weight: float = 0.0
    alpha: float = 0.0
    model: str = DEFAULT_VQGAN
    clip_model: str = DEFAULT_CLIP
    clip_pretrained: str = DEFAULT_CLIP_PRETRAINED
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def validate(self, *, multiple_of: int = 16) -> JobParams:
        """Check every field; returns self so calls chain. Raises ParamError."""
        for name, rng in LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ParamError(f"{name} must be a number, not {value!r}.")
            if isinstance(value, float) and not math.isfinite(value):
                raise ParamError(f"{name} must be a finite number, not {value!r}.")
            if not rng.low <= value <= rng.high:
                raise ParamError(f"{name} must be between {rng.low:g} and {rng.high:g}, not {value:g}.")
        for name in ("steps", "width", "height", "cutn", "seed"):
            if not isinstance(getattr(self, name), int):
                raise ParamError(f"{name} must be a whole number, not {getattr(self, name)!r}.")
        if self.width % multiple_of or self.height % multiple_of:
            raise ParamError(
                f"The size {self.width}x{self.height} must be a multiple of {multiple_of} on each side "
                f"(e.g. {self.width // multiple_of * multiple_of or multiple_of}x{self.height // multiple_of * multiple_of or multiple_of})."
            )
        if not (self.prompts or self.image_prompts or self.noise_prompts):
            raise PromptError("The job has no prompt; give a text prompt, an image prompt or a noise prompt.")
        return self

    @property
    def prompt_text(self) -> str:
        return " | ".join(p.to_syntax() for p in self.prompts)

    def with_changes(self, **changes: Any) -> JobParams:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["prompts"] = [asdict(p) for p in self.prompts]
        data["image_prompts"] = [asdict(p) for p in self.image_prompts]
        data["noise_prompts"] = [asdict(p) for p in self.noise_prompts]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobParams:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ParamError(f"Unknown job parameters {sorted(unknown)}; valid ones are {sorted(known)}.")
        values = dict(data)
        try:
            values["prompts"] = tuple(Prompt(**p) for p in data.get("prompts", ()))
            values["image_prompts"] = tuple(Prompt(**p) for p in data.get("image_prompts", ()))
            values["noise_prompts"] = tuple(NoisePrompt(**p) for p in data.get("noise_prompts", ()))
        except TypeError as exc:
            raise ParamError(f"Malformed prompt in job parameters: {exc}.") from None
        return cls(**values)


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``512x384`` (or ``512``) into (width, height). Raises ParamError."""
    cleaned = text.lower().replace(" ", "").replace("×", "x")
    parts = cleaned.split("x")
    try:
        if len(parts) == 1:
            w = h = int(parts[0])
        elif len(parts) == 2:
            w, h = int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise ParamError(f"The size “{text}” is not WIDTHxHEIGHT, e.g. 512x512.") from None
    return w, h

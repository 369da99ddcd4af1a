"""Building blocks for the store tests: jobs and settings to feed the store."""

from __future__ import annotations

from typing import Any

from db import GuildSettings, NewJob

# Limits that never get in the way; limit tests set their own.
OPEN_LIMITS = GuildSettings(
    cooldown_s=0,
    max_queued_per_user=100_000,
    max_queued_per_guild=1_000_000,
    gpu_budget_guild_s=0,
    gpu_budget_user_s=0,
)
PNG = b"\x89PNG\r\n\x1a\n fake picture"


def params(**overrides: Any) -> dict[str, Any]:
    base = {
        "steps": 100,
        "width": 256,
        "height": 256,
        "cutn": 16,
        "model": "vqgan_imagenet_f16_16384",
    }
    return base | overrides


def new_job(
    guild: int = 1, user: int = 100, prompt: str = "a wooden banana temple", **overrides: Any
) -> NewJob:
    job_fields = ("channel_id", "seed", "parent_id", "relation", "priority", "max_attempts")
    fields = {k: overrides.pop(k) for k in job_fields if k in overrides}
    return NewJob(
        guild_id=guild,
        channel_id=fields.pop("channel_id", 10),
        user_id=user,
        prompt=prompt,
        params=params(**overrides),
        seed=fields.pop("seed", 7),
        **fields,
    )

"""Ending jobs the way a worker does, through the store's own calls (claim, then finish or fail),
for tests about what the bot posts afterwards rather than about the picture."""

from __future__ import annotations

from typing import Any

from tests.bot.pictures import small_png


async def finish_next(store: Any, count: int = 1, *, png: bytes | None = None) -> list[int]:
    """Claim the next ``count`` queued jobs and finish each with a small PNG; their ids."""
    done = []
    for _ in range(count):
        for claim in await store.claim("test-worker", lease_seconds=60):
            assert await store.finish(claim.job.id, claim.token, result_png=png or small_png(), gpu_seconds=1.0)
            done.append(claim.job.id)
    return done


async def fail_next(store: Any, error: str) -> int:
    """Claim the next queued job and fail it for good with ``error``; its id."""
    (claim,) = await store.claim("test-worker", lease_seconds=60)
    assert await store.fail(claim.job.id, claim.token, error=error, gpu_seconds=1.0)
    return claim.job.id

"""The fair-share policy's numbers, one definition for every backend.

The policy (``db/sqlite/scheduler.py`` and docs/queue.md describe it in full):
start-time fair queueing on GPU seconds, least-served guild first, then
least-served member, then priority and age. A claim charges the job's
estimated GPU seconds (its cost x the measured seconds per cost unit); the
measured ones replace them when the attempt ends.
"""

from __future__ import annotations

DEFAULT_SECONDS_PER_COST = 1 / (12.4 * 512 * 512 * 32)
"""The estimate before any job has finished: the classic loop on one H100, 12.4 steps/s at
512x512 with 32 cutouts."""
SPEED_EMA_WEIGHT = 0.2
"""How far one finished job moves the measured seconds per cost unit towards its own."""
SPEED_SAMPLE_RANGE = (0.1, 10.0)
"""One job's sample is clipped to this factor of the estimate before it moves it."""
IDLE_CREDIT_S = 60.0
"""A guild (or member) that starts waiting again goes first, but is lifted to at least the
least ``vtime`` of those waiting minus this: idling banks no more credit than that."""

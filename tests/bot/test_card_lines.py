"""The card's state line for a job that resumed from a checkpoint or waits to try again (no Discord needed)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from bot.cards import render_card, state_line
from db import JobState
from db.jobs import Job

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def job(**changes: object) -> Job:
    base = Job(
        id=7, guild_id=1, channel_id=10, user_id=100, message_id=None, result_message_id=None,
        prompt="a wooden banana temple", params={"width": 512, "height": 512, "steps": 500, "cutn": 32,
                                                 "model": "vqgan_imagenet_f16_16384"},
        state=JobState.RUNNING, priority=0, cost=1, attempts=1, max_attempts=3, step=0, total_steps=500,
        created_at=NOW, started_at=NOW, finished_at=None, error=None, parent_id=None, relation=None, seed=7,
        steps_per_s=None, gpu_seconds=0.0, delivered=False, version=1,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_resumed_job_says_where_it_resumed() -> None:
    line = state_line(job(step=340, resumed_from_step=320, attempts=2), now=NOW)
    assert line == "🎨 Running: step 340/500 · resumed at 320/500"
    assert "resumed" not in state_line(job(step=340), now=NOW)
    card = render_card(job(step=340, resumed_from_step=320), now=NOW)
    assert card.embed is not None and "resumed at 320/500" in (card.embed.description or "")


def test_a_job_waiting_to_retry_says_when_and_why_the_last_try_failed() -> None:
    at = NOW + timedelta(seconds=40)
    waiting = job(state=JobState.QUEUED, not_before=at, error="The GPU's memory is held by other work now.")
    line = state_line(waiting, now=NOW)
    assert line == (f"🔁 Trying again <t:{int(at.timestamp())}:R> (attempt 2 of 3) · "
                    "last try: The GPU's memory is held by other work now.")


def test_the_failure_on_the_card_is_inert_text() -> None:
    hostile = job(state=JobState.QUEUED, not_before=NOW + timedelta(seconds=5),
                  error="@everyone <@&123> **bold** [link](https://x.example) " + "x" * 2000)
    line = state_line(hostile, now=NOW)
    assert "@everyone" not in line and "<@&123>" not in line
    assert len(line) < 400


def test_a_wait_that_is_over_shows_the_job_as_queued() -> None:
    over = job(state=JobState.QUEUED, not_before=NOW - timedelta(seconds=1), error="x")
    assert state_line(over, now=NOW) == "⏳ Queued"

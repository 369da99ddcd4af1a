"""The decisions ``enqueue`` makes about a guild's limits.

Pure functions of the guild's settings and its current usage, so that every
store backend refuses the same jobs with the same errors. The backend reads
the usage and calls these inside the transaction that inserts the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from db.banned import find_banned
from db.clock import next_utc_midnight
from db.errors import LimitExceeded
from db.jobs import CheckedJob
from db.settings import GuildSettings
from db.states import JobKind


@dataclass(frozen=True)
class QueueUsage:
    """What a guild and one of its members hold and have used (for ``check_quota``)."""

    user_pending: int
    guild_pending: int
    user_last_enqueued_at: float | None
    user_gpu_s_today: float
    guild_gpu_s_today: float


def check_policy(settings: GuildSettings, job: CheckedJob) -> None:
    """Refuse a job the guild's settings don't allow, whatever the queue holds."""
    if settings.allowed_channels and job.new.channel_id not in settings.allowed_channels:
        raise LimitExceeded(
            "allowed_channels",
            None,
            "Pictures can't be made in this channel. Use a channel where this server allows vqbot.",
        )
    if find_banned(job.prompt, settings.banned_words):
        raise LimitExceeded(
            "banned_words",
            None,
            "Your prompt contains a word this server does not allow. Rephrase it and try again.",
        )
    if job.kind is not JobKind.IMAGINE:
        return  # the rest are rules for pictures: a description has no model, size or steps of its own
    if settings.allowed_models and job.model not in settings.allowed_models:
        raise LimitExceeded(
            "allowed_models",
            None,
            f"The model {job.model!r} is not allowed in this server. "
            f"Choose one of: {', '.join(settings.allowed_models)}.",
        )
    if job.steps > settings.max_steps:
        raise LimitExceeded(
            "max_steps",
            None,
            f"This server allows at most {settings.max_steps} steps and you asked for "
            f"{job.steps}. Ask for fewer steps.",
        )
    if max(job.width, job.height) > settings.max_size:
        raise LimitExceeded(
            "max_size",
            None,
            f"This server allows pictures up to {settings.max_size} pixels a side and you asked "
            f"for {job.width}x{job.height}. Choose a smaller size.",
        )
    if job.cutn > settings.max_cutouts:
        raise LimitExceeded(
            "max_cutouts",
            None,
            f"This server allows at most {settings.max_cutouts} cutouts and you asked for "
            f"{job.cutn}. Ask for fewer cutouts.",
        )


def check_quota(settings: GuildSettings, usage: QueueUsage, now: float) -> None:
    """Refuse a job when the member or guild is over a cap, cooling down or out of budget.

    ``now`` and ``usage.user_last_enqueued_at`` are epoch seconds.
    """
    last = usage.user_last_enqueued_at
    if settings.cooldown_s > 0 and last is not None and now < last + settings.cooldown_s:
        wait = last + settings.cooldown_s - now
        raise LimitExceeded(
            "cooldown_s",
            datetime.fromtimestamp(last + settings.cooldown_s, UTC),
            f"This server asks members to wait {settings.cooldown_s:g} seconds between jobs. "
            f"Try again in {_seconds(wait)}.",
        )
    if usage.user_pending >= settings.max_queued_per_user:
        raise LimitExceeded(
            "max_queued_per_user",
            None,
            f"You already have {usage.user_pending} jobs waiting or running, the most this "
            "server allows. Try again when one of them finishes.",
        )
    if usage.guild_pending >= settings.max_queued_per_guild:
        raise LimitExceeded(
            "max_queued_per_guild",
            None,
            f"This server already has {usage.guild_pending} jobs waiting or running, its limit. "
            "Try again when one of them finishes.",
        )
    budget_resets = next_utc_midnight(now)
    resets_in = _seconds(budget_resets.timestamp() - now)
    if 0 < settings.gpu_budget_user_s <= usage.user_gpu_s_today:
        raise LimitExceeded(
            "gpu_budget_user_s",
            budget_resets,
            f"You have used your {settings.gpu_budget_user_s:g} GPU seconds for today in this "
            f"server. Your budget resets at 00:00 UTC, in {resets_in}.",
        )
    if 0 < settings.gpu_budget_guild_s <= usage.guild_gpu_s_today:
        raise LimitExceeded(
            "gpu_budget_guild_s",
            budget_resets,
            f"This server has used its {settings.gpu_budget_guild_s:g} GPU seconds for today. "
            f"The budget resets at 00:00 UTC, in {resets_in}.",
        )


def _seconds(seconds: float) -> str:
    """A short human duration: '7 seconds', '3 minutes', '2 hours'."""
    total = max(1, round(seconds))
    if total < 120:
        return f"{total} second{'s' if total != 1 else ''}"
    if total < 7200:
        return f"{round(total / 60)} minutes"
    return f"{total / 3600:.1f} hours"

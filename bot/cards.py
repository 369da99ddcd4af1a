"""A job as Discord shows it: the card (embed + buttons) and the result message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import discord

from bot.controls import JobButton
from bot.text import plain
from db.jobs import Job
from db.states import JobState

PREVIEW_NAME = "preview.webp"
EMBED_TITLE_MAX = 256
FIELD_MAX = 1024

COLOURS = {
    JobState.QUEUED: discord.Colour.light_grey(),
    JobState.RUNNING: discord.Colour.blurple(),
    JobState.CANCELLING: discord.Colour.orange(),
    JobState.SUCCEEDED: discord.Colour.green(),
    JobState.FAILED: discord.Colour.red(),
    JobState.CANCELLED: discord.Colour.dark_grey(),
}


@dataclass(frozen=True)
class QueueSpot:
    """Where a queued job stands: jobs ahead of it and the estimated start."""

    ahead: int
    eta_s: float | None


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def relative(now: datetime, seconds: float) -> str:
    return discord.utils.format_dt(now + timedelta(seconds=max(0.0, seconds)), "R")


def state_line(job: Job, spot: QueueSpot | None = None, now: datetime | None = None) -> str:
    """One line of state. Times are the store's estimates of when the job should be *done*
    (``store.position``: the running remainder, the jobs ahead and this job, over the measured
    speed), so the card says "done ~<when>", never "starts"."""
    now = now or discord.utils.utcnow()
    state = job.state
    if state is JobState.QUEUED:
        if spot is None:
            return "⏳ Queued"
        where = "next in line" if spot.ahead == 0 else f"{spot.ahead} ahead"
        eta = f", done ~{relative(now, spot.eta_s)}" if spot.eta_s is not None else ""
        return f"⏳ Queued ({where}{eta})"
    if state is JobState.RUNNING:
        rate = f" · {job.steps_per_s:.1f} steps/s" if job.steps_per_s else ""
        left = ""
        if job.steps_per_s and job.total_steps > job.step:
            left = f" · done ~{relative(now, (job.total_steps - job.step) / job.steps_per_s)}"
        return f"🎨 Running: step {job.step}/{job.total_steps}{rate}{left}"
    if state is JobState.CANCELLING:
        return f"🛑 Cancelling at step {job.step}/{job.total_steps}"
    if state is JobState.SUCCEEDED:
        return f"✅ Done in {job.gpu_seconds:.0f} s" if job.gpu_seconds else "✅ Done"
    if state is JobState.FAILED:
        return f"⚠️ Failed: {plain(job.error or 'unknown error', 300)}"
    return f"✖️ Cancelled at step {job.step}/{job.total_steps}" if job.step else "✖️ Cancelled"


def parameter_text(job: Job) -> str:
    p: dict[str, Any] = job.params
    parts = [
        f"{p.get('width')}x{p.get('height')}",
        f"{p.get('steps')} steps",
        f"seed {job.seed}",
        f"{p.get('cutn')} cutouts",
        plain(p.get("model")),
    ]
    if p.get("init_image"):
        parts.append("init image")
    if p.get("image_prompts"):
        parts.append("image prompt")
    return " · ".join(parts)


def lineage(job: Job) -> str | None:
    if job.parent_id is None:
        return None
    verb = {"rerun": "Rerun of", "continue": "Continues"}.get(str(job.relation), "From")
    return f"{verb} job #{job.parent_id}"


def card_embed(job: Job, *, spot: QueueSpot | None = None, with_preview: bool = False,
               now: datetime | None = None) -> discord.Embed:
    """The job card's embed. ``with_preview`` refers to an attached ``preview.webp``."""
    embed = discord.Embed(
        title=plain(job.prompt, EMBED_TITLE_MAX),
        description=state_line(job, spot, now),
        colour=COLOURS.get(job.state, discord.Colour.default()),
    )
    embed.add_field(name="Parameters", value=shorten(parameter_text(job), FIELD_MAX), inline=False)
    origin = lineage(job)
    if origin:
        embed.add_field(name="Origin", value=origin, inline=True)
    embed.add_field(name="By", value=f"<@{job.user_id}>", inline=True)
    embed.set_footer(text=f"Job #{job.id}")
    if with_preview:
        embed.set_image(url=f"attachment://{PREVIEW_NAME}")
    return embed


def card_view(job: Job, *, buttons_enabled: bool = True) -> discord.ui.View | None:
    """Buttons for the card: cancel while the job is pending, rerun/continue once it is over."""
    if not buttons_enabled:
        return None
    view = discord.ui.View(timeout=None)
    if job.state.is_terminal:
        view.add_item(JobButton("rerun", job.id))
        if job.state is JobState.SUCCEEDED:
            view.add_item(JobButton("continue", job.id))
    elif job.state is not JobState.CANCELLING:
        view.add_item(JobButton("cancel", job.id))
    return view if view.children else None


def result_content(job: Job) -> str:
    """The message that goes out when a job succeeds: it mentions the owner (send it with
    ``mentions.owner(job.user_id)``: the prompt is inert text, but only the owner may ping)."""
    return f"<@{job.user_id}> here is **{plain(job.prompt, 1200)}**\n-# {parameter_text(job)} · job #{job.id}"


def failure_content(job: Job) -> str:
    """A failed job's message to its owner (send it with ``mentions.owner(job.user_id)``)."""
    return f"<@{job.user_id}> job #{job.id} failed: {plain(job.error or 'unknown error', 1500)}"


def result_view(job: Job, *, buttons_enabled: bool = True) -> discord.ui.View | None:
    if not buttons_enabled:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("rerun", job.id))
    view.add_item(JobButton("continue", job.id))
    return view


def refusal(exc: Any) -> str:
    """A LimitExceeded as the user reads it: the store's sentence, the limit, when it frees up."""
    when = f", frees up {discord.utils.format_dt(exc.retry_at, 'R')}" if exc.retry_at else ""
    return f"{plain(exc.message)} (limit: `{exc.limit}`{when})"

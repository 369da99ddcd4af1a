"""A job as Discord shows it: its card, its result message and its failure message.

Pure functions of the job's row and the few facts read beside it (where it stands in the queue,
its newest preview, the link to its result, whether the server shows buttons):
:func:`render_card` gives everything the card holds for the job's state (embed, buttons, files,
the reactions the bot offers on it), :func:`render_result` and :func:`render_failure` the
message that tells the owner how it ended. bot.card_posting and bot.delivery send them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import discord

from bot.controls import Action, JobButton
from bot.text import plain
from db.jobs import Job
from db.states import JobState
from jobspec.clip_text import dropped_text

PREVIEW_NAME = "preview.webp"
EMBED_TITLE_MAX = 256
FIELD_MAX = 1024
IGNORED_SHOWN = 200  # characters of one ignored prompt end shown
IGNORED_FIELD = "Not read by CLIP (past 77 tokens)"

COLOURS = {
    JobState.QUEUED: discord.Colour.light_grey(),
    JobState.RUNNING: discord.Colour.blurple(),
    JobState.CANCELLING: discord.Colour.orange(),
    JobState.SUCCEEDED: discord.Colour.green(),
    JobState.FAILED: discord.Colour.red(),
    JobState.CANCELLED: discord.Colour.dark_grey(),
}

# The reactions the bot offers for members to click: cancel while a job waits or runs; rerun and
# continue on its result; rerun on the card of a job that ended without a result.
PENDING_REACTIONS = (Action.CANCEL,)
RESULT_REACTIONS = (Action.RERUN, Action.CONTINUE)
ENDED_REACTIONS = (Action.RERUN,)


@dataclass(frozen=True)
class QueueSpot:
    """Where a queued job stands: jobs ahead of it and the estimated time until it is done."""

    ahead: int
    eta_s: float | None


@dataclass(frozen=True)
class JobMessage:
    """What one message about a job holds.

    ``files`` None leaves an edited message's files as they are; ``()`` removes them.
    ``reactions`` are the ones the bot offers on the message, ``withdrawn`` the ones it takes
    back (a job that ended can't be cancelled any more).
    """

    content: str | None = None
    embed: discord.Embed | None = None
    view: discord.ui.View | None = None
    files: tuple[discord.File, ...] | None = None
    reactions: tuple[Action, ...] = ()
    withdrawn: tuple[Action, ...] = ()

    def send_kwargs(self) -> dict[str, Any]:
        """Arguments for ``Messageable.send``: what is there, nothing for what is not."""
        kwargs: dict[str, Any] = {}
        if self.content is not None:
            kwargs["content"] = self.content
        if self.embed is not None:
            kwargs["embed"] = self.embed
        if self.view is not None:
            kwargs["view"] = self.view
        if self.files:
            kwargs["files"] = list(self.files)
        return kwargs

    def edit_kwargs(self) -> dict[str, Any]:
        """Arguments for editing a message into this one: no view removes the buttons."""
        kwargs: dict[str, Any] = {"embed": self.embed, "view": self.view}
        if self.content is not None:
            kwargs["content"] = self.content
        if self.files is not None:
            kwargs["attachments"] = list(self.files)
        return kwargs


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
        if job.not_before is not None and job.not_before > now:
            return retry_line(job)
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
        resumed = f" · resumed at {job.resumed_from_step}/{job.total_steps}" if job.resumed_from_step else ""
        return f"🎨 Running: step {job.step}/{job.total_steps}{resumed}{rate}{left}"
    if state is JobState.CANCELLING:
        return f"🛑 Cancelling at step {job.step}/{job.total_steps}"
    if state is JobState.SUCCEEDED:
        return f"✅ Done in {job.gpu_seconds:.0f} s" if job.gpu_seconds else "✅ Done"
    if state is JobState.FAILED:
        return f"⚠️ Failed: {plain(job.error or 'unknown error', 300)}"
    return f"✖️ Cancelled at step {job.step}/{job.total_steps}" if job.step else "✖️ Cancelled"


def retry_line(job: Job) -> str:
    """A failed attempt's job waiting for its next one: when that comes, and why the last one failed."""
    assert job.not_before is not None
    attempt = f" (attempt {job.attempts + 1} of {job.max_attempts})" if job.attempts < job.max_attempts else ""
    why = f" · last try: {plain(job.error, 300)}" if job.error else ""
    return f"🔁 Trying again {discord.utils.format_dt(job.not_before, 'R')}{attempt}{why}"


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


LINEAGE_VERBS = {"rerun": "Rerun of", "continue": "Continues", "upscale": "Upscale of",
                 "variation": "Variation of", "blend": "Blend from"}


def lineage(job: Job) -> str | None:
    """Where the job came from: its relation and parent job, e.g. "Upscale of job #6"."""
    if job.parent_id is None:
        return "Blend of uploaded pictures" if job.relation == "blend" else None
    verb = LINEAGE_VERBS.get(str(job.relation), "From")
    return f"{verb} job #{job.parent_id}"


def prompt_texts(params: dict[str, Any]) -> tuple[str, ...]:
    """The text of each text prompt in a job's params (each one CLIP encodes on its own)."""
    prompts = params.get("prompts")
    if not isinstance(prompts, list):
        return ()
    return tuple(p["text"] for p in prompts if isinstance(p, dict) and isinstance(p.get("text"), str))


@lru_cache(maxsize=1024)
def ignored_by_clip(texts: tuple[str, ...]) -> tuple[str, ...]:
    """The end of each prompt that CLIP will not read (it reads 77 tokens of each), as written."""
    return tuple(end for text in texts if (end := dropped_text(text)) is not None)


def ignored_text(ends: tuple[str, ...], *, total: int = FIELD_MAX) -> str:
    """Ignored prompt ends as inert text, “…” · “…”, in about ``total`` characters at most."""
    each = max(20, min(IGNORED_SHOWN, total // max(1, len(ends)) - 4))
    return " · ".join(f"“{plain(end, each)}”" for end in ends)


def render_card(job: Job, *, buttons: bool = True, spot: QueueSpot | None = None, image: discord.File | None = None,
                result_url: str | None = None, now: datetime | None = None) -> JobMessage:
    """The card of ``job`` in its current state.

    ``spot``: where a queued job stands; ``image``: a picture to show in the card (the newest
    preview, or the finished picture); ``result_url``: the result message to link to;
    ``buttons``: whether the server shows buttons.
    """
    description = state_line(job, spot, now)
    if result_url is not None:
        description += f" · [result]({result_url})"
    embed = discord.Embed(title=plain(job.prompt, EMBED_TITLE_MAX), description=description,
                          colour=COLOURS.get(job.state, discord.Colour.default()))
    embed.add_field(name="Parameters", value=shorten(parameter_text(job), FIELD_MAX), inline=False)
    add_ignored_words(embed, job)
    add_origin_and_owner(embed, job)
    embed.set_footer(text=f"Job #{job.id}")
    files = show_image(embed, image)
    if files is None and job.state.is_terminal:
        files = ()  # an ended job's card shows no preview
    return JobMessage(embed=embed, view=card_view(job) if buttons else None, files=files,
                      reactions=card_reactions(job),
                      withdrawn=PENDING_REACTIONS if job.state.is_terminal else ())


def add_ignored_words(embed: discord.Embed, job: Job) -> None:
    """A card's "Not read by CLIP" field: the end of each of the job's prompts past CLIP's 77
    tokens, if any; a grid's card shows its first candidate's (the four share their prompts)."""
    ignored = ignored_by_clip(prompt_texts(job.params))
    if ignored:
        embed.add_field(name=IGNORED_FIELD, value=ignored_text(ignored), inline=False)


def add_origin_and_owner(embed: discord.Embed, job: Job) -> None:
    """A card's "Origin" (what the job was made from, if anything) and "By" fields; a grid's card
    shows its first candidate's."""
    origin = lineage(job)
    if origin:
        embed.add_field(name="Origin", value=origin, inline=True)
    embed.add_field(name="By", value=f"<@{job.user_id}>", inline=True)


def show_image(embed: discord.Embed, image: discord.File | None) -> tuple[discord.File, ...] | None:
    """The files of a card with ``image`` shown in its embed; None (keep what it has) without one."""
    if image is None:
        return None
    embed.set_image(url=f"attachment://{image.filename}")
    return (image,)


def card_view(job: Job) -> discord.ui.View | None:
    """Buttons for the card: cancel while the job is pending, rerun/continue once it is over."""
    actions: tuple[Action, ...] = ()
    if job.state is JobState.SUCCEEDED:
        actions = RESULT_REACTIONS
    elif job.state.is_terminal:
        actions = ENDED_REACTIONS
    elif job.state is not JobState.CANCELLING:
        actions = PENDING_REACTIONS
    return buttons_for(job, actions)


def card_reactions(job: Job) -> tuple[Action, ...]:
    if job.state in (JobState.QUEUED, JobState.RUNNING):
        return PENDING_REACTIONS
    if job.state in (JobState.FAILED, JobState.CANCELLED):
        return ENDED_REACTIONS
    return ()


def buttons_for(job: Job, actions: tuple[Action, ...]) -> discord.ui.View | None:
    if not actions:
        return None
    view = discord.ui.View(timeout=None)
    for action in actions:
        view.add_item(JobButton(action, job.id))
    return view


def render_result(job: Job, files: list[discord.File], *, buttons: bool = True) -> JobMessage:
    """The message that brings a finished picture and mentions its owner (send it with
    ``mentions.owner(job.user_id)``: the prompt is inert text, but only the owner may ping)."""
    content = f"<@{job.user_id}> here is **{plain(job.prompt, 1200)}**\n-# {parameter_text(job)} · job #{job.id}"
    return JobMessage(content=content, view=buttons_for(job, RESULT_REACTIONS) if buttons else None,
                      files=tuple(files), reactions=RESULT_REACTIONS)


def render_failure(job: Job) -> JobMessage:
    """A failed job's message to its owner (send it with ``mentions.owner(job.user_id)``)."""
    return JobMessage(content=f"<@{job.user_id}> job #{job.id} failed: {plain(job.error or 'unknown error', 1500)}")

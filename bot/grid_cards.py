"""A grid as Discord shows it: one message for a group's four candidates.

Pure functions of the group's job rows (oldest first) and the few facts read beside them, as
bot.cards is for one job: the state of the group, the 2x2 picture, and the buttons: ❌ while
any candidate waits or runs; U1–U4 (upscale), V1–V4 (vary) for each finished candidate and 🔁
(four new seeds) once all have ended. A button carries its candidate's job id, so it works
after a restart; the 🔁 and ❌ buttons carry the group's id (its first job's).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import discord

from bot.cards import (
    COLOURS,
    EMBED_TITLE_MAX,
    FIELD_MAX,
    JobMessage,
    QueueSpot,
    add_ignored_words,
    add_origin_and_owner,
    parameter_text,
    shorten,
    show_image,
)
from bot.cards import state_line as job_state_line
from bot.controls import USED_STYLE, Action, JobButton, custom_id
from bot.text import plain
from db import Job, JobState

GRID_PREVIEW_NAME = "grid.webp"
GRID_RESULT_NAME = "grid.png"


def grid_state(jobs: Sequence[Job]) -> JobState:
    """The group's state as one job's would be: running while any runs, queued while any waits,
    then succeeded if any candidate did, else failed, else cancelled."""
    states = {job.state for job in jobs}
    for state in (JobState.RUNNING, JobState.CANCELLING, JobState.QUEUED, JobState.SUCCEEDED, JobState.FAILED):
        if state in states:
            return state
    return JobState.CANCELLED


def grid_line(jobs: Sequence[Job], spot: QueueSpot | None = None, now: datetime | None = None) -> str:
    """One line of the group's state, e.g. "🎨 Running 4 candidates: step 37/200"."""
    state = grid_state(jobs)
    count = len(jobs)
    if state is JobState.QUEUED:
        return job_state_line(next(j for j in jobs if j.state is JobState.QUEUED), spot, now) + f" · {count} candidates"
    if state in (JobState.RUNNING, JobState.CANCELLING):
        active = [j for j in jobs if j.state is state]
        step = sum(j.step for j in active) // len(active)
        waiting = sum(j.state is JobState.QUEUED for j in jobs)
        more = f" · {waiting} waiting" if waiting else ""
        verb = "🎨 Running" if state is JobState.RUNNING else "🛑 Cancelling"
        return f"{verb} {len(active)} of {count} candidates: step {step}/{active[0].total_steps}{more}"
    done = sum(j.state is JobState.SUCCEEDED for j in jobs)
    failed = [j for j in jobs if j.state is JobState.FAILED]
    if done == count:
        seconds = sum(j.gpu_seconds for j in jobs)
        return f"✅ {count} candidates done in {seconds:.0f} GPU s" if seconds else f"✅ {count} candidates done"
    if done:
        return f"✅ {done} of {count} candidates done"
    if failed:
        return f"⚠️ Failed: {plain(failed[0].error or 'unknown error', 300)}"
    return "✖️ Cancelled"


def id_range(jobs: Sequence[Job]) -> str:
    return f"#{jobs[0].id}–#{jobs[-1].id}" if len(jobs) > 1 else f"#{jobs[0].id}"


def render_grid_card(jobs: Sequence[Job], *, buttons: bool = True, spot: QueueSpot | None = None,
                     image: discord.File | None = None, mention: bool = False,
                     now: datetime | None = None) -> JobMessage:
    """The one message of a group (``jobs``: its candidates, oldest first).

    ``image``: the 2x2 picture; ``mention``: the message that brings the finished grid (send it
    with ``mentions.owner(...)``) starts with the owner's mention; ``buttons``: whether the
    server shows buttons.
    """
    first = jobs[0]
    embed = discord.Embed(title=plain(first.prompt, EMBED_TITLE_MAX), description=grid_line(jobs, spot, now),
                          colour=COLOURS.get(grid_state(jobs), discord.Colour.default()))
    seeds = ", ".join(str(job.seed) for job in jobs)
    parameters = parameter_text(first).replace(f"seed {first.seed}", f"seeds {seeds}")
    embed.add_field(name="Parameters", value=shorten(parameters, FIELD_MAX), inline=False)
    add_ignored_words(embed, first)
    add_origin_and_owner(embed, first)
    embed.set_footer(text=f"Jobs {id_range(jobs)} · U upscales a candidate, V varies it, 🔁 makes four new")
    files = show_image(embed, image)
    ended = all(job.state.is_terminal for job in jobs)
    content = None
    if mention:
        content = f"<@{first.user_id}> here are your candidates for **{plain(first.prompt, 1200)}**"
    return JobMessage(content=content, embed=embed, view=grid_view(jobs) if buttons else None, files=files,
                      reactions=() if ended else (Action.CANCEL,), withdrawn=(Action.CANCEL,) if ended else ())


def grid_view(jobs: Sequence[Job], *, used: frozenset[str] = frozenset()) -> discord.ui.View | None:
    """❌ while any candidate waits or runs; U/V per finished candidate and 🔁 once all ended.

    ``used``: the custom ids of the U/V buttons that were clicked (shown as used)."""
    view = discord.ui.View(timeout=None)
    group_id = jobs[0].group_id or jobs[0].id
    if not all(job.state.is_terminal for job in jobs):
        if any(job.state is not JobState.CANCELLING for job in jobs if not job.state.is_terminal):
            view.add_item(JobButton(Action.CANCEL, group_id))
        return view if view.children else None
    for row, action, letter in ((0, Action.UPSCALE, "U"), (1, Action.VARY, "V")):
        for number, job in enumerate(jobs, start=1):
            if job.state is JobState.SUCCEEDED:
                view.add_item(JobButton(action, job.id, label=f"{letter}{number}", row=row,
                                        used=custom_id(action, job.id) in used))
    view.add_item(JobButton(Action.RERUN, group_id, row=2))
    return view


def used_buttons(message: discord.Message) -> frozenset[str]:
    """The custom ids of the buttons ``message`` shows as used, as Discord holds them (so the
    marks survive a restart: the message is their record)."""
    return frozenset(item.custom_id for row in message.components if isinstance(row, discord.ActionRow)
                     for item in row.children
                     if isinstance(item, discord.Button) and item.style is USED_STYLE and item.custom_id)

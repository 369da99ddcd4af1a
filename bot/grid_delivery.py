"""Delivery of a grid: its candidates' changes become edits of one message, then one finished grid.

bot.delivery hands every change of a grouped job here. While any candidate waits or runs, the
group's message is edited (at most once per ``edit_interval_s``) with the 2x2 picture of the
newest previews. Once every candidate has ended, the finished grid goes out in a new message
that mentions the owner and carries the U/V/🔁 buttons (edits notify nobody), the progress
message is deleted, and every candidate is marked delivered; a grid whose candidates were all
cancelled only has its message edited. As for one job, the message is posted first and marked
after, with a nonce per group, so a crash posts it at most twice, never not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import discord

from bot.grid_posting import GridPoster
from db import Job, JobState, Store

log = logging.getLogger(__name__)


@dataclass
class GroupState:
    next_edit_at: float = 0.0
    shown_version: int = -1  # the newest change of the group's jobs the message shows
    message_id: int | None = None  # the message the cadence counts from


def group_nonce(group_id: int) -> str:
    """The same for every post of one group's finished grid, so Discord keeps only the first."""
    return f"vqg-{group_id}"


class GridDelivery:
    def __init__(self, store: Store, grids: GridPoster, *, edit_interval_s: float,
                 posted_at: Callable[[int], float]) -> None:
        self.store = store
        self.grids = grids
        self.edit_interval_s = edit_interval_s
        self.posted_at = posted_at
        self.states: dict[int, GroupState] = {}

    def next_edit_at(self, group_id: int) -> float:
        """When the group's message may be edited next (0: now)."""
        state = self.states.get(group_id)
        return state.next_edit_at if state is not None else 0.0

    async def attend(self, job: Job, now: float) -> bool:
        """Show ``job``'s change on its group's message; True when nothing is left to do for it,
        False to be attended again when the next edit is due."""
        assert job.group_id is not None
        jobs = await self.store.group(job.group_id)
        if not jobs:
            return True
        if all(member.state.is_terminal for member in jobs):
            done = await self.finish(jobs)
            if done:
                self.states.pop(job.group_id, None)
            return done
        state = self.states.setdefault(job.group_id, GroupState())
        message_id = jobs[0].message_id
        if message_id is None:
            return True  # still being posted; set_message brings the jobs back
        if state.message_id != message_id:
            state.message_id = message_id
            state.next_edit_at = max(state.next_edit_at, self.posted_at(message_id) + self.edit_interval_s)
        if max(member.version for member in jobs) <= state.shown_version:
            return True
        if now < state.next_edit_at:
            return False
        card = await self.grids.render(jobs)
        if not await self.grids.edit(jobs, message_id, card):
            log.info("group %s: message %s is gone; posting a new one", job.group_id, message_id)
            await self.grids.post(jobs)
        state.next_edit_at = now + self.edit_interval_s
        state.shown_version = max(member.version for member in await self.store.group(job.group_id))
        return True

    async def finish(self, jobs: Sequence[Job]) -> bool:
        """Every candidate ended: post the finished grid once, then mark the candidates delivered."""
        if all(job.delivered for job in jobs):
            return True
        group_id = jobs[0].id
        progress_message = jobs[0].message_id
        if all(job.state is JobState.CANCELLED for job in jobs):
            if progress_message is not None:
                await self.grids.edit(jobs, progress_message, await self.grids.render(jobs, picture=False))
        elif not any(job.result_message_id for job in jobs):
            posted = await self.grids.post(jobs, mention=True, nonce=group_nonce(group_id))
            for job in jobs:
                await self.store.set_message(job.id, posted.id, kind="result")
            if progress_message is not None and progress_message != posted.id:
                await self.delete(jobs[0], progress_message)
            log.info("group %s: finished grid posted as %s", group_id, posted.id)
        for job in jobs:
            await self.store.mark_delivered(job.id)
        return True

    async def delete(self, job: Job, message_id: int) -> None:
        try:
            await self.grids.cards.channel(job).get_partial_message(message_id).delete()
        except discord.HTTPException as exc:
            log.info("group %s: progress message %s not deleted (%s)", job.group_id, message_id, exc.status)

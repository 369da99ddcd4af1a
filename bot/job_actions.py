"""Rerun, continue and cancel: the same actions behind buttons, reactions and /cancel (a grid's
candidates and the upscale and vary buttons: bot.grid_actions).

Each action looks the job up in the database (by id from a button's custom id, or by message
id for a reaction), checks who may do it, asks the store, and answers with one sentence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import discord

from bot import admission
from bot.card_posting import CardPoster
from bot.config import BotConfig
from bot.controls import Action
from bot.errors import UserError
from bot.events import Wakeups
from bot.grid_actions import GridActions
from bot.grid_posting import GridPoster
from bot.options import new_seed
from bot.text import plain
from bot.user_pictures import Picture, save_picture
from db import Job, JobState, NotAllowed, Relation, Store
from jobspec import JobParams, ParamError, PromptError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who asked: their id, whether they administer the server, and where they asked
    (``message``: the message whose button they clicked, if they clicked one)."""

    user_id: int
    is_admin: bool
    guild_id: int
    channel_id: int
    message: discord.Message | None = None


@dataclass(frozen=True)
class Outcome:
    """The answer to the member, and the job the action changed or made (None: refused)."""

    text: str
    job: Job | None = None


class JobActions:
    def __init__(self, store: Store, config: BotConfig, cards: CardPoster, grids: GridPoster,
                 wakeups: Wakeups) -> None:
        self.store = store
        self.config = config
        self.cards = cards
        self.wakeups = wakeups
        self.grids = GridActions(store, config, cards, grids, wakeups)

    async def perform(self, action: Action, job_id: int, actor: Actor) -> Outcome:
        job = await self.store.get(job_id)
        if job is None or job.guild_id != actor.guild_id:  # another server's job is none of this one's
            return Outcome(f"Job #{job_id} no longer exists.")
        if job.group_id is not None or action in (Action.UPSCALE, Action.VARY):
            text, made = await self.grids.perform(action, job, actor.user_id, actor.is_admin, actor.channel_id,
                                                  message=actor.message)
            return Outcome(text, made)
        if action is Action.CANCEL:
            return await self.cancel(job, actor)
        return await self.derive(job, actor, Relation.RERUN if action is Action.RERUN else Relation.CONTINUE)

    async def cancel(self, job: Job, actor: Actor) -> Outcome:
        if job.group_id is not None:
            return await self.perform(Action.CANCEL, job.id, actor)
        if job.user_id != actor.user_id and not actor.is_admin:
            return Outcome(f"Only the job's owner or a server admin can cancel job #{job.id}.")
        if job.state.is_terminal:
            return Outcome(f"Job #{job.id} has already ended ({job.state}).")
        try:
            updated = await self.store.request_cancel(job.id, by_user=actor.user_id, is_admin=actor.is_admin)
        except NotAllowed as exc:
            return Outcome(plain(exc))
        log.info("job %s: cancel requested by %s", job.id, actor.user_id)
        self.wakeups.jobs_changed()
        self.wakeups.worker()
        verb = "Cancelled" if updated.state is JobState.CANCELLED else "Cancelling"
        return Outcome(f"{verb} job #{job.id}.", updated)

    async def derive(self, parent: Job, actor: Actor, relation: Relation) -> Outcome:
        """Queue a rerun (new seed) or a continuation (from the parent's picture) and post its card."""
        try:
            params = await self.derived_params(parent, relation)
            job = await admission.enqueue(self.store, admission.new_job(
                params, guild_id=parent.guild_id, channel_id=actor.channel_id, user_id=actor.user_id,
                parent_id=parent.id, relation=relation))
        except UserError as exc:
            return Outcome(str(exc))
        log.info("job %s: %s of job %s queued by %s", job.id, relation, parent.id, actor.user_id)
        try:
            await self.cards.post(job)
        except discord.HTTPException as exc:
            log.warning("job %s: card not posted in %s (%s %s)", job.id, job.channel_id, exc.status, exc.code)
        self.wakeups.worker()
        word = "Rerun" if relation is Relation.RERUN else "Continuation"
        return Outcome(f"{word} of job #{parent.id} queued as job #{job.id}.", job)

    async def derived_params(self, parent: Job, relation: Relation) -> JobParams:
        """The parent's parameters with a new seed (rerun), or starting from its picture (continue)."""
        try:
            params = JobParams.from_json(parent.params)
        except (ParamError, PromptError, TypeError):
            log.warning("job %s: stored params do not read as JobParams", parent.id, exc_info=True)
            raise UserError(f"Job #{parent.id} was made by another version of vqbot and can't be repeated.") from None
        if relation is Relation.RERUN:
            return params.with_changes(seed=new_seed())
        if parent.state is not JobState.SUCCEEDED:
            raise UserError(f"Job #{parent.id} has no finished picture to continue from.")
        png = await self.store.result(parent.id)
        if png is None:
            raise UserError(f"Job #{parent.id}'s picture is no longer stored, so it can't be continued.")
        picture = Picture(data=png, format="png", width=parent.width, height=parent.height)
        return params.with_changes(init_image=str(save_picture(picture, self.config.attachments_dir)), init_weight=0.0)

"""Rerun, continue and cancel: the same actions behind buttons and reactions.

Each action looks the job up in the database (by id from a button's custom id,
or by message id for a reaction), checks who may do it and the guild's
limits, and answers with one sentence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

from bot import cards, own_reactions
from bot.attachments import Picture, save_picture
from bot.options import new_seed
from bot.text import plain
from db.errors import InvalidInput, LimitExceeded, NotAllowed, NotFound
from db.jobs import Job, NewJob, check_new_job
from db.limits import check_policy
from db.states import JobState, Relation

if TYPE_CHECKING:
    from bot.client import VQBot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who asked: their id, whether they administer the guild, and where they asked."""

    user_id: int
    is_admin: bool
    guild_id: int
    channel_id: int


@dataclass(frozen=True)
class Outcome:
    text: str
    job: Job | None = None


def admin_permissions(perms: discord.Permissions) -> bool:
    """Whether these permissions make their holder an admin of vqbot in the guild."""
    return bool(perms.manage_guild or perms.administrator)


def is_admin(member: discord.abc.User | None, channel: Any) -> bool:
    if not isinstance(member, discord.Member):
        return False
    return admin_permissions(channel.permissions_for(member) if hasattr(channel, "permissions_for")
                             else member.guild_permissions)


class Actions:
    def __init__(self, bot: VQBot) -> None:
        self.bot = bot

    async def perform(self, action: str, job_id: int, actor: Actor) -> Outcome:
        store = self.bot.store
        try:
            job = await store.get(job_id)
        except NotFound:
            job = None
        if job is None or job.guild_id != actor.guild_id:  # another server's job is none of this one's
            return Outcome(f"Job #{job_id} no longer exists.")
        if action == "cancel":
            return await self.cancel(job, actor)
        if action == "rerun":
            return await self.derive(job, actor, Relation.RERUN)
        if action == "continue":
            return await self.derive(job, actor, Relation.CONTINUE)
        raise ValueError(f"unknown action {action!r}; valid: cancel, rerun, continue")

    async def cancel(self, job: Job, actor: Actor) -> Outcome:
        if job.user_id != actor.user_id and not actor.is_admin:
            return Outcome(f"Only the job's owner or a server admin can cancel job #{job.id}.")
        if job.state.is_terminal:
            return Outcome(f"Job #{job.id} has already ended ({job.state}).")
        try:
            updated = await self.bot.store.request_cancel(job.id, by_user=actor.user_id, is_admin=actor.is_admin)
        except NotAllowed as exc:
            return Outcome(plain(exc))
        log.info("job %s: cancel requested by %s", job.id, actor.user_id)
        self.bot.delivery.wake()
        self.bot.notify_worker()
        verb = "Cancelled" if updated.state is JobState.CANCELLED else "Cancelling"
        return Outcome(f"{verb} job #{job.id}.", updated)

    async def derive(self, parent: Job, actor: Actor, relation: Relation) -> Outcome:
        """Queue a rerun (new seed) or a continuation (from the parent's picture) and post its card."""
        params: dict[str, Any] = dict(parent.params)
        seed = parent.seed
        if relation is Relation.RERUN:
            seed = new_seed()
        else:
            if parent.state is not JobState.SUCCEEDED:
                return Outcome(f"Job #{parent.id} has no finished picture to continue from.")
            png = await self.bot.store.result(parent.id)
            if png is None:
                return Outcome(f"Job #{parent.id}'s picture is no longer stored, so it can't be continued.")
            picture = Picture(data=png, format="png", width=parent.width, height=parent.height)
            params["init_image"] = str(save_picture(picture, self.bot.config.attachments_dir))
            params["init_weight"] = 0.0
        params["seed"] = seed
        new = NewJob(
            guild_id=parent.guild_id, channel_id=actor.channel_id, user_id=actor.user_id,
            prompt=parent.prompt, params=params, seed=seed, parent_id=parent.id, relation=relation,
        )
        settings = await self.bot.guild_settings(parent.guild_id)
        try:
            check_policy(settings, check_new_job(new))
            job = await self.bot.store.enqueue(new)
        except LimitExceeded as exc:
            return Outcome(cards.refusal(exc))
        except InvalidInput as exc:
            return Outcome(plain(exc))
        log.info("job %s: %s of job %s queued by %s", job.id, relation, parent.id, actor.user_id)
        await self.post_card(job)
        self.bot.notify_worker()
        word = "Rerun" if relation is Relation.RERUN else "Continuation"
        return Outcome(f"{word} of job #{parent.id} queued as job #{job.id}.", job)

    async def post_card(self, job: Job) -> discord.Message | None:
        """Post a new job's card in its channel and remember the message."""
        settings = await self.bot.guild_settings(job.guild_id)
        ahead, eta = await self.bot.store.position(job.id)
        kwargs: dict[str, Any] = {"embed": cards.card_embed(job, spot=cards.QueueSpot(ahead, eta))}
        view = cards.card_view(job, buttons_enabled=settings.buttons_enabled)
        if view is not None:
            kwargs["view"] = view
        try:
            message = await self.bot.channel_for(job.channel_id).send(**kwargs)
        except discord.HTTPException as exc:
            log.warning("job %s: card not posted in %s (%s %s)", job.id, job.channel_id, exc.status, exc.code)
            return None
        await self.bot.store.set_message(job.id, message.id, kind="card")
        self.bot.delivery.card_posted(job.id)
        own_reactions.add_controls(self.bot, job, message.id, own_reactions.card_actions(job))
        return message

    # ---------------------------------------------------------------- entry points
    async def from_button(self, interaction: discord.Interaction, action: str, job_id: int) -> None:
        assert interaction.guild_id is not None and interaction.channel_id is not None
        settings = await self.bot.guild_settings(interaction.guild_id)
        if not settings.buttons_enabled:
            await interaction.response.send_message("Buttons are turned off in this server.", ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        actor = Actor(interaction.user.id, admin_permissions(interaction.permissions), interaction.guild_id,
                      interaction.channel_id)
        outcome = await self.perform(action, job_id, actor)
        await interaction.edit_original_response(content=outcome.text)

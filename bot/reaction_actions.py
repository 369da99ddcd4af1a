"""A member's 🔁 ➕ ❌ on a card or result runs that action (rerun, continue, cancel).

Raw events (no message cache, no Message Content intent): the job is found by the message id
in the database, so reactions work on messages from before a restart.
"""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot import mentions
from bot.controls import EMOJI_ACTIONS
from bot.job_actions import Actor, JobActions
from bot.permissions import is_admin
from db import Store

log = logging.getLogger(__name__)


class ReactionActions(commands.Cog):
    def __init__(self, client: discord.Client, store: Store, actions: JobActions) -> None:
        self.client = client
        self.store = store
        self.actions = actions

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        me = self.client.user
        if payload.guild_id is None or me is None or payload.user_id == me.id:
            return
        action = EMOJI_ACTIONS.get(str(payload.emoji))
        if action is None or (payload.member is not None and payload.member.bot):
            return
        job = await self.store.by_message(payload.message_id)
        if job is None or not (await self.store.settings(payload.guild_id)).reactions_enabled:
            return
        actor = Actor(payload.user_id, self._is_admin(payload), payload.guild_id, payload.channel_id)
        outcome = await self.actions.perform(action, job.id, actor)
        log.info("job %s: reaction %s by %s: %s", job.id, action, payload.user_id, outcome.text)
        # A refusal needs an answer; a new job's card (or a cancel's card edit) answers by itself.
        if outcome.job is None:
            await self._answer(payload, job.id, outcome.text)

    def _is_admin(self, payload: discord.RawReactionActionEvent) -> bool:
        """Whether the reactor administers the server, by their permissions in the channel."""
        member = payload.member
        if member is None:
            return False
        channel = self.client.get_channel(payload.channel_id)
        if isinstance(channel, discord.abc.GuildChannel | discord.Thread):
            return is_admin(channel.permissions_for(member))
        return is_admin(member.guild_permissions)

    async def _answer(self, payload: discord.RawReactionActionEvent, job_id: int, text: str) -> None:
        """Reply to the reacted message, naming the reactor without pinging them: only a job's
        owner is ever pinged, and the reactor is often not the owner."""
        try:
            await self.client.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id).send(
                f"<@{payload.user_id}> {text}",
                allowed_mentions=mentions.NOBODY,
                reference=discord.MessageReference(
                    message_id=payload.message_id, channel_id=payload.channel_id, fail_if_not_exists=False
                ),
                silent=True,
            )
        except discord.HTTPException as exc:
            log.info("job %s: could not answer the reaction (%s)", job_id, exc.status)

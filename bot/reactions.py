"""Reactions on cards and results: 🔁 rerun, ➕ continue, ❌ cancel.

Raw events (no message cache, no Message Content intent): the job is found by
the message id in the database, so reactions work on messages from before a
restart.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from bot import mentions
from bot.actions import Actor, is_admin
from bot.controls import EMOJI_ACTIONS

if TYPE_CHECKING:
    from bot.client import VQBot

log = logging.getLogger(__name__)


async def on_reaction(bot: VQBot, payload: discord.RawReactionActionEvent) -> None:
    if payload.guild_id is None or bot.user is None or payload.user_id == bot.user.id:
        return
    action = EMOJI_ACTIONS.get(str(payload.emoji))
    if action is None or (payload.member is not None and payload.member.bot):
        return
    job = await bot.store.by_message(payload.message_id)
    if job is None:
        return
    settings = await bot.guild_settings(payload.guild_id)
    if not settings.reactions_enabled:
        return
    channel = bot.get_channel(payload.channel_id)
    actor = Actor(payload.user_id, is_admin(payload.member, channel), payload.guild_id, payload.channel_id)
    outcome = await bot.actions.perform(action, job.id, actor)
    log.info("job %s: reaction %s by %s: %s", job.id, action, payload.user_id, outcome.text)
    # A refusal needs an answer; a new job's card (or a cancel's card edit) answers by itself.
    # The answer replies to the reacted message and names the reactor without pinging them:
    # only a job's owner is ever pinged, and the reactor is often not the owner.
    if outcome.job is None:
        try:
            await bot.channel_for(payload.channel_id).send(
                f"<@{payload.user_id}> {outcome.text}",
                allowed_mentions=mentions.NOBODY,
                reference=discord.MessageReference(
                    message_id=payload.message_id, channel_id=payload.channel_id, fail_if_not_exists=False
                ),
                silent=True,
            )
        except discord.HTTPException as exc:
            log.info("job %s: could not answer the reaction (%s)", job.id, exc.status)

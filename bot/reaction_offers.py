"""The reactions the bot puts on its own cards and results (🔁 ➕ ❌), so that members can just click them.

Best effort and in the background: a channel without Add Reactions, a deleted message or a rate
limit never delays or breaks a card or a result. The bot's own reactions come back as reaction
events; bot.reaction_actions ignores them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import discord
from discord.ext import commands

from bot.controls import CONTROLS, Action
from db import Job, Store

log = logging.getLogger(__name__)


class ReactionOffers(commands.Cog):
    def __init__(self, client: discord.Client, store: Store) -> None:
        self.client = client
        self.store = store
        self.tasks: set[asyncio.Task[None]] = set()

    async def cog_unload(self) -> None:
        for task in list(self.tasks):
            task.cancel()

    def offer(self, job: Job, message_id: int, actions: Sequence[Action], *, remove: Sequence[Action] = ()) -> None:
        """Add the bot's reactions for ``actions`` to a message of ``job`` (and take back ``remove``)."""
        if actions or remove:
            task = asyncio.get_running_loop().create_task(self._react(job, message_id, tuple(actions), tuple(remove)),
                                                          name=f"vqbot-react-{job.id}")
            self.tasks.add(task)  # keep a reference until it ends
            task.add_done_callback(self.tasks.discard)

    def _may_react(self, channel_id: int) -> bool:
        """False when the bot knows it lacks Add Reactions or Read Message History in the channel;
        True otherwise (an unknown channel is tried, and a refusal is only logged)."""
        channel = self.client.get_channel(channel_id)
        if not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
            return True
        me = channel.guild.me
        if me is None:
            return True
        perms = channel.permissions_for(me)
        return bool(perms.add_reactions and perms.read_message_history)

    async def _react(self, job: Job, message_id: int, actions: tuple[Action, ...], remove: tuple[Action, ...]) -> None:
        try:
            settings = await self.store.settings(job.guild_id)
            me = self.client.user
            if not settings.reactions_enabled or me is None or not self._may_react(job.channel_id):
                return
            message = self.client.get_partial_messageable(job.channel_id).get_partial_message(message_id)
            for action in remove:
                try:
                    await message.remove_reaction(CONTROLS[action].emoji, me)
                except discord.HTTPException as exc:  # never added, or the message is gone
                    log.debug("job %s: own %s not removed from %s (%s)", job.id, action, message_id, exc.status)
            for action in actions:
                await message.add_reaction(CONTROLS[action].emoji)
        except discord.HTTPException as exc:
            log.info("job %s: reactions on message %s not added (%s %s)", job.id, message_id, exc.status, exc.code)
        except Exception:
            log.exception("job %s: reactions on message %s failed", job.id, message_id)

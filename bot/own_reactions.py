"""The bot's own 🔁/➕/❌ on its cards and results, so that users can just click them.

Best effort and in the background: a channel without Add Reactions, a deleted
message or a rate limit never delays or breaks a card or a result. The bot's
own reactions come back as reaction events; ``bot.reactions`` ignores them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import discord

from bot.controls import ACTIONS
from db.jobs import Job
from db.states import JobState

if TYPE_CHECKING:
    from bot.client import VQBot

log = logging.getLogger(__name__)

PENDING_CARD = ("cancel",)
RESULT = ("rerun", "continue")
ENDED_CARD = ("rerun",)  # a failed or cancelled job has no result message to react on


def may_react(bot: VQBot, channel_id: int) -> bool:
    """False when the bot knows it lacks Add Reactions or Read Message History in the channel;
    True otherwise (an unknown channel is tried, and a refusal is only logged)."""
    channel = bot.get_channel(channel_id)
    guild = getattr(channel, "guild", None)
    if channel is None or guild is None or guild.me is None or not hasattr(channel, "permissions_for"):
        return True
    perms = channel.permissions_for(guild.me)
    return bool(perms.add_reactions and perms.read_message_history)


def spawn(bot: VQBot, coro: Coroutine[Any, Any, None], name: str) -> None:
    """Run ``coro`` beside the caller; keep a reference until it ends."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    bot.background.add(task)
    task.add_done_callback(bot.background.discard)


def add_controls(bot: VQBot, job: Job, message_id: int, actions: Sequence[str],
                 *, remove: Sequence[str] = ()) -> None:
    """Add the bot's reactions for ``actions`` to a message of ``job`` (and take back ``remove``)."""
    if actions or remove:
        spawn(bot, _react(bot, job, message_id, tuple(actions), tuple(remove)), f"vqbot-react-{job.id}")


def card_actions(job: Job) -> tuple[str, ...]:
    if job.state in (JobState.QUEUED, JobState.RUNNING):
        return PENDING_CARD
    if job.state in (JobState.FAILED, JobState.CANCELLED):
        return ENDED_CARD
    return ()


async def _react(bot: VQBot, job: Job, message_id: int, actions: tuple[str, ...], remove: tuple[str, ...]) -> None:
    try:
        settings = await bot.guild_settings(job.guild_id)
        if not settings.reactions_enabled or bot.user is None or not may_react(bot, job.channel_id):
            return
        message = bot.channel_for(job.channel_id).get_partial_message(message_id)
        for action in remove:
            try:
                await message.remove_reaction(ACTIONS[action][1], bot.user)
            except discord.HTTPException as exc:  # never added, or the message is gone
                log.debug("job %s: own %s not removed from %s (%s)", job.id, action, message_id, exc.status)
        for action in actions:
            await message.add_reaction(ACTIONS[action][1])
    except discord.HTTPException as exc:
        log.info("job %s: reactions on message %s not added (%s %s)", job.id, message_id, exc.status, exc.code)
    except Exception:
        log.exception("job %s: reactions on message %s failed", job.id, message_id)

"""The bot's features, each built with what it uses: the one list the client loads.

A feature is a cog (``commands.Cog``; ``commands.GroupCog`` for a command group such as
/config) whose constructor takes what it uses: the store, the bot's config, the other
features it calls, callbacks. Its slash commands, listeners and ``cog_load``/``cog_unload``
come with it. A new feature goes into :func:`build_features`; nothing else names it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import discord
from discord.ext import commands

from bot.card_posting import CardPoster
from bot.commands.blend import Blend
from bot.commands.describe import Describe
from bot.commands.imagine import Imagine
from bot.commands.queue import QueueCommands
from bot.commands.server_settings import ServerSettings
from bot.commands.status import StatusCommand
from bot.config import BotConfig
from bot.delivery import Delivery
from bot.events import Wakeups
from bot.grid_posting import GridPoster
from bot.job_actions import JobActions
from bot.job_buttons import JobButtons
from bot.reaction_actions import ReactionActions
from bot.reaction_offers import ReactionOffers
from db import Store


def build_features(client: discord.Client, store: Store, config: BotConfig, *, worker_status: Callable[[], Any],
                   wakeups: Wakeups) -> list[commands.Cog]:
    """Every feature of the bot, wired together. ``worker_status``: this process's worker's
    status, or None where workers run elsewhere."""
    offers = ReactionOffers(client, store)
    cards = CardPoster(client, store, offers)
    grids = GridPoster(store, cards)
    actions = JobActions(store, config, cards, grids, wakeups)
    imagine = Imagine(store, config, cards, grids, wakeups)
    return [
        offers,
        Delivery(client, store, config, cards, offers, grids),
        imagine,
        Blend(store, config, grids, wakeups),
        Describe(client, store, config, imagine, wakeups),
        QueueCommands(store, config, cards, actions),
        StatusCommand(store, worker_status),
        ServerSettings(store),
        JobButtons(client, store, actions),
        ReactionActions(client, store, actions),
    ]

"""The Discord client: what the bot is to Discord (intents, who it may ping, its command tree)
and when its features load. It names none of them: bot.features builds them.

A ``commands.Bot`` for its cogs (app commands, listeners, ``cog_load``/``cog_unload``, command
groups as ``GroupCog``). It has no prefix commands, so it needs no Message Content intent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import mentions
from bot.config import BotConfig
from bot.events import JOBS_CHANGED, Wakeups
from bot.features import build_features
from bot.tree import CommandTree
from db import Store

log = logging.getLogger(__name__)


def intents() -> discord.Intents:
    """Guilds (channels, roles for permission checks) and guild reactions; nothing privileged."""
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_reactions = True
    return wanted


class VQBot(commands.Bot):
    def __init__(
        self,
        store: Store,
        config: BotConfig,
        *,
        sync_commands: bool = False,
        sync_guild: int | None = None,
        worker_status: Callable[[], Any] | None = None,
        notify_worker: Callable[[], None] | None = None,
    ) -> None:
        """``worker_status`` and ``notify_worker``: this process's worker (``vqbot run``), if any."""
        # Nothing a message says pings anyone unless it passes mentions.owner(...) itself.
        super().__init__(command_prefix=commands.when_mentioned, help_command=None, tree_cls=CommandTree,
                         intents=intents(), allowed_mentions=mentions.NOBODY)
        self.store = store
        self.config = config
        self.sync_commands = sync_commands
        self.sync_guild = sync_guild
        self.synced: list[app_commands.AppCommand] = []
        wakeups = Wakeups(worker=notify_worker or (lambda: None), jobs_changed=self.jobs_changed)
        self.features = build_features(self, store, config, worker_status=worker_status or (lambda: None),
                                       wakeups=wakeups)

    async def setup_hook(self) -> None:
        for feature in self.features:
            await self.add_cog(feature)
        if self.sync_commands:
            self.synced = await self.sync_tree()

    async def sync_tree(self) -> list[app_commands.AppCommand]:
        """Register the commands with Discord (only when asked: `vqbot sync` or --sync)."""
        if self.sync_guild is not None:
            guild = discord.Object(id=self.sync_guild)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
        else:
            synced = await self.tree.sync()
        log.info("synced %d commands%s", len(synced), f" to guild {self.sync_guild}" if self.sync_guild else "")
        return synced

    def jobs_changed(self) -> None:
        """Jobs changed in the store (a worker's progress, a cancel): whatever shows jobs looks
        again soon (the ``jobs_changed`` event)."""
        self.dispatch(JOBS_CHANGED)

    async def on_ready(self) -> None:
        log.info("logged in as %s (%s) in %d guilds", self.user, self.user.id if self.user else "?", len(self.guilds))

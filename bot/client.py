"""The Discord client: intents, commands, persistent buttons, reactions and the delivery loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import discord
from discord import app_commands

from bot import mentions, reactions
from bot.actions import Actions
from bot.config import BotConfig
from bot.controls import TEMPLATE, UNKNOWN_BUTTON, JobButton
from bot.delivery import Delivery
from bot.text import is_text
from db import Store

log = logging.getLogger(__name__)


# The channels the bot posts in and edits its messages in.
MessageChannel = (discord.TextChannel | discord.VoiceChannel | discord.StageChannel | discord.Thread
                  | discord.DMChannel | discord.PartialMessageable)
MESSAGE_CHANNELS = (discord.TextChannel, discord.VoiceChannel, discord.StageChannel, discord.Thread,
                    discord.DMChannel)


NOT_TEXT = "Part of what you typed is not text I can read (a broken character); type it again without it."


def options_are_text(data: object) -> bool:
    """Whether every string option in an interaction's data is text (``bot.text.is_text``)."""
    if isinstance(data, dict):
        value = data.get("value")
        if isinstance(value, str) and not is_text(value):
            return False
        return all(options_are_text(option) for option in data.get("options") or [])
    return True


class CommandTree(app_commands.CommandTree["VQBot"]):
    async def interaction_check(self, interaction: discord.Interaction[VQBot]) -> bool:
        """Refuse, before any command runs, options that are no text: nothing downstream
        (the store, the prompt parser, Discord itself) can take them."""
        if options_are_text(interaction.data):
            return True
        log.info("interaction from %s with options that are not text", interaction.user.id)
        if interaction.type is discord.InteractionType.autocomplete:
            await interaction.response.autocomplete([])
        else:
            await interaction.response.send_message(NOT_TEXT, ephemeral=True)
        return False


def intents() -> discord.Intents:
    """Guilds (channels, roles for permission checks) and guild reactions; nothing privileged."""
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_reactions = True
    return wanted


class VQBot(discord.Client):
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
        # Nothing a message says pings anyone unless it passes mentions.owner(...) itself.
        super().__init__(intents=intents(), allowed_mentions=mentions.NOBODY)
        self.store = store
        self.config = config
        self.sync_commands = sync_commands
        self.sync_guild = sync_guild
        self.worker_status = worker_status or (lambda: None)
        self._notify_worker = notify_worker
        self.tree = CommandTree(self)
        self.tree.error(self.on_app_command_error)
        self.actions = Actions(self)
        self.delivery = Delivery(self)
        self.synced: list[app_commands.AppCommand] = []
        self.background: set[asyncio.Task[None]] = set()  # best-effort side work (own reactions)
        from bot.commands import register

        register(self.tree)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(JobButton)
        if self.sync_commands:
            self.synced = await self.sync_tree()
        self.delivery.start()

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

    async def close(self) -> None:
        await self.delivery.stop()
        for task in list(self.background):
            task.cancel()
        await super().close()

    # ---------------------------------------------------------------- helpers
    async def guild_settings(self, guild_id: int) -> Any:
        return await self.store.settings(guild_id)

    def channel_for(self, channel_id: int) -> MessageChannel:
        """The channel to post in: the cached one, or a partial one that needs no cache."""
        channel = self.get_channel(channel_id)
        if isinstance(channel, MESSAGE_CHANNELS):
            return channel
        return discord.PartialMessageable(state=self._connection, id=channel_id)

    def notify_worker(self) -> None:
        if self._notify_worker is not None:
            self._notify_worker()

    def timelapse_for(self, job_id: int) -> bytes | None:
        path = self.config.timelapse_dir / f"{job_id}.webp"
        return path.read_bytes() if path.is_file() else None

    # ---------------------------------------------------------------- events
    async def on_ready(self) -> None:
        log.info("logged in as %s (%s) in %d guilds", self.user, self.user.id if self.user else "?", len(self.guilds))

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Answer a component whose custom id no JobButton matches (a forged or outdated one):
        discord.py would leave it unanswered and the user would see "interaction failed"."""
        if interaction.type is not discord.InteractionType.component:
            return
        custom_id = interaction.data.get("custom_id") if interaction.data else None
        if not isinstance(custom_id, str) or TEMPLATE.fullmatch(custom_id) is None:
            log.info("unknown component %r from %s", custom_id, interaction.user.id)
            await interaction.response.send_message(UNKNOWN_BUTTON, ephemeral=True)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await reactions.on_reaction(self, payload)

    async def on_app_command_error(self, interaction: discord.Interaction[VQBot], error: app_commands.AppCommandError) -> None:
        if isinstance(error, app_commands.CheckFailure):
            text = "You need the Manage Server permission for this."
        else:
            log.error("command %s failed", interaction.command.name if interaction.command else "?", exc_info=error)
            text = "Something went wrong on my side; try again in a minute."
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException:
            pass

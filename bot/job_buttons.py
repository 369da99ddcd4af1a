"""Clicks on the buttons of cards and results, including buttons from before a restart."""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.controls import UNKNOWN_BUTTON, Action, JobButton, is_job_button
from bot.job_actions import Actor, JobActions
from bot.permissions import is_admin
from db import Store

log = logging.getLogger(__name__)


class JobButtons(commands.Cog):
    def __init__(self, client: discord.Client, store: Store, actions: JobActions) -> None:
        self.client = client
        self.store = store
        self.actions = actions

    async def cog_load(self) -> None:
        self.client.add_dynamic_items(JobButton)

    async def cog_unload(self) -> None:
        self.client.remove_dynamic_items(JobButton)

    @commands.Cog.listener()
    async def on_job_button(self, interaction: discord.Interaction, action: Action, job_id: int) -> None:
        """A JobButton was clicked (bot.controls)."""
        assert interaction.guild_id is not None and interaction.channel_id is not None
        settings = await self.store.settings(interaction.guild_id)
        if not settings.buttons_enabled:
            await interaction.response.send_message("Buttons are turned off in this server.", ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        actor = Actor(interaction.user.id, is_admin(interaction.permissions), interaction.guild_id,
                      interaction.channel_id, interaction.message)
        outcome = await self.actions.perform(action, job_id, actor)
        await interaction.edit_original_response(content=outcome.text)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Answer a component whose custom id no JobButton matches (a forged or outdated one):
        discord.py would leave it unanswered and the user would see "interaction failed"."""
        if interaction.type is not discord.InteractionType.component:
            return
        custom_id = interaction.data.get("custom_id") if interaction.data else None
        if not is_job_button(custom_id):
            log.info("unknown component %r from %s", custom_id, interaction.user.id)
            await interaction.response.send_message(UNKNOWN_BUTTON, ephemeral=True)

"""The command tree: what every slash command passes through before it runs, and how its errors end."""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from bot.text import is_text

log = logging.getLogger(__name__)

NOT_TEXT = "Part of what you typed is not text I can read (a broken character); type it again without it."
NOT_ADMIN = "You need the Manage Server permission for this."
OUR_FAULT = "Something went wrong on my side; try again in a minute."


def options_are_text(data: object) -> bool:
    """Whether every string option in an interaction's data is text (``bot.text.is_text``)."""
    if isinstance(data, dict):
        value = data.get("value")
        if isinstance(value, str) and not is_text(value):
            return False
        return all(options_are_text(option) for option in data.get("options") or [])
    return True


class CommandTree(app_commands.CommandTree[discord.Client]):
    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
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

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError, /) -> None:
        """A failed check gets its sentence; anything else is logged and gets an apology."""
        if isinstance(error, app_commands.CheckFailure):
            text = NOT_ADMIN
        else:
            log.error("command %s failed", interaction.command.name if interaction.command else "?", exc_info=error)
            text = OUR_FAULT
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException:
            pass

"""The slash commands."""

from __future__ import annotations

from discord import app_commands


def register(tree: app_commands.CommandTree) -> None:
    from bot.commands import config, imagine, queue

    tree.add_command(imagine.imagine)
    for command in queue.COMMANDS:
        tree.add_command(command)
    tree.add_command(config.ConfigGroup())

"""Who may do what: the server's admins for vqbot, and what the bot itself needs in a channel."""

from __future__ import annotations

import discord

# What the bot needs in a channel to post cards and pictures there.
NEEDED = discord.Permissions(view_channel=True, send_messages=True, embed_links=True, attach_files=True,
                             read_message_history=True)
PERMISSION_NAMES = {"view_channel": "View Channel", "send_messages": "Send Messages", "embed_links": "Embed Links",
                    "attach_files": "Attach Files", "read_message_history": "Read Message History"}


def is_admin(permissions: discord.Permissions) -> bool:
    """Whether these permissions make their holder an admin of vqbot in the server: Manage Server
    (or Administrator, which includes it). Slash commands carry them (``interaction.permissions``);
    for a reaction they are the member's in the channel."""
    return bool(permissions.manage_guild or permissions.administrator)


def missing_permissions(have: discord.Permissions) -> list[str]:
    """The names of what the bot needs and lacks, as Discord's settings spell them."""
    return [PERMISSION_NAMES[name] for name, value in NEEDED if value and not getattr(have, name)]

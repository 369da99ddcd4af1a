"""Who a message may ping: a job's owner, or nobody.

The client sends with :data:`NOBODY` unless a message passes :func:`owner`, so user text that
slips a mention into content (``<@id>``, ``<@&role>``, ``@everyone``, ``@here``) pings no one;
bot.text makes such text inert besides. Never ``users=True``: that pings whoever is named.
"""

from __future__ import annotations

import discord

NOBODY = discord.AllowedMentions.none()


def owner(user_id: int) -> discord.AllowedMentions:
    """Ping exactly this user (the job's owner) if the content mentions them; nobody else."""
    return discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(id=user_id)],
                                   replied_user=False)

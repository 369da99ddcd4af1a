"""Buttons on job cards and results that survive restarts.

The custom id carries the action and the job id (``vq:<action>:<job_id>``, db.custom_ids);
after a restart the bot rebuilds the button from it and looks the job up in
the database.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, cast

import discord

from db.custom_ids import custom_id

if TYPE_CHECKING:
    from bot.client import VQBot

log = logging.getLogger(__name__)

ACTIONS = {
    "rerun": ("New seed", "🔁", discord.ButtonStyle.secondary),
    "continue": ("More steps", "➕", discord.ButtonStyle.secondary),
    "cancel": ("Cancel", "❌", discord.ButtonStyle.danger),
}
EMOJI_ACTIONS = {emoji: action for action, (_, emoji, _) in ACTIONS.items()}


TEMPLATE = re.compile(r"vq:(?P<action>rerun|continue|cancel):(?P<job>[1-9][0-9]{0,18})")
UNKNOWN_BUTTON = "This button is not one I know (it may be from an older version of vqbot); use /show with the job number."


class JobButton(discord.ui.DynamicItem[discord.ui.Button], template=TEMPLATE):
    def __init__(self, action: str, job_id: int) -> None:
        label, emoji, style = ACTIONS[action]
        super().__init__(discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=custom_id(action, job_id)))
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str],
                             /) -> JobButton:
        return cls(match["action"], int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = cast("VQBot", interaction.client)  # the only client this item is added to
        await bot.actions.from_button(interaction, self.action, self.job_id)

"""The actions members take on a job (🔁 rerun, ➕ continue, ❌ cancel; on a grid's candidate also
upscale and vary) and the buttons that carry them.

A button's custom id names the action and the job (``vq:<action>:<job id>``), so a button from
before a restart still works: :class:`JobButton` is rebuilt from the custom id alone, and a
click becomes the client event ``job_button`` (bot.events) that bot.job_buttons answers. The
same actions come as reactions (bot.reaction_actions), by their emoji.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import discord

from bot.events import JOB_BUTTON


class Action(StrEnum):
    RERUN = "rerun"
    CONTINUE = "continue"
    CANCEL = "cancel"
    UPSCALE = "upscale"
    VARY = "vary"


@dataclass(frozen=True)
class Control:
    """How an action shows: on a button (label, style) and as a reaction (emoji)."""

    label: str
    emoji: str
    style: discord.ButtonStyle


CONTROLS = {
    Action.RERUN: Control("New seed", "🔁", discord.ButtonStyle.secondary),
    Action.CONTINUE: Control("More steps", "➕", discord.ButtonStyle.secondary),
    Action.CANCEL: Control("Cancel", "❌", discord.ButtonStyle.danger),
    Action.UPSCALE: Control("Upscale", "⬆️", discord.ButtonStyle.secondary),
    Action.VARY: Control("Vary", "🔀", discord.ButtonStyle.secondary),
}
USED_STYLE = discord.ButtonStyle.success
"""A grid's U or V button that was used shows green (as Midjourney's do); it still works."""
REACTION_ACTIONS = (Action.RERUN, Action.CONTINUE, Action.CANCEL)
"""The actions members may also take by reacting (a grid's candidates need a button each)."""
EMOJI_ACTIONS = {CONTROLS[action].emoji: action for action in REACTION_ACTIONS}

# Job ids are positive; 19 digits cover every id the store hands out (up to 2**63 - 1).
TEMPLATE = re.compile(rf"vq:(?P<action>{'|'.join(Action)}):(?P<job>[1-9][0-9]{{0,18}})")
UNKNOWN_BUTTON = "This button is not one I know (it may be from an older version of vqbot); use /show with the job number."


def custom_id(action: Action, job_id: int) -> str:
    """The custom id of ``action``'s button for a job: ``custom_id(Action.CANCEL, 42) == "vq:cancel:42"``."""
    value = f"vq:{action}:{job_id}"
    if TEMPLATE.fullmatch(value) is None:
        raise ValueError(f"job_id must be a positive id of at most 19 digits, got {job_id!r}")
    return value


# A /describe answer's buttons: start /imagine with the answer's n-th phrase (bot.commands.describe).
IMAGINE_WITH = re.compile(r"vq:imagine-with:(?P<job>[1-9][0-9]{0,18}):(?P<match>[1-9][0-9]?)")


def imagine_with_id(job_id: int, match: int) -> str:
    """The custom id of the button that starts /imagine with match ``match`` (from 1) of describe job ``job_id``."""
    value = f"vq:imagine-with:{job_id}:{match}"
    if IMAGINE_WITH.fullmatch(value) is None:
        raise ValueError(f"job_id must be a positive id and match 1 to 99, got {job_id!r}, {match!r}")
    return value


def is_job_button(value: object) -> bool:
    """Whether ``value`` is a custom id that :class:`JobButton` (or a describe answer's button) answers."""
    return isinstance(value, str) and (TEMPLATE.fullmatch(value) is not None
                                       or IMAGINE_WITH.fullmatch(value) is not None)


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
    def __init__(self, action: Action, job_id: int, *, label: str | None = None, row: int | None = None,
                 used: bool = False) -> None:
        """``label`` (with no emoji) in place of the action's own, e.g. "U2" for a grid's second
        candidate; ``row`` 0 to 4, or None to let Discord fill the rows; ``used``: shown in
        :data:`USED_STYLE` (the custom id, and so what a click does, is the same)."""
        control = CONTROLS[action]
        emoji = None if label is not None else control.emoji
        style = USED_STYLE if used else control.style
        super().__init__(discord.ui.Button(label=label or control.label, emoji=emoji, style=style,
                                           custom_id=custom_id(action, job_id)), row=row)
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str],
                             /) -> JobButton:
        return cls(Action(match["action"]), int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        interaction.client.dispatch(JOB_BUTTON, interaction, self.action, self.job_id)

"""/describe's answer as Discord shows it: the closest phrases, their similarity, a button for each.

A pure function of the job and its stored description (jobspec.describe.Description), like
bot.cards' renderers; bot.delivery posts it when the job ends. Each button's custom id names the
describe job and the match (``vq:imagine-with:<job id>:<n>``, bot.controls), so a button from
before a restart still works: :class:`ImagineWithButton` is rebuilt from the custom id alone, and
a click becomes the client event ``imagine_with`` that bot.commands.describe answers.
"""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.cards import JobMessage
from bot.controls import IMAGINE_WITH, imagine_with_id
from bot.text import label, plain
from db import Job
from jobspec import ParamError
from jobspec.describe import Description, Match

IMAGINE_WITH_EVENT = "imagine_with"
BUTTON_LABEL_MAX = 80


def match_line(n: int, match: Match) -> str:
    style = f" · style {plain(match.style, 40)}" if match.style else ""
    return f"**{n}.** {plain(match.text, 200)} — {match.similarity:.3f}{style}"


def render_description(job: Job, description: Description, *, buttons: bool = True) -> JobMessage:
    """The message that answers a describe job's owner (send it with ``mentions.owner(job.user_id)``)."""
    lines = [match_line(n, m) for n, m in enumerate(description.matches, start=1)]
    embed = discord.Embed(title="Closest in CLIP space", description="\n".join(lines) or "No phrase matched.",
                          colour=discord.Colour.green())
    embed.set_footer(text=f"Job #{job.id} · cosine similarity of the picture and each phrase")
    view = None
    if buttons and description.matches:
        view = discord.ui.View(timeout=None)
        for n, match in enumerate(description.matches[:25], start=1):
            view.add_item(ImagineWithButton(job.id, n, match.text))
    hint = " A button starts /imagine in that style." if view is not None else ""
    content = f"<@{job.user_id}> your picture is closest to these phrases.{hint}"
    return JobMessage(content=content, embed=embed, view=view)


def render_stored_description(job: Job, stored: bytes, *, buttons: bool = True) -> JobMessage:
    """The answer from the job's stored result, or a sentence when it does not read as one."""
    try:
        description = Description.from_bytes(stored)
    except ParamError:
        return JobMessage(content=f"<@{job.user_id}> job #{job.id} ended without an answer I can read; "
                                  "use /describe again.")
    return render_description(job, description, buttons=buttons)


class ImagineWithButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=IMAGINE_WITH):
    def __init__(self, job_id: int, match: int, text: str | None = None) -> None:
        shown = f"{match}. {label(text, BUTTON_LABEL_MAX - 4)}" if text else f"Use {match}"
        super().__init__(discord.ui.Button(label=shown, emoji="🎨", style=discord.ButtonStyle.secondary,
                                           custom_id=imagine_with_id(job_id, match)))
        self.job_id, self.match = job_id, match

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str],
                             /) -> ImagineWithButton:
        return cls(int(match["job"]), int(match["match"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        interaction.client.dispatch(IMAGINE_WITH_EVENT, interaction, self.job_id, self.match)

"""/blend: two to four uploaded pictures (and optional text) become image prompts of a new grid.

The pictures go through the same checks as /imagine's uploads (bot.user_pictures: Discord's CDN
only, the announced size, then the bytes must decode as a picture under the pixel cap). Each is
an image prompt with its weight (1 unless ``weights`` says otherwise); the four candidates run
at the server's grid settings and get the same buttons as /imagine's grid.
"""

from __future__ import annotations

import logging
import math

import discord
from discord import app_commands
from discord.ext import commands

from bot import admission
from bot.commands.imagine import queue_and_defer
from bot.config import BotConfig
from bot.errors import OptionError, UserError
from bot.events import Wakeups
from bot.grid_posting import GridPoster
from bot.grids import grid_params
from bot.options import ImagineOptions, build_params
from bot.permissions import missing_permissions
from bot.text import plain
from bot.user_pictures import PictureCaps, check_announced, fetch_picture, save_picture
from db import Job, NewJob, Relation, Store
from jobspec import JobParams, Prompt

log = logging.getLogger(__name__)

MIN_PICTURES, MAX_PICTURES = 2, 4
MAX_WEIGHT = 10.0
PLACEHOLDER = "blend"  # stands in for the text while the options are checked; dropped after


def parse_weights(text: str | None, count: int) -> tuple[float, ...]:
    """One weight per picture from "1, 0.5" (missing ones are 1); OptionError otherwise."""
    if text is None or not text.strip():
        return (1.0,) * count
    parts = [part.strip() for part in text.split(",")]
    if len(parts) > count:
        raise OptionError(f"Give at most one weight per picture ({count}), separated by commas.")
    weights = []
    for part in parts:
        try:
            weight = float(part)
        except ValueError:
            raise OptionError(f"The weight “{plain(part, 20)}” is not a number; write e.g. 1, 0.5.") from None
        if not math.isfinite(weight) or not 0 < abs(weight) <= MAX_WEIGHT:
            raise OptionError(f"Each weight must be between -{MAX_WEIGHT:g} and {MAX_WEIGHT:g} and not 0.")
        weights.append(weight)
    return (*weights, *(1.0,) * (count - len(weights)))


def blend_title(count: int, text: str | None) -> str:
    return f"Blend of {count} pictures" + (f" | {text.strip()}" if text and text.strip() else "")


class Blend(commands.Cog):
    def __init__(self, store: Store, config: BotConfig, grids: GridPoster, wakeups: Wakeups) -> None:
        self.store = store
        self.config = config
        self.grids = grids
        self.wakeups = wakeups
        self.caps = PictureCaps(hosts=config.attachment_hosts, max_bytes=config.max_attachment_bytes,
                                max_pixels=config.max_attachment_pixels)

    @app_commands.command(name="blend", description="Blend two to four pictures into four new candidates")
    @app_commands.guild_only()
    @app_commands.describe(
        picture1="A picture to blend", picture2="Another picture to blend", picture3="A third picture (optional)",
        picture4="A fourth picture (optional)", prompt="Text to aim for as well (optional)",
        weights="How much each picture counts, in order, e.g. 1, 0.5 (default 1 each)",
    )
    async def blend(
        self,
        interaction: discord.Interaction,
        picture1: discord.Attachment,
        picture2: discord.Attachment,
        picture3: discord.Attachment | None = None,
        picture4: discord.Attachment | None = None,
        prompt: app_commands.Range[str, 1, 1000] | None = None,
        weights: app_commands.Range[str, 1, 100] | None = None,
    ) -> None:
        pictures = [p for p in (picture1, picture2, picture3, picture4) if p is not None]
        try:
            params, weight_of = await self.check(interaction, pictures, prompt, weights)
        except UserError as exc:
            await interaction.response.send_message(str(exc), ephemeral=True)
            return
        jobs = await queue_and_defer(interaction, self.queue(interaction, params, pictures, weight_of,
                                                             blend_title(len(pictures), prompt)))
        if jobs is None:
            return
        log.info("group %s: blend of %d pictures queued by %s", jobs[0].id, len(pictures), interaction.user.id)
        self.wakeups.worker()
        await self.grids.answer(interaction, jobs)
        self.wakeups.jobs_changed()

    async def check(self, interaction: discord.Interaction, pictures: list[discord.Attachment], text: str | None,
                    weights: str | None) -> tuple[JobParams, tuple[float, ...]]:
        """Everything that needs no download; UserError otherwise."""
        assert interaction.guild_id is not None
        missing = missing_permissions(interaction.app_permissions)
        if missing:
            raise UserError(f"I need {', '.join(missing)} in this channel to post pictures; ask an admin to grant them.")
        if not MIN_PICTURES <= len(pictures) <= MAX_PICTURES:
            raise UserError(f"A blend takes {MIN_PICTURES} to {MAX_PICTURES} pictures; you gave {len(pictures)}.")
        for number, attachment in enumerate(pictures, start=1):
            check_announced(attachment, self.caps, what=f"picture {number}")
        weight_of = parse_weights(weights, len(pictures))
        settings = await self.store.settings(interaction.guild_id)
        params = build_params(ImagineOptions(prompt=text or PLACEHOLDER), settings, self.config)
        if text is None:
            params = params.with_changes(prompts=())
        new = self.new_jobs(interaction, grid_params(params, settings), blend_title(len(pictures), text))[0]
        await admission.precheck(self.store, new)  # refuse now rather than after the downloads
        return params, weight_of

    async def queue(self, interaction: discord.Interaction, params: JobParams, pictures: list[discord.Attachment],
                    weights: tuple[float, ...], title: str) -> list[Job]:
        """Fetch, check and keep the pictures, then queue the grid with them as image prompts."""
        image_prompts = []
        for number, (attachment, weight) in enumerate(zip(pictures, weights, strict=True), start=1):
            picture = await fetch_picture(attachment, self.caps, what=f"picture {number}")
            image_prompts.append(Prompt(text=str(save_picture(picture, self.config.attachments_dir)), weight=weight))
        params = params.with_changes(image_prompts=tuple(image_prompts))
        assert interaction.guild_id is not None
        settings = await self.store.settings(interaction.guild_id)
        return await admission.enqueue_group(self.store, self.new_jobs(interaction, grid_params(params, settings), title))

    @staticmethod
    def new_jobs(interaction: discord.Interaction, candidates: list[JobParams], title: str) -> list[NewJob]:
        assert interaction.guild_id is not None and interaction.channel_id is not None
        return [admission.new_job(p, guild_id=interaction.guild_id, channel_id=interaction.channel_id,
                                  user_id=interaction.user.id, relation=Relation.BLEND, prompt=title)
                for p in candidates]

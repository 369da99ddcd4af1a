"""/imagine: check everything cheap, defer, fetch the pictures, queue, answer with the job's card.

Where the server's ``grid_enabled`` says so (the default), the prompt becomes four candidates at
the server's grid size and steps (bot.grids), queued as one group and answered with one grid.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import admission
from bot.card_posting import CardPoster
from bot.cards import ignored_by_clip, ignored_text, prompt_texts
from bot.config import BotConfig
from bot.errors import UserError
from bot.events import Wakeups
from bot.grid_posting import GridPoster
from bot.grids import grid_params
from bot.options import ASPECTS, MAX_SEED, ImagineOptions, build_params
from bot.permissions import missing_permissions
from bot.text import label, plain
from bot.user_pictures import PictureCaps, check_announced, fetch_picture, save_picture
from db import Job, NewJob, Store
from jobspec import LIMITS, JobParams, Prompt

log = logging.getLogger(__name__)

QUICK_ANSWER_S = 2.0  # of the 3 s Discord gives for the first answer
NOTE_MAX = 1500  # characters of the ignored prompt ends in the note to the user


@dataclass(frozen=True)
class Uploads:
    """The pictures given with the command."""

    init_image: discord.Attachment | None = None
    image_prompt: discord.Attachment | None = None

    def named(self) -> list[tuple[str, discord.Attachment]]:
        found = (("init image", self.init_image), ("image prompt", self.image_prompt))
        return [(what, attachment) for what, attachment in found if attachment is not None]


class Imagine(commands.Cog):
    def __init__(self, store: Store, config: BotConfig, cards: CardPoster, grids: GridPoster,
                 wakeups: Wakeups) -> None:
        self.store = store
        self.config = config
        self.cards = cards
        self.grids = grids
        self.wakeups = wakeups
        self.caps = PictureCaps(hosts=config.attachment_hosts, max_bytes=config.max_attachment_bytes,
                                max_pixels=config.max_attachment_pixels)

    @app_commands.command(name="imagine", description="Make a picture from a prompt with VQGAN+CLIP")
    @app_commands.guild_only()
    @app_commands.describe(
        prompt="What to draw; separate prompts with |, weigh them with :0.5 or push away with :-1",
        steps="How many optimisation steps (more is slower and more detailed)",
        size="WIDTHxHEIGHT in pixels, multiples of 16, e.g. 512x384",
        aspect="Aspect ratio instead of an exact size",
        seed="Seed for a repeatable picture",
        init_image="Start from this picture",
        image_prompt="Also aim for what this picture shows",
        style="A style preset of this server",
        cutouts="Cutouts per step (more is slower and steadier)",
        model="VQGAN model",
        timelapse="Also send an animation of the picture forming",
    )
    @app_commands.choices(aspect=[app_commands.Choice(name=a, value=a) for a in ASPECTS])
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 1000],
        steps: app_commands.Range[int, 1, int(LIMITS["steps"].high)] | None = None,
        size: app_commands.Range[str, 2, 11] | None = None,
        aspect: str | None = None,
        seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
        init_image: discord.Attachment | None = None,
        image_prompt: discord.Attachment | None = None,
        style: str | None = None,
        cutouts: app_commands.Range[int, 1, int(LIMITS["cutn"].high)] | None = None,
        model: str | None = None,
        timelapse: bool = False,
    ) -> None:
        options = ImagineOptions(prompt=prompt, steps=steps, size=size, aspect=aspect, seed=seed, cutouts=cutouts,
                                 model=model, style=style, timelapse=timelapse)
        await self.start(interaction, options, Uploads(init_image, image_prompt))

    async def start(self, interaction: discord.Interaction, options: ImagineOptions, uploads: Uploads) -> None:
        """What /imagine does with its options (``style`` still the preset's name): check, queue, answer
        with the card. Also what other features' buttons run to start /imagine (bot.commands.describe)."""
        try:
            params = await self.check(interaction, options, uploads)
        except UserError as exc:
            await interaction.response.send_message(str(exc), ephemeral=True)
            return
        jobs = await self.queue_and_defer(interaction, params, uploads)
        if jobs is None:
            return
        job = jobs[0]
        log.info("job %s: queued by %s in guild %s (%d candidates): %r", job.id, job.user_id, job.guild_id,
                 len(jobs), job.prompt)
        self.wakeups.worker()
        answered = await (self.grids.answer(interaction, jobs) if job.group_id is not None
                          else self.cards.answer(interaction, job))
        if answered:  # else the card alone says what CLIP ignores
            await self.tell_what_clip_ignores(interaction, job)
        self.wakeups.jobs_changed()

    @imagine.autocomplete("style")
    async def style_autocomplete(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None:
            return []
        styles = await self.store.styles(interaction.guild_id)
        typed = current.casefold()
        found = [(n, t) for n, t in sorted(styles.items()) if typed in n.casefold() or typed in t.casefold()]
        return [app_commands.Choice(name=label(f"{n}: {t}"), value=n) for n, t in found[:25]]

    @imagine.autocomplete("model")
    async def model_autocomplete(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        typed = current.casefold()
        return [app_commands.Choice(name=label(m), value=m) for m in self.config.models if typed in m.casefold()][:25]

    async def check(self, interaction: discord.Interaction, options: ImagineOptions, uploads: Uploads) -> JobParams:
        """Everything that needs no download: permissions, options, styles, the uploads' metadata
        and, when there are uploads to fetch, the store's rules. UserError otherwise."""
        assert interaction.guild_id is not None
        missing = missing_permissions(interaction.app_permissions)
        if missing:
            raise UserError(f"I need {', '.join(missing)} in this channel to post pictures; ask an admin to grant them.")
        settings = await self.store.settings(interaction.guild_id)
        if options.style:
            styles = await self.store.styles(interaction.guild_id)
            text = styles.get(options.style.strip().casefold())
            if text is None:
                known = plain(", ".join(sorted(styles)[:10])) or "none yet"
                raise UserError(f"There is no style called “{plain(options.style, 100)}” here; pick one of: {known}.")
            options = dataclasses.replace(options, style=text)
        for what, attachment in uploads.named():
            check_announced(attachment, self.caps, what=what)
        params = build_params(options, settings, self.config)
        if uploads.named():  # refuse now rather than after the downloads
            await admission.precheck(self.store, self.new_job(interaction, params))
        return params

    async def queue_and_defer(self, interaction: discord.Interaction, params: JobParams,
                              uploads: Uploads) -> list[Job] | None:
        """Fetch the uploads and queue the job (or the grid's four), deferring the answer if that
        takes a while; None when it was refused (the member was told why, privately)."""
        return await queue_and_defer(interaction, self.queue(interaction, params, uploads))

    async def queue(self, interaction: discord.Interaction, params: JobParams, uploads: Uploads) -> list[Job]:
        """Fetch, check and keep the uploads, then queue the job (or a grid of four) with their
        paths; UserError otherwise."""
        folder = self.config.attachments_dir
        if uploads.init_image is not None:
            picture = await fetch_picture(uploads.init_image, self.caps, what="init image")
            params = params.with_changes(init_image=str(save_picture(picture, folder)))
        if uploads.image_prompt is not None:
            picture = await fetch_picture(uploads.image_prompt, self.caps, what="image prompt")
            params = params.with_changes(image_prompts=(Prompt(text=str(save_picture(picture, folder))),))
        assert interaction.guild_id is not None
        settings = await self.store.settings(interaction.guild_id)
        if settings.grid_enabled:
            news = [self.new_job(interaction, candidate) for candidate in grid_params(params, settings)]
            return await admission.enqueue_group(self.store, news)
        return [await admission.enqueue(self.store, self.new_job(interaction, params))]

    @staticmethod
    def new_job(interaction: discord.Interaction, params: JobParams) -> NewJob:
        assert interaction.guild_id is not None and interaction.channel_id is not None
        return admission.new_job(params, guild_id=interaction.guild_id, channel_id=interaction.channel_id,
                                 user_id=interaction.user.id)

    async def tell_what_clip_ignores(self, interaction: discord.Interaction, job: Job) -> None:
        """CLIP reads 77 tokens of each prompt: say privately which words past them it will ignore."""
        ignored = ignored_by_clip(prompt_texts(job.params))
        if not ignored:
            return
        text = (f"Job #{job.id} is queued, but CLIP reads only 77 tokens (about 50 words) of each prompt, so it "
                f"will ignore {ignored_text(ignored, total=NOTE_MAX)}. To have all of it read, shorten the prompt "
                "or split it into more prompts with “|”.")
        try:
            await interaction.followup.send(text, ephemeral=True)
        except discord.HTTPException as exc:
            log.info("job %s: note about ignored words not sent (%s %s)", job.id, exc.status, exc.code)


async def queue_and_defer(interaction: discord.Interaction, queue: Coroutine[Any, Any, list[Job]]) -> list[Job] | None:
    """Run ``queue`` (downloads, then the store), deferring the answer if that takes a while;
    its jobs, or None when it was refused (the member was told why, privately)."""
    # Downloads and the queue's own limits usually take well under a second: wait for them a
    # little so that a refusal can still be a private answer; past that, defer and go on.
    prepare = asyncio.get_running_loop().create_task(queue)
    done, _ = await asyncio.wait([prepare], timeout=QUICK_ANSWER_S)
    if done and isinstance(prepare.exception(), UserError):
        await interaction.response.send_message(str(prepare.exception()), ephemeral=True)
        return None
    await interaction.response.defer(thinking=True)
    try:
        return await prepare
    except UserError as exc:
        await refuse_late(interaction, str(exc))
        return None


async def refuse_late(interaction: discord.Interaction, text: str) -> None:
    """A refusal after the public defer (a slow download): answer privately, leave nothing public.

    Discord turns the first follow-up after a "thinking" defer into the public original
    itself (whatever its ephemeral flag), and into an error once the original is deleted. So:
    end the thinking with a neutral line, send the refusal as a private follow-up, then delete
    the neutral line. Each step may fail on its own; the user always gets one of the two.
    """
    try:
        await interaction.edit_original_response(content="Not queued; only you can see why.")
    except discord.HTTPException as exc:
        log.info("late refusal: placeholder not edited (%s %s)", exc.status, exc.code)
    try:
        await interaction.followup.send(text, ephemeral=True)
    except discord.HTTPException as exc:
        log.info("late refusal: private answer not sent (%s %s): %s", exc.status, exc.code, text)
        with contextlib.suppress(discord.HTTPException):
            await interaction.edit_original_response(content=text)  # public, but an answer
        return
    try:
        await interaction.delete_original_response()
    except discord.HTTPException as exc:
        log.info("late refusal: placeholder not deleted (%s %s)", exc.status, exc.code)

"""/describe: an uploaded picture compared in CLIP space with this server's styles and the built-in
vocabulary, on the worker; the answer's buttons start /imagine with a phrase.

The command checks the upload as /imagine checks its pictures (bot.user_pictures), keeps it, and
queues a describe job (jobspec.describe) in the same fair queue as pictures; bot.delivery posts
the answer (bot.describe_answer) when the worker has stored it. A click on one of its buttons asks
the member what to draw and starts /imagine with the phrase (or the server's style) added; only
the member who asked for the description or a server admin may click them.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import admission
from bot.commands.imagine import Imagine, Uploads
from bot.config import BotConfig
from bot.describe_answer import ImagineWithButton
from bot.errors import UserError
from bot.events import Wakeups
from bot.options import ImagineOptions
from bot.permissions import is_admin, missing_permissions
from bot.text import label
from bot.user_pictures import PictureCaps, check_announced, fetch_picture, save_picture
from db import Job, JobKind, JobState, NewJob, Store
from jobspec import ParamError
from jobspec.describe import DEFAULT_TOP_K, TOP_K_RANGE, DescribeParams, Description, Match, candidates

log = logging.getLogger(__name__)

PROMPT = "describe a picture"  # the job's prompt text, for /queue and /history
MODAL_TITLE_MAX = 45
ONLY_ASKER = "Only the member who asked for this description or a server admin can use its buttons."


class Describe(commands.Cog):
    def __init__(self, client: discord.Client, store: Store, config: BotConfig, imagine: Imagine,
                 wakeups: Wakeups) -> None:
        self.client = client
        self.store = store
        self.config = config
        self.imagine = imagine
        self.wakeups = wakeups
        self.caps = PictureCaps(hosts=config.attachment_hosts, max_bytes=config.max_attachment_bytes,
                                max_pixels=config.max_attachment_pixels)

    async def cog_load(self) -> None:
        self.client.add_dynamic_items(ImagineWithButton)

    async def cog_unload(self) -> None:
        self.client.remove_dynamic_items(ImagineWithButton)

    @app_commands.command(name="describe", description="Which styles, media and moods CLIP sees in a picture")
    @app_commands.guild_only()
    @app_commands.describe(picture="The picture to describe", matches="How many phrases to answer with")
    async def describe(self, interaction: discord.Interaction, picture: discord.Attachment,
                       matches: app_commands.Range[int, TOP_K_RANGE[0], TOP_K_RANGE[1]] | None = None) -> None:
        assert interaction.guild_id is not None and interaction.channel_id is not None
        try:
            missing = missing_permissions(interaction.app_permissions)
            if missing:
                raise UserError(f"I need {', '.join(missing)} in this channel to answer; ask an admin to grant them.")
            check_announced(picture, self.caps, what="picture")
        except UserError as exc:
            await interaction.response.send_message(str(exc), ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            job = await self.queue(interaction, picture, matches or DEFAULT_TOP_K)
        except UserError as exc:
            await interaction.edit_original_response(content=str(exc))
            return
        log.info("job %s: describe queued by %s in guild %s", job.id, job.user_id, job.guild_id)
        self.wakeups.worker()
        self.wakeups.jobs_changed()
        await interaction.edit_original_response(
            content=f"Looking at your picture (job #{job.id}); the answer comes in this channel.")

    async def queue(self, interaction: discord.Interaction, upload: discord.Attachment, top_k: int) -> Job:
        """Check the server's rules, fetch, check and keep the picture, queue the job; UserError otherwise."""
        assert interaction.guild_id is not None and interaction.channel_id is not None
        styles = await self.store.styles(interaction.guild_id)
        params = DescribeParams(picture="(not fetched yet)", candidates=candidates(styles), top_k=top_k,
                                clip_model=self.config.clip_model, clip_pretrained=self.config.clip_pretrained)
        await admission.precheck(self.store, self.new_job(interaction, params))  # before the download
        picture = await fetch_picture(upload, self.caps, what="picture")
        params = DescribeParams(picture=str(save_picture(picture, self.config.attachments_dir)),
                                candidates=params.candidates, top_k=top_k, clip_model=params.clip_model,
                                clip_pretrained=params.clip_pretrained)
        return await admission.enqueue(self.store, self.new_job(interaction, params))

    @staticmethod
    def new_job(interaction: discord.Interaction, params: DescribeParams) -> NewJob:
        assert interaction.guild_id is not None and interaction.channel_id is not None
        return NewJob(guild_id=interaction.guild_id, channel_id=interaction.channel_id, user_id=interaction.user.id,
                      prompt=PROMPT, params=params.validate().to_json(), seed=0)

    # ---------------------------------------------------------------- the answer's buttons
    @commands.Cog.listener()
    async def on_imagine_with(self, interaction: discord.Interaction, job_id: int, n: int) -> None:
        """An ImagineWithButton was clicked: ask what to draw, then start /imagine with match ``n``."""
        try:
            match = await self.clicked_match(interaction, job_id, n)
        except UserError as exc:
            await interaction.response.send_message(str(exc), ephemeral=True)
            return
        await interaction.response.send_modal(ImagineWithModal(self.imagine, match))

    async def clicked_match(self, interaction: discord.Interaction, job_id: int, n: int) -> Match:
        """The match a click asks for, if the clicker may use it; UserError otherwise."""
        assert interaction.guild_id is not None
        if not (await self.store.settings(interaction.guild_id)).buttons_enabled:
            raise UserError("Buttons are turned off in this server.")
        job = await self.store.get(job_id)
        if job is None or job.guild_id != interaction.guild_id or job.kind is not JobKind.DESCRIBE:
            raise UserError(f"Job #{job_id} no longer exists.")
        if job.user_id != interaction.user.id and not is_admin(interaction.permissions):
            raise UserError(ONLY_ASKER)
        stored = await self.store.result(job.id) if job.state is JobState.SUCCEEDED else None
        try:
            found = Description.from_bytes(stored) if stored is not None else None
        except ParamError:
            found = None
        if found is None or not 0 < n <= len(found.matches):
            raise UserError(f"Job #{job.id}'s answer is no longer stored; use /describe again.")
        return found.matches[n - 1]


class ImagineWithModal(discord.ui.Modal):
    """What to draw with a described phrase; submitting it runs /imagine."""

    def __init__(self, imagine: Imagine, match: Match) -> None:
        super().__init__(title=label(f"Imagine: {match.text}", MODAL_TITLE_MAX), timeout=None)
        self.imagine, self.match = imagine, match
        self.prompt: discord.ui.TextInput[ImagineWithModal] = discord.ui.TextInput(
            custom_id="prompt", label="What to draw", placeholder="a lighthouse on a cliff at night", min_length=1, max_length=900)
        self.add_item(self.prompt)

    def options(self) -> ImagineOptions:
        """/imagine's options: the typed prompt with the phrase as another prompt, or the server's style."""
        typed = self.prompt.value
        if self.match.style is not None:
            return ImagineOptions(prompt=typed, style=self.match.style)
        return ImagineOptions(prompt=f"{typed} | {self.match.text}")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self.imagine.start(interaction, self.options(), Uploads())

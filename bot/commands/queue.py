"""/queue, /cancel, /show and /history: a member's view of the jobs of a server."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import mentions
from bot.card_posting import CardPoster
from bot.config import BotConfig
from bot.job_actions import Actor, JobActions
from bot.permissions import is_admin
from bot.result_files import fit_upload
from bot.text import join_lines, plain
from db import Job, JobKind, JobState, Store

log = logging.getLogger(__name__)
LIST_LIMIT = 15


def job_line(job: Job) -> str:
    step = f" {job.step}/{job.total_steps}" if job.state.is_active else ""
    return f"`#{job.id}` {job.state}{step} · {plain(job.prompt, 80)}{origin(job)} · <@{job.user_id}>"


def origin(job: Job) -> str:
    """Where a job came from, e.g. " · upscale of #2" ("" for a job of its own)."""
    if job.relation is None:
        return ""
    return f" · {job.relation} of #{job.parent_id}" if job.parent_id is not None else f" · {job.relation}"


class QueueCommands(commands.Cog):
    def __init__(self, store: Store, config: BotConfig, cards: CardPoster, actions: JobActions) -> None:
        self.store = store
        self.config = config
        self.cards = cards
        self.actions = actions

    async def server_job(self, interaction: discord.Interaction, job_id: int) -> Job | None:
        """Job ``job_id`` if it belongs to the server the command runs in."""
        job = await self.store.get(job_id)
        return job if job is not None and job.guild_id == interaction.guild_id else None

    @app_commands.command(name="queue", description="Your jobs and this server's queue")
    @app_commands.guild_only()
    async def queue(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        jobs = await self.store.queue(interaction.guild_id)
        mine = [j for j in jobs if j.user_id == interaction.user.id]
        lines = [f"**Yours:** {len(mine)} waiting or running"] + [job_line(j) for j in mine[:LIST_LIMIT]]
        lines += [f"**This server:** {len(jobs)} waiting or running"] + [job_line(j) for j in jobs[:LIST_LIMIT]]
        await interaction.response.send_message(join_lines(lines), ephemeral=True, allowed_mentions=mentions.NOBODY)

    @app_commands.command(name="cancel", description="Cancel one of your jobs (admins: any job)")
    @app_commands.guild_only()
    @app_commands.describe(job="Job number; leave empty for your newest waiting or running job")
    async def cancel(self, interaction: discord.Interaction, job: app_commands.Range[int, 1] | None = None) -> None:
        assert interaction.guild_id is not None and interaction.channel_id is not None
        if job is None:
            mine = [j for j in await self.store.queue(interaction.guild_id) if j.user_id == interaction.user.id]
            if not mine:
                await interaction.response.send_message("You have no waiting or running jobs.", ephemeral=True)
                return
            job = max(j.id for j in mine)
        found = await self.server_job(interaction, job)
        if found is None:
            await interaction.response.send_message(f"There is no job #{job} in this server.", ephemeral=True)
            return
        actor = Actor(interaction.user.id, is_admin(interaction.permissions), interaction.guild_id,
                      interaction.channel_id)
        outcome = await self.actions.cancel(found, actor)
        await interaction.response.send_message(outcome.text, ephemeral=True)

    @app_commands.command(name="show", description="Post a job's card and picture again")
    @app_commands.guild_only()
    async def show(self, interaction: discord.Interaction, job: app_commands.Range[int, 1]) -> None:
        found = await self.server_job(interaction, job)
        if found is None:
            await interaction.response.send_message(f"There is no job #{job} in this server.", ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        picture_job = found.state is JobState.SUCCEEDED and found.kind is JobKind.IMAGINE  # a description has none
        png = await self.store.result(found.id) if picture_job else None
        # as a JPEG when the PNG is over the upload limit
        picture = fit_upload(found.id, png, None, limit=self.config.upload_limit_bytes)[0] if png else None
        card = await self.cards.render(found, image=picture)
        await interaction.edit_original_response(**card.edit_kwargs())

    @app_commands.command(name="history", description="Your recent jobs in this server")
    @app_commands.guild_only()
    async def history(self, interaction: discord.Interaction) -> None:
        jobs = await self.store.history(interaction.user.id, guild_id=interaction.guild_id, limit=LIST_LIMIT)
        text = join_lines([job_line(j) for j in jobs]) if jobs else "You have no jobs here yet; try /imagine."
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=mentions.NOBODY)

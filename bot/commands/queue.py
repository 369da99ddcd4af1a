"""/queue, /cancel, /show, /history and /status."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot import cards, mentions
from bot.actions import Actor, admin_permissions
from bot.pictures import fit_upload
from bot.status import status_embed
from bot.text import join_lines, plain
from db.errors import NotFound
from db.jobs import Job

if TYPE_CHECKING:
    from bot.client import VQBot

log = logging.getLogger(__name__)
LIST_LIMIT = 15


def job_line(job: Job) -> str:
    step = f" {job.step}/{job.total_steps}" if job.state in ("running", "cancelling") else ""
    return f"`#{job.id}` {job.state}{step} · {plain(job.prompt, 80)} · <@{job.user_id}>"


async def own_guild_job(bot: VQBot, interaction: discord.Interaction[VQBot], job_id: int) -> Job | None:
    try:
        job = await bot.store.get(job_id)
    except NotFound:
        job = None
    return job if job is not None and job.guild_id == interaction.guild_id else None


@app_commands.command(name="queue", description="Your jobs and this server's queue")
@app_commands.guild_only()
async def queue(interaction: discord.Interaction[VQBot]) -> None:
    bot = interaction.client
    assert interaction.guild_id is not None
    jobs = await bot.store.queue(interaction.guild_id)
    mine = [j for j in jobs if j.user_id == interaction.user.id]
    lines = [f"**Yours:** {len(mine)} waiting or running"] + [job_line(j) for j in mine[:LIST_LIMIT]]
    lines += [f"**This server:** {len(jobs)} waiting or running"] + [job_line(j) for j in jobs[:LIST_LIMIT]]
    await interaction.response.send_message(join_lines(lines), ephemeral=True, allowed_mentions=mentions.NOBODY)


@app_commands.command(name="cancel", description="Cancel one of your jobs (admins: any job)")
@app_commands.guild_only()
@app_commands.describe(job="Job number; leave empty for your newest waiting or running job")
async def cancel(interaction: discord.Interaction[VQBot], job: app_commands.Range[int, 1] | None = None) -> None:
    bot = interaction.client
    assert interaction.guild_id is not None and interaction.channel_id is not None
    if job is None:
        mine = [j for j in await bot.store.queue(interaction.guild_id) if j.user_id == interaction.user.id]
        if not mine:
            await interaction.response.send_message("You have no waiting or running jobs.", ephemeral=True)
            return
        job = max(j.id for j in mine)
    found = await own_guild_job(bot, interaction, job)
    if found is None:
        await interaction.response.send_message(f"There is no job #{job} in this server.", ephemeral=True)
        return
    actor = Actor(interaction.user.id, admin_permissions(interaction.permissions), interaction.guild_id,
                  interaction.channel_id)
    outcome = await bot.actions.cancel(found, actor)
    await interaction.response.send_message(outcome.text, ephemeral=True)


@app_commands.command(name="show", description="Post a job's card and picture again")
@app_commands.guild_only()
async def show(interaction: discord.Interaction[VQBot], job: app_commands.Range[int, 1]) -> None:
    bot = interaction.client
    found = await own_guild_job(bot, interaction, job)
    if found is None:
        await interaction.response.send_message(f"There is no job #{job} in this server.", ephemeral=True)
        return
    await interaction.response.defer(thinking=True)
    settings = await bot.guild_settings(found.guild_id)
    kwargs: dict[str, Any] = {"embed": cards.card_embed(found)}
    view = cards.card_view(found, buttons_enabled=settings.buttons_enabled)
    if view is not None:
        kwargs["view"] = view
    png = await bot.store.result(found.id) if found.state == "succeeded" else None
    if png is not None:  # as a JPEG when the PNG is over the upload limit
        files = fit_upload(found.id, png, None, limit=bot.config.upload_limit_bytes)
        kwargs["attachments"] = files
        kwargs["embed"].set_image(url=f"attachment://{files[0].filename}")
    await interaction.edit_original_response(**kwargs)


@app_commands.command(name="history", description="Your recent jobs in this server")
@app_commands.guild_only()
async def history(interaction: discord.Interaction[VQBot]) -> None:
    bot = interaction.client
    jobs = await bot.store.history(interaction.user.id, guild_id=interaction.guild_id, limit=LIST_LIMIT)
    text = join_lines([job_line(j) for j in jobs]) if jobs else "You have no jobs here yet; try /imagine."
    await interaction.response.send_message(text, ephemeral=True, allowed_mentions=mentions.NOBODY)


@app_commands.command(name="status", description="The worker, its GPU and the queue")
async def status(interaction: discord.Interaction[VQBot]) -> None:
    bot = interaction.client
    stats = await bot.store.stats()
    waiting = None
    if interaction.guild_id is not None:
        waiting = sum(1 for j in await bot.store.queue(interaction.guild_id, limit=500) if j.state == "queued")
    embed = status_embed(bot.worker_status(), stats, guild_waiting=waiting)
    await interaction.response.send_message(embed=embed, ephemeral=True)


COMMANDS: tuple[app_commands.Command[Any, ..., None], ...] = (queue, cancel, show, history, status)

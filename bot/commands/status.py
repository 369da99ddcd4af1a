"""/status: the worker, its device and speed, and the queue, as an embed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from db import JobState, Store

STATE_LINES = {
    "warming up": "🔥 Getting ready (compiling the engine; jobs wait in the queue meanwhile)",
    "idle": "💤 Idle, waiting for jobs",
    "running": "🎨 Working",
    "stopping": "🛑 Stopping (running jobs go back to the queue)",
    "stopped": "⏹️ Stopped",
}


def _number(stats: dict[str, object], key: str) -> float:
    value = stats.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _jobs(ids: tuple[int, ...]) -> str:
    return ", ".join(f"#{i}" for i in ids)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def worker_lines(worker: Any | None, stats: dict[str, object]) -> tuple[str, str, discord.Colour]:
    """The Worker and Speed fields and the embed's colour: this process's worker, or the store's
    view of the workers elsewhere."""
    if worker is None:
        busy = int(_number(stats, "workers"))
        who = f"{busy} worker{'s' if busy != 1 else ''} busy now" if busy else "none busy now"
        rate = _number(stats, "steps_per_s")
        speed = f"{rate:.1f} steps/s across running jobs" if rate else "no job running"
        colour = discord.Colour.blurple() if busy else discord.Colour.light_grey()
        return f"Separate worker processes take the jobs; {who}.", speed, colour
    colour = {"idle": discord.Colour.green(), "running": discord.Colour.blurple()}.get(
        worker.state, discord.Colour.orange())
    text = STATE_LINES.get(worker.state, worker.state)
    if worker.state == "running" and worker.jobs:
        text += f" on job{'s' if len(worker.jobs) > 1 else ''} {_jobs(worker.jobs)}"
    device = f"{worker.device_name} (`{worker.device}`)" if worker.device_name else f"`{worker.device}`"
    text += f"\nDevice: {device}"
    if not worker.steps_per_s:
        return text, "not measured yet (no job has run since the start)", colour
    when = "now" if worker.state == "running" else "last job"
    if worker.state != "running" and worker.measured_at is not None:
        when = f"last job, {discord.utils.format_dt(worker.measured_at, 'R')}"
    return text, f"{worker.steps_per_s:.1f} steps/s ({when})", colour


def status_embed(worker: Any | None, stats: dict[str, object], *, guild_waiting: int | None = None) -> discord.Embed:
    """``worker``: a worker.status.WorkerStatus of this process's worker, or None when workers run
    elsewhere; ``stats``: ``store.stats()``; ``guild_waiting``: queued jobs of the asking server."""
    worker_text, speed, colour = worker_lines(worker, stats)
    embed = discord.Embed(title="vqbot status", colour=colour)
    embed.add_field(name="Worker", value=worker_text, inline=False)
    embed.add_field(name="Speed", value=speed, inline=True)
    waiting = f"{int(_number(stats, 'queued'))} waiting"
    if guild_waiting is not None:
        waiting += f" ({guild_waiting} from this server)"
    servers = int(_number(stats, "guilds_waiting"))
    if servers > 1:
        waiting += f" across {servers} servers"
    embed.add_field(name="Queue", value=waiting, inline=True)
    cancelling = int(_number(stats, "cancelling"))
    active = f"{int(_number(stats, 'running'))} running" + (f", {cancelling} cancelling" if cancelling else "")
    embed.add_field(name="Running", value=active, inline=True)
    gpu_today = _number(stats, "gpu_seconds_today")
    if gpu_today:
        embed.set_footer(text=f"GPU time today: {_duration(gpu_today)}")
    return embed

class StatusCommand(commands.Cog):
    """``worker_status`` gives this process's worker.status.WorkerStatus, or None when workers run elsewhere."""

    def __init__(self, store: Store, worker_status: Callable[[], Any]) -> None:
        self.store = store
        self.worker_status = worker_status

    @app_commands.command(name="status", description="The worker, its GPU and the queue")
    async def status(self, interaction: discord.Interaction) -> None:
        stats = await self.store.stats()
        waiting = None
        if interaction.guild_id is not None:
            queue = await self.store.queue(interaction.guild_id, limit=500)
            waiting = sum(1 for j in queue if j.state is JobState.QUEUED)
        embed = status_embed(self.worker_status(), stats, guild_waiting=waiting)
        await interaction.response.send_message(embed=embed, ephemeral=True)

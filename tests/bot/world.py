"""A guild with a channel, a member, an admin and a moderator, and a worker driven by the test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import discord

from bot.delivery import Delivery
from worker.worker import Worker, WorkerConfig

REACT_RERUN, REACT_CONTINUE, REACT_CANCEL = "🔁", "➕", "❌"


def delivery_of(bot: Any) -> Delivery:
    """The bot's delivery loop (tests run its passes themselves, or stop it: the bot is down)."""
    delivery = bot.get_cog("Delivery")
    assert isinstance(delivery, Delivery)
    return delivery


def count_downloads(bot: Any) -> list[str]:
    """From now on, the URL of every file the bot downloads from (simulated) Discord's CDN."""
    downloads: list[str] = []
    fetch = bot.http.get_from_cdn

    async def counted(url: str) -> bytes:
        downloads.append(url)
        return await fetch(url)

    bot.http.get_from_cdn = counted
    return downloads


@dataclass
class World:
    env: Any
    store: Any
    guild: Any
    channel: Any
    alice: Any
    bob: Any
    admin: Any
    worker: Worker

    step_seconds: float = 6.0

    async def tick(self) -> None:
        """The worker changed a job: let some virtual time pass (a GPU takes time), then wait for
        the bot's delivery pass, so that every test sees the same edits in the same order."""
        await self.env.advance_time(self.step_seconds)
        await delivery_of(self.env.bot).run_pass()

    def requests(self, method: str, fragment: str = "") -> list[Any]:
        return [r for r in self.env.http_requests if r.method == method and fragment in r.path]

    def messages(self) -> list[discord.Message]:
        return self.channel.history()

    def message(self, message_id: int) -> discord.Message:
        return next(m for m in self.channel.history() if m.id == message_id)


def build_world(env, store, engine) -> World:
    guild = env.create_guild("VQ Guild")
    channel = guild.create_text_channel("render")
    alice = guild.add_member(env.create_user("alice"))
    bob = guild.add_member(env.create_user("bob"))
    admins = guild.create_role("Admins", permissions=discord.Permissions(manage_guild=True))
    admin = guild.add_member(env.create_user("admin"), roles=[admins])

    worker = Worker(store, engine, WorkerConfig(name="test-worker", progress_every=5, progress_min_interval_s=0.0))
    world = World(env, store, guild, channel, alice, bob, admin, worker)
    worker.on_change = world.tick
    return world

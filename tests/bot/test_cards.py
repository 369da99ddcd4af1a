"""What a card shows while its job waits and runs, and how often it changes."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace

import pytest

from db import JobState
from tests.bot.conftest import make_bot
from tests.bot.discord_spec import all_problems
from tests.bot.world import build_world

TIMESTAMP = re.compile(r"<t:(\d+):R>")


@pytest.fixture
def world(simcord_env, store, tiny_engine):
    return build_world(simcord_env, store, tiny_engine)


class TimedLog(list):
    """simcord's request log, with the virtual time of every request beside it."""

    def __init__(self, env) -> None:
        super().__init__(env.backend.http_requests)
        self.env = env
        self.times = [None] * len(self)

    def append(self, entry) -> None:
        super().append(entry)
        self.times.append(self.env.now())


async def test_a_queued_card_says_when_the_job_should_be_done(world):
    await world.alice.slash(world.channel, "imagine", prompt="a cat")
    await world.worker.run_once()  # now the store knows how fast the worker is
    second = await world.bob.slash(world.channel, "imagine", prompt="a dog")
    line = second.response.embeds[0].description
    assert line.startswith("⏳ Queued (next in line, done ~<t:") and "starts" not in line
    _ahead, eta = await world.store.position(2)
    shown = int(TIMESTAMP.search(line).group(1))
    assert abs(shown - (world.env.now().timestamp() + eta)) <= 2  # the store's finish estimate, not a start


async def test_progress_edits_show_the_newest_frame_and_respect_the_cadence(world):
    env, store, channel = world.env, world.store, world.channel
    interval = env.bot.config.edit_interval_s
    world.step_seconds = 3.0  # frames come three times as often as a card may change
    result = await world.alice.slash(channel, "imagine", prompt="a cat", steps=60)
    card_path = f"/channels/{channel.id}/messages/{result.response.id}"
    log = TimedLog(env)
    env.backend.http_requests = log
    reported: list[tuple[int, int]] = []  # (requests made so far, step the worker reported)

    async def record_then_tick() -> None:
        job = await store.get(1)
        if job.state is JobState.RUNNING:
            reported.append((len(log), job.step))
        await world.tick()

    world.worker.on_change = record_then_tick
    await world.worker.run_once()

    running = [(i, t, e) for i, (t, e) in enumerate(zip(log.times, log, strict=False)) if e.method == "PATCH"
               and e.path == card_path and "Running" in e.json["embeds"][0]["description"]]
    assert len(running) >= 2
    times = [t for _, t, _ in running]
    assert all((b - a).total_seconds() >= interval for a, b in itertools.pairwise(times)), times
    steps_reported = [s for _, s in reported if s > 0]
    assert len(running) < len(steps_reported)  # frames were dropped, not queued up
    for index, _, edit in running:
        shown = int(re.search(r"step (\d+)/", edit.json["embeds"][0]["description"]).group(1))
        newest = max((s for before, s in reported if before <= index), default=0)  # reported before the edit
        assert shown == newest, f"the card showed step {shown} when step {newest} was the newest"
        assert "done ~<t:" in edit.json["embeds"][0]["description"]
    assert (await store.get(1)).delivered
    assert all_problems(env.http_requests) == []


async def test_a_result_over_the_upload_limit_arrives_as_jpeg(simcord_env, store, tiny_engine, bot_config):
    await simcord_env.restart_bot(make_bot(store, replace(bot_config, upload_limit_bytes=4000)))
    world = build_world(simcord_env, store, tiny_engine)
    await world.alice.slash(world.channel, "imagine", prompt="a noisy cat", size="128x128")
    await world.worker.run_once()
    png = await store.result(1)
    assert len(png) > 4000
    final = world.messages()[-1]
    assert final.content.startswith(world.alice.mention)
    assert [a.filename for a in final.attachments] == ["vqbot-1.jpg"]
    data = await final.attachments[0].read()
    assert data.startswith(b"\xff\xd8") and len(data) <= 4000


async def test_show_sends_a_picture_over_the_upload_limit_as_jpeg(simcord_env, store, tiny_engine, bot_config):
    await simcord_env.restart_bot(make_bot(store, replace(bot_config, upload_limit_bytes=4000)))
    world = build_world(simcord_env, store, tiny_engine)
    await world.alice.slash(world.channel, "imagine", prompt="a noisy cat", size="128x128")
    await world.worker.run_once()
    shown = await world.bob.slash(world.channel, "show", job=1)
    assert [a.filename for a in shown.response.attachments] == ["vqbot-1.jpg"]
    assert shown.response.embeds[0].image.url.endswith("vqbot-1.jpg")

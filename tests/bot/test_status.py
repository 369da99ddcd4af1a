"""/status: a readable card about the worker, its device and speed, and the queue."""

from __future__ import annotations

import pytest

from tests.bot.conftest import make_bot
from tests.bot.world import build_world


@pytest.fixture
async def world(simcord_env, store, tiny_engine, bot_config):
    world = build_world(simcord_env, store, tiny_engine)
    # as `vqbot run` wires its in-process worker
    await simcord_env.restart_bot(make_bot(store, bot_config, worker_status=world.worker.status))
    return world


def fields(answer) -> dict[str, str]:
    embed = answer.response.embeds[0]
    return {f.name: f.value for f in embed.fields}


async def test_status_shows_the_worker_its_device_speed_and_the_queue(world):
    first = await world.alice.slash(world.channel, "status")
    assert first.ephemeral
    shown = fields(first)
    assert "Idle" in shown["Worker"] and "CPU" in shown["Worker"] and "`cpu`" in shown["Worker"]
    assert "not measured yet" in shown["Speed"]
    assert shown["Queue"].startswith("0 waiting") and shown["Running"] == "0 running"
    assert set(shown) == {"Worker", "Speed", "Queue", "Running"}  # no raw store keys

    await world.alice.slash(world.channel, "imagine", prompt="a cat")
    await world.bob.slash(world.channel, "imagine", prompt="a dog")
    assert fields(await world.alice.slash(world.channel, "status"))["Queue"] == "2 waiting (2 from this server)"

    during: dict[str, str] = {}

    async def look_while_running() -> None:
        await world.tick()
        job = await world.store.get(1)
        if job.step >= 10 and not during:
            during.update(fields(await world.alice.slash(world.channel, "status")))

    world.worker.on_change = look_while_running
    await world.worker.run_once()
    assert "Working on jobs #1, #2" in during["Worker"]
    assert during["Speed"].endswith("steps/s (now)") and during["Running"] == "2 running"

    after = fields(await world.alice.slash(world.channel, "status"))
    assert "Idle" in after["Worker"] and "steps/s (last job" in after["Speed"]
    assert after["Queue"].startswith("0 waiting")


async def test_status_without_a_worker_in_this_process_says_where_jobs_run(world, bot_config):
    await world.env.restart_bot(make_bot(world.store, bot_config))
    shown = fields(await world.alice.slash(world.channel, "status"))
    assert "Separate worker processes" in shown["Worker"] and "none busy now" in shown["Worker"]

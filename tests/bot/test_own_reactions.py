"""The bot puts 🔁/➕/❌ on its cards and results so that users can just click them."""

from __future__ import annotations

import discord
import pytest

from db import JobState, Relation
from tests.bot.discord_spec import all_problems
from tests.bot.world import REACT_CANCEL, REACT_CONTINUE, REACT_RERUN, build_world


@pytest.fixture
def world(simcord_env, store, tiny_engine):
    return build_world(simcord_env, store, tiny_engine)


def own(world, message: discord.Message | int) -> list[str]:
    """The emoji the bot itself reacted with on ``message``, as simulated Discord holds them."""
    message_id = message if isinstance(message, int) else message.id
    channel_id = next(c for c, msgs in world.env.backend.messages.items() if message_id in msgs)
    stored = world.env.backend.messages[channel_id][message_id]
    return [str(r.emoji) for r in stored.reactions if world.env.bot.user.id in r.user_ids]


def reaction_calls(world) -> list:
    return [r for r in world.env.http_requests if "/reactions/" in r.path]


async def test_cards_and_results_carry_the_bots_own_reactions(world):
    result = await world.alice.slash(world.channel, "imagine", prompt="a cat")
    card = result.response.id
    await world.env.settle()
    assert own(world, card) == [REACT_CANCEL]
    assert (await world.store.get(1)).state is JobState.QUEUED  # the bot's own ❌ cancelled nothing

    await world.worker.run_once()
    await world.env.settle()
    final = world.messages()[-1]
    assert own(world, final) == [REACT_RERUN, REACT_CONTINUE]
    assert own(world, card) == []  # nothing left to cancel
    assert (await world.store.get(1)).state is JobState.SUCCEEDED

    await world.alice.react(final, REACT_RERUN)  # one click on the bot's 🔁
    rerun = await world.store.get(2)
    assert rerun.parent_id == 1 and rerun.relation is Relation.RERUN
    await world.env.settle()
    assert own(world, rerun.message_id) == [REACT_CANCEL]
    assert all_problems(world.env.http_requests) == []


async def test_a_cancelled_job_offers_a_rerun_on_its_card(world):
    result = await world.alice.slash(world.channel, "imagine", prompt="a cat")
    await world.alice.react(result.response.message, REACT_CANCEL)
    assert (await world.store.get(1)).state is JobState.CANCELLED
    await world.env.advance_time(30)
    assert own(world, result.response.id) == [REACT_RERUN]


async def test_a_channel_without_add_reactions_still_gets_cards_and_results(world):
    env = world.env
    quiet = world.guild.create_text_channel(
        "quiet", overwrites={env.bot.user: discord.PermissionOverwrite(add_reactions=False)})
    result = await world.alice.slash(quiet, "imagine", prompt="a cat")
    assert not result.ephemeral
    await world.worker.run_once()
    await env.settle()
    assert reaction_calls(world) == []  # the bot knew better than to try
    job = await world.store.get(1)
    assert job.state is JobState.SUCCEEDED and job.delivered
    assert any(a.filename == "vqbot-1.png" for m in quiet.history() for a in m.attachments)


async def test_refused_reactions_break_nothing(world):
    env = world.env
    env.inject_error("PUT", "/channels/*/reactions/*", status=403, code=50013, message="Missing Permissions",
                     times=None)
    result = await world.alice.slash(world.channel, "imagine", prompt="a cat")
    await world.worker.run_once()
    await env.settle()
    job = await world.store.get(1)
    assert job.state is JobState.SUCCEEDED and job.delivered
    assert "Done" in world.message(result.response.id).embeds[0].description
    assert any(a.filename == "vqbot-1.png" for a in world.messages()[-1].attachments)
    assert reaction_calls(world), "the bot never tried to react"


async def test_no_reactions_where_an_admin_turned_them_off(world):
    await world.admin.slash(world.channel, "config set", key="reactions_enabled", value="off")
    await world.alice.slash(world.channel, "imagine", prompt="a cat")
    await world.worker.run_once()
    await world.env.settle()
    assert reaction_calls(world) == []

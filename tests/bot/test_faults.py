"""What Discord throws at the bot: 429s, deleted cards, missing permissions, expired tokens, restarts."""

from __future__ import annotations

import discord
import pytest
from simcord import assert_responded

from db import JobState
from tests.bot.conftest import make_bot
from tests.bot.discord_spec import all_problems
from tests.bot.world import REACT_CANCEL, REACT_RERUN, build_world


@pytest.fixture
def world(simcord_env, store, tiny_engine):
    return build_world(simcord_env, store, tiny_engine)


def result_messages(world, job_id: int) -> list[discord.Message]:
    return [m for m in world.messages() if any(a.filename == f"vqbot-{job_id}.png" for a in m.attachments)]


async def test_429_on_card_edits_slows_down_and_the_result_still_arrives(world):
    env = world.env
    result = await world.alice.slash(world.channel, "imagine", prompt="a cat")
    card_path = f"/channels/{world.channel.id}/messages/{result.response.id}"
    env.inject_error("PATCH", card_path, status=429, message="You are being rate limited.", times=3)
    await world.worker.run_once()
    await env.advance_time(120)
    assert (await world.store.get(1)).delivered
    assert len(result_messages(world, 1)) == 1
    edits = world.requests("PATCH", card_path)
    assert len(edits) >= 4  # three refused, then the final state went through
    assert "Done" in world.message(result.response.id).embeds[0].description
    assert all_problems(env.http_requests) == []


async def test_a_deleted_card_is_replaced_by_a_new_message(world):
    env = world.env
    mods = world.guild.create_role("Mods", permissions=discord.Permissions(manage_messages=True))
    mod = world.guild.add_member(env.create_user("mod"), roles=[mods])
    result = await world.alice.slash(world.channel, "imagine", prompt="a cat")
    old_card = result.response.id
    await mod.delete(result.response)
    await world.worker.run_once()
    job = await world.store.get(1)
    assert job.state is JobState.SUCCEEDED and job.delivered
    assert job.message_id != old_card
    assert world.message(job.message_id).embeds[0].footer.text == "Job #1"
    assert len(result_messages(world, 1)) == 1


async def test_a_channel_where_the_bot_may_not_post_gets_a_clear_answer(world):
    env = world.env
    bot_member = world.guild.get_member(env.bot.user.id) if hasattr(world.guild, "get_member") else env.bot.user
    locked = world.guild.create_text_channel(
        "locked", overwrites={bot_member: discord.PermissionOverwrite(send_messages=False, attach_files=False)})
    answer = await world.alice.slash(locked, "imagine", prompt="a cat")
    assert answer.ephemeral
    assert "Send Messages" in answer.response.content and "Attach Files" in answer.response.content
    assert await world.store.get(1) is None


async def test_403_when_posting_the_result_tells_the_owner_by_dm_and_nothing_crashes(world):
    env = world.env
    await world.alice.slash(world.channel, "imagine", prompt="a cat")
    env.inject_error("POST", f"/channels/{world.channel.id}/messages", status=403, code=50013,
                     message="Missing Permissions", times=None)
    await world.worker.run_once()
    job = await world.store.get(1)
    assert job.state is JobState.SUCCEEDED and job.delivered
    dms = [r for r in env.http_requests if r.method == "POST" and r.path == "/users/@me/channels"]
    assert dms, "the owner was not told"
    assert all_problems(env.http_requests) == []


async def test_a_job_that_waits_past_the_15_minute_token_still_updates_its_card(world):
    env = world.env
    result = await world.alice.slash(world.channel, "imagine", prompt="a cat")
    await env.advance_time(16 * 60)  # the interaction token is dead now
    webhook_calls = len(world.requests("PATCH", "/webhooks/"))
    await world.worker.run_once()
    assert len(world.requests("PATCH", "/webhooks/")) == webhook_calls  # never retried the expired token
    assert "Done" in world.message(result.response.id).embeds[0].description
    assert len(result_messages(world, 1)) == 1


async def test_a_card_older_than_an_hour_is_replaced_when_its_job_starts(world):
    env = world.env
    result = await world.alice.slash(world.channel, "imagine", prompt="a cat")
    old_card = result.response.id
    await env.advance_time(61 * 60)
    await world.worker.run_once()
    job = await world.store.get(1)
    assert job.message_id != old_card
    assert old_card not in [m.id for m in world.messages()]  # the old card was removed
    assert "Done" in world.message(job.message_id).embeds[0].description


async def test_a_restart_in_the_middle_of_a_queue_loses_nothing(world, store, bot_config):
    env = world.env
    await world.alice.slash(world.channel, "imagine", prompt="a cat")
    await env.advance_time(30)
    second = await world.bob.slash(world.channel, "imagine", prompt="a dog")
    old_bot = env.bot
    await env.restart_bot(make_bot(store, bot_config))
    assert env.bot is not old_bot

    click = await world.bob.click(second.response, custom_id="vq:cancel:2")  # a button from before the restart
    assert_responded(click, content="Cancelled job #2.", ephemeral=True)

    assert await world.worker.run_once() == 1  # the queued job still runs, the new bot delivers it
    assert len(result_messages(world, 1)) == 1
    await world.alice.react(result_messages(world, 1)[0], REACT_RERUN)
    rerun = await store.get(3)
    assert rerun.parent_id == 1
    await world.alice.react(world.message(rerun.message_id), REACT_CANCEL)
    assert (await store.get(3)).state is JobState.CANCELLED
    assert all_problems(env.http_requests) == []


async def test_a_channel_deleted_before_the_result_is_not_retried_forever(world):
    env = world.env
    await world.alice.slash(world.channel, "imagine", prompt="a cat")
    env.inject_error("POST", f"/channels/{world.channel.id}/messages", status=404, code=10003,
                     message="Unknown Channel", times=None)
    env.inject_error("PATCH", f"/channels/{world.channel.id}/messages/*", status=404, code=10003,
                     message="Unknown Channel", times=None)
    await world.worker.run_once()
    await env.advance_time(60)
    job = await world.store.get(1)
    assert job.state is JobState.SUCCEEDED and job.delivered
    tried = len([r for r in env.http_requests if f"/channels/{world.channel.id}/" in r.path])
    await env.advance_time(600)
    assert len([r for r in env.http_requests if f"/channels/{world.channel.id}/" in r.path]) == tried, \
        "it kept trying"
    told = [r.json.get("content") or "" for r in env.http_requests if r.method == "POST" and isinstance(r.json, dict)]
    assert any("channel is gone" in t and "/show 1" in t for t in told), "the owner was not told"
    assert all_problems(env.http_requests) == []

"""Every finished job is posted exactly once, however many ended while the bot was down."""

from __future__ import annotations

from collections import Counter

import pytest

from db.jobs import NewJob
from tests.bot.conftest import make_bot
from tests.bot.discord_spec import all_problems
from tests.bot.finishing import finish_next
from tests.bot.world import build_world, delivery_of
from tests.worker.engine_fixtures import tiny_params


@pytest.fixture
def world(simcord_env, store, tiny_engine):
    return build_world(simcord_env, store, tiny_engine)


def posted_results(world) -> Counter[str]:
    return Counter(a.filename for m in world.messages() for a in m.attachments if a.filename.startswith("vqbot-"))


async def queue_jobs(world, tiny_models, count: int) -> None:
    news = [NewJob(guild_id=world.guild.id, channel_id=world.channel.id, user_id=world.alice.id,
                   prompt=f"cat number {i}", params=tiny_params(tiny_models, f"cat number {i}", seed=i), seed=i)
            for i in range(count)]
    await world.store.enqueue_many(news, enforce_limits=False)


@pytest.mark.simcord(settle_timeout=30.0)  # 150 posts and their reactions settle in one go
async def test_150_results_that_ended_while_the_bot_was_down_are_each_posted_once(world, tiny_models, bot_config):
    await delivery_of(world.env.bot).stop()  # the bot is down: nothing watches the store
    await queue_jobs(world, tiny_models, 150)
    assert len(await finish_next(world.store, 150)) == 150
    await world.env.restart_bot(make_bot(world.store, bot_config))
    await world.env.settle()
    assert posted_results(world) == Counter({f"vqbot-{i}.png": 1 for i in range(1, 151)})
    assert [i for i in range(1, 151) if not (await world.store.get(i)).delivered] == []
    await delivery_of(world.env.bot).run_pass()  # a later pass posts nothing again
    assert sum(posted_results(world).values()) == 150


async def test_a_result_posted_just_before_a_crash_is_not_posted_again(world, bot_config):
    card = await world.alice.slash(world.channel, "imagine", prompt="a cat")
    old = world.env.bot
    await delivery_of(old).stop()
    await finish_next(world.store)
    job = await world.store.get(1)
    # The old bot posts the result with its own code, then dies before marking it delivered.
    await delivery_of(old)._post_result(job)
    assert posted_results(world) == Counter({"vqbot-1.png": 1})
    assert not (await world.store.get(1)).delivered
    await world.env.restart_bot(make_bot(world.store, bot_config))
    await world.env.settle()
    assert posted_results(world) == Counter({"vqbot-1.png": 1})
    done = await world.store.get(1)
    assert done.delivered
    assert "Done" in world.message(card.response.id).embeds[0].description
    assert f"/{done.result_message_id})" in world.message(card.response.id).embeds[0].description  # links it


async def test_a_result_post_asks_discord_to_drop_a_repeat_of_it(world):
    await world.alice.slash(world.channel, "imagine", prompt="a cat")
    await finish_next(world.store)
    await delivery_of(world.env.bot).run_pass()
    (post,) = [r for r in world.requests("POST", f"/channels/{world.channel.id}/messages") if r.json.get("content")]
    # the same nonce for every post of job 1: Discord returns the first message instead of a second one
    assert post.json["nonce"] == "vqr-1" and post.json["enforce_nonce"] is True
    assert all_problems(world.env.http_requests) == []

"""Only a job's owner is ever pinged, whatever the prompt names; @everyone, @here and roles never."""

from __future__ import annotations

import pytest

from tests.bot.discord_spec import all_problems
from tests.bot.finishing import fail_next
from tests.bot.rendering import unwanted_pings
from tests.bot.world import REACT_CANCEL, build_world, delivery_of


@pytest.fixture
def world(simcord_env, store, tiny_engine):
    return build_world(simcord_env, store, tiny_engine)


def naming_everyone(world) -> str:
    """A prompt that names another member (both mention forms), a role, @everyone and @here."""
    role = world.guild.create_role("Artists")
    bob = world.bob.id
    return f"a cat <@{bob}> and <@!{bob}> for <@&{role.id}> @everyone @here"


def pinged(world, message) -> set[str]:
    """Whom Discord notified for a message it created (simulated Discord keeps who it pinged)."""
    stored = world.env.backend.messages[message.channel.id][message.id]
    who = {f"user:{u}" for u in stored.ping_user_ids} | {f"role:{r}" for r in stored.ping_role_ids}
    return who | ({"everyone"} if stored.mention_everyone else set())


async def test_a_result_pings_its_owner_and_no_one_its_prompt_names(world):
    await world.alice.slash(world.channel, "imagine", prompt=naming_everyone(world))
    await world.worker.run_once()
    result = world.messages()[-1]
    assert result.attachments and result.content.startswith(world.alice.mention)
    assert pinged(world, result) == {f"user:{world.alice.id}"}
    assert unwanted_pings(world.env.http_requests, {world.alice.id}) == []
    assert all_problems(world.env.http_requests) == []


async def test_a_failure_that_quotes_user_text_pings_only_its_owner(world):
    await world.alice.slash(world.channel, "imagine", prompt="a cat")
    await fail_next(world.store, f"The picture for “{naming_everyone(world)}” could not be made.")
    await delivery_of(world.env.bot).run_pass()
    failure = world.messages()[-1]
    assert "failed" in failure.content
    assert pinged(world, failure) == {f"user:{world.alice.id}"}
    assert unwanted_pings(world.env.http_requests, {world.alice.id}) == []
    assert all_problems(world.env.http_requests) == []


async def test_a_refused_reaction_is_answered_without_pinging_the_reactor(world):
    card = (await world.alice.slash(world.channel, "imagine", prompt=naming_everyone(world))).response.message
    await world.bob.react(card, REACT_CANCEL)
    answer = world.messages()[-1]
    assert "Only the job's owner or a server admin can cancel job #1." in answer.content
    assert answer.reference is not None and answer.reference.message_id == card.id
    assert pinged(world, answer) == set()  # bob is not the owner; alice did nothing
    assert unwanted_pings(world.env.http_requests, {world.alice.id}) == []
    assert all_problems(world.env.http_requests) == []


async def test_a_result_that_cannot_be_posted_goes_by_dm_and_pings_no_one_else(world):
    await world.alice.slash(world.channel, "imagine", prompt=naming_everyone(world))
    world.env.inject_error("POST", f"/channels/{world.channel.id}/messages", status=403, code=50013,
                           message="Missing Permissions", times=None)
    await world.worker.run_once()
    dms = [r for r in world.env.http_requests if r.method == "POST" and r.path.startswith("/channels/")
           and r.path.endswith("/messages") and r.path != f"/channels/{world.channel.id}/messages"]
    assert dms, "the owner was not told"
    assert unwanted_pings(world.env.http_requests, {world.alice.id}) == []

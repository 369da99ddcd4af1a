"""Four candidates in one grid, and what its buttons make: upscale, variations, new seeds, cancel."""

from __future__ import annotations

from pathlib import Path

import discord
import pytest
from simcord import OptionError

from db import JobState, Relation
from jobspec import JobParams
from tests.bot.conftest import make_bot
from tests.bot.discord_spec import all_problems
from tests.bot.pictures import HTML, picture, small_png
from tests.bot.world import build_world

GRID_SETTINGS = {"grid_enabled": True, "grid_size": 32, "grid_steps": 10}


@pytest.fixture
async def world(simcord_env, store, tiny_engine):
    world = build_world(simcord_env, store, tiny_engine)
    for key, value in GRID_SETTINGS.items():
        await store.set_setting(world.guild.id, key, value, by_user=1)
    return world


def buttons(message: discord.Message) -> list[dict]:
    """The message's buttons as Discord holds them, row by row."""
    rows = [row if isinstance(row, dict) else row.to_dict() for row in message.components]
    return [button for row in rows for button in row["components"]]


def custom_ids(message: discord.Message) -> list[str]:
    return [button["custom_id"] for button in buttons(message)]


def labels(message: discord.Message) -> list[str]:
    return [button["label"] for button in buttons(message)]


def styles(message: discord.Message) -> dict[str, int]:
    """Each button's label and its style as Discord holds it (1 primary ... 4 danger)."""
    return {button["label"]: button["style"] for button in buttons(message)}


def used(message: discord.Message) -> list[str]:
    """The labels of the buttons shown as used: green, Discord's SUCCESS style (3)."""
    return [label for label, style in styles(message).items() if style == 3]


def grid_messages(world) -> list[discord.Message]:
    return [m for m in world.messages() if any(a.filename.startswith("grid.") for a in m.attachments)]


async def run_grid(world) -> list[frozenset[int]]:
    """Run the queue to the end; the sets of jobs that were running together at each report."""
    together: list[frozenset[int]] = []

    async def watch() -> None:
        await world.tick()
        queued = await world.store.queue(world.guild.id)
        together.append(frozenset(j.id for j in queued if j.state is JobState.RUNNING))

    world.worker.on_change = watch
    while await world.worker.run_once():
        pass
    world.worker.on_change = world.tick
    await world.env.settle()
    return together


async def test_the_grid_journey_four_candidates_one_message_upscale_and_vary(world, bot_config):
    env, store, alice, bob = world.env, world.store, world.alice, world.bob

    answer = await alice.slash(world.channel, "imagine", prompt="a red apple", seed=41)
    assert not answer.ephemeral
    card = answer.response
    assert "4 candidates" in card.embeds[0].description and custom_ids(card) == ["vq:cancel:1"]
    jobs = await store.group(1)
    assert [j.id for j in jobs] == [1, 2, 3, 4] and {j.group_id for j in jobs} == {1}
    assert [j.seed for j in jobs] == [41, 42, 43, 44]
    assert {(j.width, j.height, j.total_steps) for j in jobs} == {(32, 32, 10)}
    assert {j.message_id for j in jobs} == {card.id}

    together = await run_grid(world)
    assert frozenset({1, 2, 3, 4}) in together, "the four candidates never ran as one batch"

    (final,) = grid_messages(world)
    assert final.id != card.id and card.id not in [m.id for m in world.messages()]  # progress card replaced
    assert final.content.startswith(alice.mention) and [u.id for u in final.mentions] == [alice.id]
    assert [a.filename for a in final.attachments] == ["grid.png"]
    assert labels(final) == ["U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4", "New seed"]
    assert set(styles(final).values()) == {2}  # all SECONDARY (grey): none used yet
    assert custom_ids(final)[:8] == [f"vq:upscale:{i}" for i in (1, 2, 3, 4)] + [f"vq:vary:{i}" for i in (1, 2, 3, 4)]
    done = await store.group(1)
    assert all(j.state is JobState.SUCCEEDED and j.delivered and j.result_message_id == final.id for j in done)

    refused = await bob.click(final, label="U2")
    assert refused.ephemeral and "Only the owner" in refused.response.content
    assert await store.get(5) is None and used(world.message(final.id)) == []

    upscaled = await alice.click(final, label="U2")
    assert "job #5" in upscaled.response.content
    child = await store.get(5)
    assert child.parent_id == 2 and child.relation is Relation.UPSCALE and child.group_id is None
    params = JobParams.from_json(child.params)
    assert (params.width, params.height, params.steps) == (64, 64, 20)  # the full size and steps
    assert params.seed == 42 and Path(params.init_image).read_bytes() == await store.result(2)
    upscale_card = world.message(child.message_id)
    assert ("Origin", "Upscale of job #2") in [(f.name, f.value) for f in upscale_card.embeds[0].fields]
    final = world.message(final.id)
    assert used(final) == ["U2"] and custom_ids(final)[1] == "vq:upscale:2"  # green, the same custom id
    (marked,) = world.requests("PATCH", f"/messages/{final.id}")
    assert not {"embeds", "attachments", "content"} & set(marked.json)  # only the buttons change
    assert [a.filename for a in final.attachments] == ["grid.png"] and final.embeds

    again = await bob.click(final, label="U2")  # someone else's second click of a used button
    assert again.ephemeral and "Only the owner" in again.response.content and await store.get(6) is None

    await env.restart_bot(make_bot(store, bot_config))
    await env.advance_time(30)  # the server's cooldown between two submissions
    varied = await alice.click(final, label="V3")  # a button from before the restart
    assert "jobs #6–#9" in varied.response.content
    variations = await store.group(6)
    assert [j.id for j in variations] == [6, 7, 8, 9]
    assert {(j.parent_id, j.relation) for j in variations} == {(3, Relation.VARIATION)}
    picture = await store.result(3)
    for job in variations:
        p = JobParams.from_json(job.params)
        assert Path(p.init_image).read_bytes() == picture and (p.width, p.steps) == (32, 10)
        assert len(p.noise_prompts) == 1
    assert len({j.seed for j in variations}) == 4
    new_grid = world.message(variations[0].message_id)
    assert custom_ids(new_grid) == ["vq:cancel:6"] and "Variation of job #3" in str(new_grid.embeds[0].to_dict())
    final = world.message(final.id)
    assert used(final) == ["U2", "V3"]  # the mark from before the restart is kept

    await env.restart_bot(make_bot(store, bot_config))
    await env.advance_time(30)
    upscaled_again = await alice.click(final, label="U2")  # a used button, after a restart, still works
    assert "Upscale of job #2 queued as job #10" in upscaled_again.response.content
    assert used(world.message(final.id)) == ["U2", "V3"]

    shown = await alice.slash(world.channel, "show", job=5)
    assert "Upscale of job #2" in str(shown.response.embeds[0].to_dict())
    history = await alice.slash(world.channel, "history")
    assert "upscale of #2" in history.response.content and "variation of #3" in history.response.content

    problems = all_problems(env.http_requests)
    assert problems == [], "\n".join(problems)


async def test_new_seeds_make_a_new_grid_with_each_candidate_from_its_own(world):
    await world.alice.slash(world.channel, "imagine", prompt="a pear")
    await run_grid(world)
    (final,) = grid_messages(world)
    rerolled = await world.alice.click(final, label="New seed")
    assert "jobs #5–#8" in rerolled.response.content
    again = await world.store.group(5)
    assert [(j.parent_id, j.relation) for j in again] == [(i, Relation.RERUN) for i in (1, 2, 3, 4)]
    assert not {j.seed for j in again} & {j.seed for j in await world.store.group(1)}


async def test_cancel_ends_every_candidate_of_the_grid(world):
    answer = await world.alice.slash(world.channel, "imagine", prompt="a plum")
    refused = await world.bob.click(answer.response, custom_id="vq:cancel:1")
    assert refused.ephemeral and "Only the owner" in refused.response.content
    cancelled = await world.alice.click(answer.response, custom_id="vq:cancel:1")
    assert "Cancelling the 4 candidates" in cancelled.response.content
    assert {j.state for j in await world.store.group(1)} == {JobState.CANCELLED}
    await world.tick()
    card = world.message(answer.response.id)
    assert "Cancelled" in card.embeds[0].description and custom_ids(card) == ["vq:rerun:1"]
    assert grid_messages(world) == [] and await world.worker.run_once() == 0


async def test_every_candidate_counts_against_the_members_limit(world):
    await world.store.set_setting(world.guild.id, "max_queued_per_user", 6, by_user=1)
    await world.store.set_setting(world.guild.id, "cooldown_s", 0, by_user=1)
    first = await world.alice.slash(world.channel, "imagine", prompt="a fig")
    assert not first.ephemeral and len(await world.store.group(1)) == 4
    second = await world.alice.slash(world.channel, "imagine", prompt="a lime")
    assert second.ephemeral and "max_queued_per_user" in second.response.content
    assert [j.id for j in await world.store.queue(world.guild.id)] == [1, 2, 3, 4]  # all or none
    await run_grid(world)
    usage = await world.store.stats()
    assert all(j.gpu_seconds > 0 for j in await world.store.group(1)), usage


async def test_blend_makes_a_grid_from_two_pictures_with_their_weights(world):
    answer = await world.alice.slash(world.channel, "blend", picture1=("a.png", small_png()),
                                     picture2=("b.jpg", picture("JPEG")), prompt="a meadow", weights="1, 0.5")
    assert not answer.ephemeral, answer.response.content
    jobs = await world.store.group(1)
    assert len(jobs) == 4 and {(j.relation, j.parent_id) for j in jobs} == {(Relation.BLEND, None)}
    assert jobs[0].prompt == "Blend of 2 pictures | a meadow"
    params = JobParams.from_json(jobs[0].params)
    assert [p.weight for p in params.image_prompts] == [1.0, 0.5]
    assert [Path(p.text).read_bytes() for p in params.image_prompts] == [small_png(), picture("JPEG")]
    assert [p.text for p in params.prompts] == ["a meadow"]
    assert "Blend of uploaded pictures" in str(answer.response.embeds[0].to_dict())
    await run_grid(world)
    (final,) = grid_messages(world)
    assert labels(final) == ["U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4", "New seed"]


async def test_blend_refuses_one_picture_five_pictures_and_a_non_picture(world):
    with pytest.raises(OptionError, match="requires option 'picture2'"):  # Discord's client refuses it
        await world.alice.slash(world.channel, "blend", picture1=("a.png", small_png()))
    with pytest.raises(OptionError, match="no option 'picture5'"):
        await world.alice.slash(world.channel, "blend", **{f"picture{i}": (f"{i}.png", small_png()) for i in range(1, 6)})
    refused = await world.alice.slash(world.channel, "blend", picture1=("a.png", small_png()),
                                      picture2=("evil.png", HTML))
    assert refused.ephemeral and "picture 2 is not a picture I can read" in refused.response.content
    bad_weight = await world.alice.slash(world.channel, "blend", picture1=("a.png", small_png()),
                                         picture2=("b.png", small_png()), weights="1, nan")
    assert bad_weight.ephemeral and "weight" in bad_weight.response.content
    assert await world.store.queue(world.guild.id) == []

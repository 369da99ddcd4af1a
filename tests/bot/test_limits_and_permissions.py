"""Guild limits and who may do what: /config for admins only, cancels for owners and admins."""

from __future__ import annotations

import pytest
from discord import app_commands
from simcord import SetupError, assert_error, assert_responded

from db import JobState
from tests.bot.pictures import small_png
from tests.bot.rendering import shown
from tests.bot.world import REACT_CANCEL, build_world, count_downloads


@pytest.fixture
def world(simcord_env, store, tiny_engine):
    return build_world(simcord_env, store, tiny_engine)


async def test_config_is_hidden_from_members_and_refused_at_run_time(world):
    env, alice, channel = world.env, world.alice, world.channel
    assert "config" not in alice.available_commands(channel)
    with pytest.raises(SetupError, match="not visible"):
        await alice.slash(channel, "config show")
    config = next(c for c in env.bot.synced if c.name == "config")
    world.guild.set_command_permissions(config.id, {alice: True})  # a server owner's override
    denied = await alice.slash(channel, "config set", key="max_steps", value="5000")
    assert_responded(denied, content="You need the Manage Server permission to change vqbot's settings.",
                     ephemeral=True)
    assert (await world.store.settings(world.guild.id)).max_steps == 500
    assert_error(env, app_commands.CheckFailure)  # discord.py reports the failed check; the user got the answer


async def test_an_admin_sets_a_limit_and_it_refuses_bigger_jobs(world):
    ok = await world.admin.slash(world.channel, "config set", key="max_steps", value="10")
    assert_responded(ok, content="`max_steps` is now 10.", ephemeral=True)
    refused = await world.alice.slash(world.channel, "imagine", prompt="a cat", steps=20)
    assert refused.ephemeral and "max_steps" in refused.response.content and "at most 10" in refused.response.content
    assert await world.store.get(1) is None
    audit = await world.admin.slash(world.channel, "config audit")
    assert "max_steps: 500 → 10" in shown(audit.response.content)


async def test_an_invalid_setting_value_is_explained(world):
    bad = await world.admin.slash(world.channel, "config set", key="max_steps", value="lots")
    assert bad.ephemeral and "max_steps must be a whole number" in shown(bad.response.content)


async def test_banned_words_are_refused(world):
    await world.admin.slash(world.channel, "config ban", word="gore")
    refused = await world.alice.slash(world.channel, "imagine", prompt="a temple | Gore:0.5")
    assert refused.ephemeral and "banned_words" in refused.response.content
    assert await world.store.get(1) is None
    fine = await world.alice.slash(world.channel, "imagine", prompt="a gorgeous temple")
    assert not fine.ephemeral and await world.store.get(1) is not None


async def test_a_job_the_server_refuses_is_refused_before_its_pictures_are_downloaded(world):
    await world.admin.slash(world.channel, "config ban", word="gore")
    downloads = count_downloads(world.env.bot)
    refused = await world.alice.slash(world.channel, "imagine", prompt="a gory temple | gore",
                                      init_image=("seed.png", small_png()), image_prompt=("look.png", small_png()))
    assert refused.ephemeral and "banned_words" in refused.response.content
    assert downloads == []
    assert await world.store.get(1) is None


async def test_a_banned_word_is_one_entry_whatever_its_spelling(world):
    await world.admin.slash(world.channel, "config ban", word="cat")
    again = await world.admin.slash(world.channel, "config ban", word="ＣＡＴ")  # full-width: the same word to CLIP
    assert "Banned words: 1 " in again.response.content
    await world.admin.slash(world.channel, "config unban", word="ｃａｔ")
    assert (await world.store.settings(world.guild.id)).banned_words == ()
    fine = await world.alice.slash(world.channel, "imagine", prompt="a cat")
    assert not fine.ephemeral and await world.store.get(1) is not None


async def test_a_job_over_the_queue_limit_is_refused_and_not_queued(world):
    await world.admin.slash(world.channel, "config set", key="max_queued_per_user", value="1")
    await world.admin.slash(world.channel, "config set", key="cooldown_s", value="0")
    first = await world.alice.slash(world.channel, "imagine", prompt="a cat")
    assert not first.ephemeral
    second = await world.alice.slash(world.channel, "imagine", prompt="a dog")
    assert second.ephemeral and "max_queued_per_user" in second.response.content
    assert [j.prompt for j in await world.store.queue(world.guild.id)] == ["a cat"]


async def test_a_cooldown_refusal_says_when_it_frees_up(world):
    await world.alice.slash(world.channel, "imagine", prompt="a cat")
    again = await world.alice.slash(world.channel, "imagine", prompt="a dog")
    assert again.ephemeral and "cooldown_s" in again.response.content and "<t:" in again.response.content


async def test_someone_elses_cancel_reaction_does_nothing(world):
    result = await world.alice.slash(world.channel, "imagine", prompt="a cat")
    card = result.response.message
    await world.bob.react(card, REACT_CANCEL)
    assert (await world.store.get(1)).state is JobState.QUEUED
    assert "Only the job's owner or a server admin" in world.messages()[-1].content
    await world.admin.react(card, REACT_CANCEL)
    assert (await world.store.get(1)).state is JobState.CANCELLED


async def test_someone_elses_cancel_button_does_nothing(world):
    result = await world.alice.slash(world.channel, "imagine", prompt="a cat")
    click = await world.bob.click(result.response, custom_id="vq:cancel:1")
    assert_responded(click, ephemeral=True)
    assert "Only the job's owner" in click.response.content
    assert (await world.store.get(1)).state is JobState.QUEUED
    mine = await world.alice.click(result.response, custom_id="vq:cancel:1")
    assert mine.response.content == "Cancelled job #1."
    assert (await world.store.get(1)).state is JobState.CANCELLED


async def test_reactions_can_be_turned_off(world):
    await world.admin.slash(world.channel, "config set", key="reactions_enabled", value="off")
    result = await world.alice.slash(world.channel, "imagine", prompt="a cat")
    await world.alice.react(result.response.message, REACT_CANCEL)
    assert (await world.store.get(1)).state is JobState.QUEUED


async def test_styles_autocomplete_and_apply(world):
    await world.admin.slash(world.channel, "config style-set", name="ghibli", text="Studio Ghibli style")
    choices = await world.alice.autocomplete(world.channel, "imagine", "style", "ghib", prompt="a cat")
    assert "ghibli" in [c["value"] if isinstance(c, dict) else c.value for c in choices]
    await world.alice.slash(world.channel, "imagine", prompt="a cat", style="ghibli")
    assert (await world.store.get(1)).prompt == "a cat | Studio Ghibli style"

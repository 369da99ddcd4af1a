"""Bad input gets one clear ephemeral sentence and queues nothing."""

from __future__ import annotations

import asyncio

import pytest

from tests.bot.discord_spec import all_problems
from tests.bot.pictures import huge_png, small_png
from tests.bot.world import build_world, count_downloads


@pytest.fixture
def world(simcord_env, store, tiny_engine):
    return build_world(simcord_env, store, tiny_engine)


def answer(result) -> str:
    """The refusal text: an immediate ephemeral response, or the ephemeral follow-up after a defer."""
    if result.response is not None and result.response.content:
        assert result.ephemeral, "refusals must be ephemeral"
        return result.response.content
    assert result.followups, "no answer at all"
    assert result.followups[-1].ephemeral, "refusals must be ephemeral"
    return result.followups[-1].content


async def nothing_queued(world) -> bool:
    return await world.store.queue(world.guild.id) == [] and await world.store.get(1) is None


@pytest.mark.parametrize(("prompt", "expected"), [
    ("   ", "The prompt is empty"),
    ("| | |", "The prompt is empty"),
    ("a cat:nan", "finite number"),
    ("a cat:inf | a dog", "finite number"),
    ("a cat:0", "weight 0"),
])
async def test_a_bad_prompt_is_refused(world, prompt, expected):
    result = await world.alice.slash(world.channel, "imagine", prompt=prompt)
    assert expected in answer(result)
    assert await nothing_queued(world)


async def test_a_file_that_is_not_a_picture_is_refused(world):
    result = await world.alice.slash(world.channel, "imagine", prompt="a cat",
                                     init_image=("cat.png", b"this is not a picture at all"))
    assert "not a picture" in answer(result)
    assert await nothing_queued(world)


async def test_a_50_mb_attachment_is_refused_without_downloading_it(world):
    downloads = count_downloads(world.env.bot)
    result = await world.alice.slash(world.channel, "imagine", prompt="a cat",
                                     image_prompt=("big.png", b"\0" * (50 * 2**20)))
    assert "50 MiB" in answer(result)
    assert not world.requests("GET", "cdn.simcord.invalid")
    assert downloads == []
    assert await nothing_queued(world)


async def test_a_20000_by_20000_png_is_refused(world):
    result = await world.alice.slash(world.channel, "imagine", prompt="a cat", init_image=("bomb.png", huge_png()))
    text = answer(result)
    assert "20000x20000" in text or "too large to decode" in text
    assert await nothing_queued(world)


async def test_a_size_that_is_not_a_multiple_of_16_is_refused(world):
    result = await world.alice.slash(world.channel, "imagine", prompt="a cat", size="50x64")
    assert "multiple of 16" in answer(result)
    assert await nothing_queued(world)


async def test_a_good_init_image_is_accepted_and_stored(world, bot_config):
    result = await world.alice.slash(world.channel, "imagine", prompt="a cat", init_image=("seed.jpg", small_png()))
    job = await world.store.get(1)
    assert job is not None and result.response.embeds[0].footer.text == "Job #1"
    stored = job.params["init_image"]
    assert stored.startswith(str(bot_config.attachments_dir)) and stored.endswith(".png")  # type by content


@pytest.mark.simcord(settle_timeout=1.0)  # the bot's 2 s wait parks on the virtual clock
async def test_a_slow_download_is_still_refused_privately_and_leaves_no_public_trace(world):
    """The download outlasts the 2 s the bot waits before deferring: the public 'thinking…'
    message goes away and the refusal arrives as a private follow-up."""
    env, http = world.env, world.env.bot.http
    fast = http.get_from_cdn
    cdn_answers = asyncio.Event()

    async def slow_cdn(url: str) -> bytes:  # Discord's CDN having a bad day: it answers when the test says
        await env.external_wait(cdn_answers.wait(), reason="the CDN is slow")
        return await fast(url)

    http.get_from_cdn = slow_cdn
    result = await world.alice.slash(world.channel, "imagine", prompt="a cat",
                                     init_image=("cat.png", b"this is not a picture at all"))
    assert not world.requests("POST", "/callback")  # still waiting for the download
    await env.advance_time(2.0)
    assert world.requests("POST", "/callback")[0].json["type"] == 5  # it had to defer
    cdn_answers.set()
    await env.settle()
    assert "not a picture" in answer(result)
    assert result.response is None or not result.response.content  # the public placeholder is gone
    assert [m for m in world.messages() if not m.flags.ephemeral] == []
    assert await nothing_queued(world)
    assert all_problems(world.env.http_requests) == []

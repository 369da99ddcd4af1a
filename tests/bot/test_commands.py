"""/queue, /history, /status, /show and the ➕ continuation."""

from __future__ import annotations

import pytest

from db import JobState, Relation
from tests.bot.discord_spec import all_problems
from tests.bot.world import REACT_CONTINUE, build_world


@pytest.fixture
def world(simcord_env, store, tiny_engine):
    return build_world(simcord_env, store, tiny_engine)


async def test_queue_history_and_status_answer_privately(world):
    await world.alice.slash(world.channel, "imagine", prompt="a cat")
    await world.bob.slash(world.channel, "imagine", prompt="a dog")
    queue = await world.alice.slash(world.channel, "queue")
    assert queue.ephemeral and "**Yours:** 1" in queue.response.content and "**This server:** 2" in queue.response.content
    history = await world.alice.slash(world.channel, "history")
    assert history.ephemeral and "#1" in history.response.content and "a dog" not in history.response.content
    status = await world.alice.slash(world.channel, "status")
    assert status.ephemeral and status.response.embeds[0].fields[0].name == "Worker"


async def test_show_posts_the_card_and_picture_again(world):
    await world.alice.slash(world.channel, "imagine", prompt="a cat")
    await world.worker.run_once()
    shown = await world.bob.slash(world.channel, "show", job=1)
    assert not shown.ephemeral and shown.response.embeds[0].footer.text == "Job #1"
    assert [a["filename"] if isinstance(a, dict) else a.filename for a in shown.response.attachments] == ["vqbot-1.png"]
    missing = await world.bob.slash(world.channel, "show", job=99)
    assert missing.ephemeral and "no job #99" in missing.response.content


async def test_cancel_command_cancels_your_newest_job(world):
    await world.alice.slash(world.channel, "imagine", prompt="a cat")
    answer = await world.alice.slash(world.channel, "cancel")
    assert answer.ephemeral and answer.response.content == "Cancelled job #1."
    assert (await world.store.get(1)).state is JobState.CANCELLED


async def test_continue_starts_from_the_finished_picture(world):
    await world.alice.slash(world.channel, "imagine", prompt="a cat", seed=5)
    await world.worker.run_once()
    result = world.messages()[-1]
    click = await world.alice.click(result, custom_id="vq:continue:1")
    assert click.ephemeral and "queued as job #2" in click.response.content
    child = await world.store.get(2)
    assert child.parent_id == 1 and child.relation is Relation.CONTINUE and child.seed == 5
    assert child.params["init_image"].endswith(".png")
    await world.admin.slash(world.channel, "config set", key="cooldown_s", value="0")
    await world.alice.react(result, REACT_CONTINUE)
    assert (await world.store.get(3)).relation is Relation.CONTINUE
    await world.worker.run_once()
    assert (await world.store.get(2)).state is JobState.SUCCEEDED
    assert all_problems(world.env.http_requests) == []

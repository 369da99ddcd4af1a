"""The whole journey on a simulated Discord with the real engine and tiny models."""

from __future__ import annotations

import pytest
from simcord import assert_responded

from db import JobState, Relation
from tests.bot.discord_spec import all_problems
from tests.bot.world import REACT_CANCEL, REACT_RERUN, build_world


@pytest.fixture
def world(simcord_env, store, tiny_engine):
    return build_world(simcord_env, store, tiny_engine)


async def test_imagine_progress_result_rerun_and_cancel(world):
    env, store, channel, alice = world.env, world.store, world.channel, world.alice

    result = await alice.slash(channel, "imagine", prompt="a red apple | shiny:0.5")
    assert world.requests("POST", "/callback")[0].json["type"] == 5  # deferred first
    assert not result.ephemeral
    card = result.response
    assert card.embeds[0].title == "a red apple | shiny:0.5"
    assert "Queued" in card.embeds[0].description
    assert_responded(result, component_custom_id="vq:cancel:1")
    job = await store.get(1)
    assert job.state is JobState.QUEUED and job.message_id == card.id

    assert await world.worker.run_once() == 1

    card_edits = world.requests("PATCH", f"/channels/{channel.id}/messages/{card.id}")
    with_picture = [r for r in card_edits if any(a.get("filename") == "preview.webp" for a in r.json.get("attachments", []))]
    assert with_picture, "the card never showed a progress picture"
    assert "Running" in with_picture[0].json["embeds"][0]["description"]
    final = world.messages()[-1]
    assert final.content.startswith(alice.mention)
    assert [u.id for u in final.mentions] == [alice.id]
    assert [a.filename for a in final.attachments] == ["vqbot-1.png"]
    assert (await final.attachments[0].read()).startswith(b"\x89PNG")
    assert "seed" in final.content
    done = await store.get(1)
    assert done.state is JobState.SUCCEEDED and done.delivered
    assert "Done" in world.message(card.id).embeds[0].description

    await alice.react(final, REACT_RERUN)
    rerun = await store.get(2)
    assert rerun.parent_id == 1 and rerun.relation is Relation.RERUN and rerun.seed != done.seed
    assert rerun.message_id is not None and world.message(rerun.message_id).embeds[0].footer.text == "Job #2"

    reacted = False

    async def cancel_while_running() -> None:
        nonlocal reacted
        await world.tick()
        job = await store.get(2)
        if job.state is JobState.RUNNING and job.step >= 5 and not reacted:
            reacted = True
            await alice.react(world.message(job.message_id), REACT_CANCEL)

    world.worker.on_change = cancel_while_running
    await world.worker.run_once()
    cancelled = await store.get(2)
    assert reacted and cancelled.state is JobState.CANCELLED and cancelled.step < cancelled.total_steps
    await env.settle()
    assert "Cancelled" in world.message(rerun.message_id).embeds[0].description
    assert not any(m.attachments and m.attachments[0].filename == "vqbot-2.png" for m in world.messages())

    problems = all_problems(env.http_requests)
    assert problems == [], "\n".join(problems)

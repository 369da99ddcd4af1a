"""CLIP reads 77 tokens of each prompt: a longer prompt is queued, and its card and a private note
say which words CLIP will ignore. CLIP's own start and end markers are refused (they are no words)."""

from __future__ import annotations

import pytest

from db import JobState
from jobspec.clip_text import dropped_text
from tests.bot.discord_spec import all_problems
from tests.bot.rendering import markup_problems, shown
from tests.bot.world import build_world

LONG = ("a red apple on a wooden table, " * 12).strip()  # 96 tokens: CLIP reads 75 of them
IGNORED = "on a wooden table, a red apple on a wooden table, a red apple on a wooden table,"


@pytest.fixture
def world(simcord_env, store, tiny_engine):
    return build_world(simcord_env, store, tiny_engine)


def not_read(embed) -> list[str]:
    return [f.value for f in embed.fields if f.name.startswith("Not read by CLIP")]


async def test_a_prompt_longer_than_clip_reads_is_queued_and_the_ignored_words_are_named(world):
    assert dropped_text(LONG) == IGNORED  # what CLIP's tokenizer leaves out (checked in tests/jobspec)
    result = await world.alice.slash(world.channel, "imagine", prompt=f"a still life | {LONG} | oil painting")
    assert not result.ephemeral and (await world.store.get(1)).state is JobState.QUEUED
    assert [shown(v) for v in not_read(result.response.embeds[0])] == [f"“{IGNORED}”"]  # only the long prompt's end
    (note,) = result.followups
    assert note.ephemeral
    assert f"CLIP reads only 77 tokens (about 50 words) of each prompt, so it will ignore “{IGNORED}”" in shown(
        note.content)
    await world.worker.run_once()
    card = world.message(result.response.id).embeds[0]
    assert "Done" in card.description and [shown(v) for v in not_read(card)] == [f"“{IGNORED}”"]
    assert all_problems(world.env.http_requests) == []


async def test_the_ignored_words_show_as_typed(world):
    nasty = f"{LONG[:300]} [free nitro](https://evil.example) @everyone **bold**"
    result = await world.alice.slash(world.channel, "imagine", prompt=nasty)
    (shown_end,) = not_read(result.response.embeds[0])
    assert "[free nitro](https://evil.example) @everyone **bold**" in shown(shown_end)
    assert markup_problems(world.env.http_requests, "[free nitro](https://evil.example) @everyone **bold**") == []
    assert all_problems(world.env.http_requests) == []


async def test_a_prompt_clip_reads_in_full_gets_no_note(world):
    result = await world.alice.slash(world.channel, "imagine", prompt="a red apple on a wooden table")
    assert not result.ephemeral and result.followups == []
    assert not_read(result.response.embeds[0]) == []


async def test_a_grid_names_the_ignored_words_as_a_single_card_does(world):
    for key, value in {"grid_enabled": True, "grid_size": 32, "grid_steps": 5}.items():
        await world.store.set_setting(world.guild.id, key, value, by_user=1)
    result = await world.alice.slash(world.channel, "imagine", prompt=f"a still life | {LONG}")
    assert len(await world.store.group(1)) == 4 and result.response.attachments == []
    assert [shown(v) for v in not_read(result.response.embeds[0])] == [f"“{IGNORED}”"]  # while it waits
    (note,) = result.followups
    assert note.ephemeral and IGNORED in shown(note.content)
    while await world.worker.run_once():
        pass
    await world.env.settle()
    (finished,) = [m for m in world.messages() if m.attachments and m.attachments[0].filename == "grid.png"]
    assert [f.name for f in finished.embeds[0].fields][:2] == ["Parameters", "Not read by CLIP (past 77 tokens)"]
    assert [shown(v) for v in not_read(finished.embeds[0])] == [f"“{IGNORED}”"]
    assert markup_problems(world.env.http_requests, LONG) == []
    assert all_problems(world.env.http_requests) == []

"""/describe on a simulated Discord: the upload is checked, a describe job runs on the real worker with
the tiny CLIP, the answer comes with buttons, and a button starts /imagine with its phrase."""

from __future__ import annotations

from typing import Any

import pytest

from db import JobKind, JobState
from jobspec.describe import Description, Match
from tests.bot.discord_spec import all_problems
from tests.bot.finishing import finish_next
from tests.bot.pictures import HTML, SVG, huge_png, picture, small_png
from tests.bot.rendering import markup_problems, unwanted_pings
from tests.bot.world import World, build_world

ONLY_ASKER = "Only the member who asked for this description or a server admin can use its buttons."
NOT_A_PICTURE = "The picture is not a picture I can read; upload a PNG, JPEG, WebP or GIF."


@pytest.fixture
def world(simcord_env, store, tiny_engine):
    return build_world(simcord_env, store, tiny_engine)


def buttons(message: Any) -> list[Any]:
    return [c for row in message.components for c in row.children] if message.components else []


def button_ids(message: Any) -> list[str]:
    return [b.custom_id for b in buttons(message)]


async def answer_of(world: World, member: Any, **upload: Any) -> str:
    result = await member.slash(world.channel, "describe", **upload)
    message = result.followups[-1] if result.followups else result.response
    assert message.ephemeral
    return str(message.content)


async def test_describe_a_picture_then_imagine_with_a_phrase(world: World) -> None:
    env, store, alice, bob = world.env, world.store, world.alice, world.bob
    assert "Looking at your picture (job #1)" in await answer_of(world, alice, picture=("cat.png", small_png((48, 40))))
    queued = await store.get(1)
    assert queued.kind is JobKind.DESCRIBE and queued.state is JobState.QUEUED
    assert queued.params["candidates"][0]["style"] is not None  # the server's styles come first

    assert await world.worker.run_once() == 1
    answer = world.messages()[-1]
    assert answer.content.startswith(alice.mention) and [u.id for u in answer.mentions] == [alice.id]
    embed = answer.embeds[0]
    assert embed.description is not None and embed.footer.text is not None
    assert embed.title == "Closest in CLIP space" and embed.footer.text.startswith("Job #1")
    lines = embed.description.splitlines()
    assert len(lines) == 5 and lines[0].startswith("**1.** ")
    assert button_ids(answer) == [f"vq:imagine-with:1:{n}" for n in range(1, 6)]
    description = Description.from_bytes(await store.result(1))
    assert all(f"{m.similarity:.3f}" in line for m, line in zip(description.matches, lines, strict=True))

    refused = await bob.click(answer, custom_id="vq:imagine-with:1:1")
    assert refused.modal is None and refused.response.content == ONLY_ASKER

    shown = await alice.click(answer, custom_id="vq:imagine-with:1:2")
    assert shown.modal is not None
    started = await alice.submit_modal(shown, {"prompt": "a lighthouse"})
    job = await store.get(2)
    chosen = description.matches[1]
    assert job.kind is JobKind.IMAGINE and job.user_id == alice.id
    if chosen.style is None:
        assert job.prompt == f"a lighthouse | {chosen.text}"
    else:
        assert chosen.text in job.prompt and job.prompt.startswith("a lighthouse")
    assert started.response.embeds[0].footer.text == "Job #2"  # /imagine's own card answers

    problems = all_problems(env.http_requests)
    assert problems == [], "\n".join(problems)


async def test_a_style_match_starts_imagine_with_the_servers_style(world: World) -> None:
    store, alice = world.store, world.alice
    await store.set_style(world.guild.id, "moody", "dark and moody oil painting", by_user=world.admin.id)
    await answer_of(world, alice, picture=("cat.png", small_png()))
    found = Description((Match("dark and moody oil painting", 0.31, "moody"), Match("watercolour", 0.2)))
    await finish_next(store, png=found.to_bytes())
    await world.tick()
    answer = world.messages()[-1]
    assert "style moody" in str(answer.embeds[0].description)
    shown = await world.admin.click(answer, custom_id="vq:imagine-with:1:1")  # an admin may use them too
    await world.admin.submit_modal(shown, {"prompt": "a harbour"})
    job = await store.get(2)
    assert job.user_id == world.admin.id and job.prompt == "a harbour | dark and moody oil painting"


async def test_a_button_from_before_a_restart_still_works(world: World) -> None:
    env, store = world.env, world.store
    await answer_of(world, world.alice, picture=("cat.png", small_png()))
    await finish_next(store, png=Description((Match("pixelart", 0.3),)).to_bytes())
    await world.tick()
    old = env.backend.create_message(world.channel.id, env.bot.user.id, "an answer from the last run", components=[
        {"type": 1, "components": [{"type": 2, "style": 2, "label": f"{n}.", "custom_id": f"vq:imagine-with:1:{n}"}
                                   for n in (1, 7)]}])
    shown = await world.alice.click(world.message(old.id), custom_id="vq:imagine-with:1:1")
    assert shown.modal is not None
    gone = await world.alice.click(world.message(old.id), custom_id="vq:imagine-with:1:7")
    assert "no longer stored" in gone.response.content


async def test_a_hostile_description_is_shown_as_text(world: World) -> None:
    store = world.store
    hostile = "**bold** <@&123456789012345678> @everyone [x](https://evil.example)"
    await store.set_style(world.guild.id, "evil", hostile, by_user=world.admin.id)
    await answer_of(world, world.alice, picture=("cat.png", small_png()))
    await finish_next(store, png=Description((Match(hostile, 0.5, "evil"),)).to_bytes())
    await world.tick()
    assert markup_problems(world.env.http_requests, hostile) == []
    assert unwanted_pings(world.env.http_requests, {world.alice.id}) == []


@pytest.mark.parametrize(("upload", "expect"), [
    (("notes.txt", b"hello there"), NOT_A_PICTURE),
    (("cat.jpg", HTML), NOT_A_PICTURE),
    (("cat.svg", SVG), NOT_A_PICTURE),
    (("cat.tiff", picture("TIFF")), NOT_A_PICTURE),
    (("cut.png", small_png()[:60]), NOT_A_PICTURE),
    (("empty.png", b""), NOT_A_PICTURE),
    (("big.png", huge_png(5000, 5000)), "The picture is 5000x5000 pixels; use a picture under 16 megapixels."),
    (("big.png", b"\0" * (50 * 2**20)), "The picture is 50 MiB; upload a picture under 8 MiB."),
])
async def test_hostile_uploads_are_refused_as_imagine_refuses_them(world: World, upload: Any, expect: str) -> None:
    assert await answer_of(world, world.alice, picture=upload) == expect
    assert await world.store.get(1) is None


async def test_an_upload_named_like_a_path_is_kept_under_its_content(world: World) -> None:
    await answer_of(world, world.alice, picture=("../../etc/passwd.png", small_png()))
    kept = (await world.store.get(1)).params["picture"]
    assert kept.startswith(str(world.env.bot.config.attachments_dir)) and kept.endswith(".png")
    assert "passwd" not in kept

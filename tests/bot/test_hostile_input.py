"""What hostile or careless members type into every entry point of the bot, and what they get.

Each case is one thing a member (or an admin) does and the answer they must get: accepted, a
refusal in one sentence that tells them what to do, silence where the bot must ignore it, or
Discord itself refusing an option the command declares out of range. Whatever the case, the
bot never fails with a traceback, never hangs, never pings anyone but a job's owner, and never
renders the text it was given as markdown, a link or a mention.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from simcord import OptionError

from db import JobState
from tests.bot.discord_spec import all_problems
from tests.bot.pictures import HTML, SVG, huge_png, picture, small_png
from tests.bot.rendering import markup_problems, one_line, shown, unwanted_pings
from tests.bot.world import REACT_CANCEL, REACT_CONTINUE, REACT_RERUN, World, build_world

DISCORD_REFUSES = "Discord refuses the option before the bot sees it"
ONLY_OWNER = "Only the job's owner or a server admin can cancel job #1."
NOT_A_PICTURE = "is not a picture I can read; upload a PNG, JPEG, WebP or GIF."
UNKNOWN_BUTTON = "This button is not one I know"
OTHER_MEMBERS_JOB = "a cat by alice"
CLIP_MARKER = "which CLIP reads as a marker of where a text starts or ends, not as words; remove it."

Act = Callable[[World], Awaitable[str | None]]


@dataclass(frozen=True)
class Case:
    act: Act  # what the member does; returns the answer they see (None: no answer)
    expect: str | None  # part of the answer (a whole sentence where it matters); None: ignored
    jobs: int = 0  # jobs in the store afterwards (including any the act queued on purpose)
    typed: str = ""  # hostile text in the act that must not render as markup anywhere
    then: Callable[[World], Awaitable[None]] | None = None  # what else must hold afterwards


def reply(result: Any) -> str | None:
    """The text an interaction's user reads: the response, else the last follow-up; a card's
    title and state line."""
    for message in [result.response, *reversed(result.followups)]:
        if message is None:
            continue
        if message.content:
            return str(message.content)
        if message.embeds:
            return f"{message.embeds[0].title} · {message.embeds[0].description}"
    return None


def imagine(**options: Any) -> Act:
    async def act(world: World) -> str | None:
        return reply(await world.alice.slash(world.channel, "imagine", **options))
    return act


def config(command: str, **options: Any) -> Act:
    async def act(world: World) -> str | None:
        return reply(await world.admin.slash(world.channel, f"config {command}", **options))
    return act


async def alices_job(world: World, *, finished: bool = False) -> Any:
    """Alice's job #1: its card, or with ``finished`` its result message (the worker ran it)."""
    card = (await world.alice.slash(world.channel, "imagine", prompt=OTHER_MEMBERS_JOB)).response.message
    if not finished:
        return card
    await world.worker.run_once()
    return world.messages()[-1]


def new_bot_messages(world: World, before: int) -> str | None:
    """What the bot posted in the channel since ``before`` messages: the last one's text, or its
    card's title and state line."""
    fresh = [m for m in world.messages()[before:] if m.author.id == world.env.bot.user.id]
    if not fresh:
        return None
    last = fresh[-1]
    return last.content or f"{last.embeds[0].title} · {last.embeds[0].description}"


def reaction(emoji: str, *, by: str = "bob", on_result: bool = False) -> Act:
    async def act(world: World) -> str | None:
        message = await alices_job(world, finished=on_result)
        member = world.guild.add_member(world.env.create_user("a-bot", bot=True)) if by == "bot" else getattr(world, by)
        before = len(world.messages())
        await member.react(message, emoji)
        return new_bot_messages(world, before)
    return act


async def react_on_someone_elses_message(world: World) -> str | None:
    message = await world.bob.send(world.channel, "look at my cat")
    before = len(world.messages())
    await world.alice.react(message, REACT_CANCEL)
    return new_bot_messages(world, before)


def button(custom_id: str | Callable[[World], Awaitable[str]], *, by: str = "bob") -> Act:
    """``by`` clicks a button with ``custom_id`` on a message the bot posted (an old card, or one
    from an older version of the bot that carried other ids)."""
    async def act(world: World) -> str | None:
        wanted = custom_id if isinstance(custom_id, str) else await custom_id(world)
        env = world.env
        posted = env.backend.create_message(world.channel.id, env.bot.user.id, "an old card", components=[
            {"type": 1, "components": [{"type": 2, "style": 2, "label": "Cancel", "custom_id": wanted}]}])
        return reply(await getattr(world, by).click(world.message(posted.id), custom_id=wanted))
    return act


async def cancel_on_alices_card(world: World) -> str:
    await alices_job(world)
    return "vq:cancel:1"


async def another_servers_job(world: World) -> str:
    """A job queued in another server; its id in a Cancel button's custom id."""
    other = world.env.create_guild("Elsewhere")
    carol = other.add_member(world.env.create_user("carol"))
    card = await carol.slash(other.create_text_channel("art"), "imagine", prompt="a dog")
    job = await world.store.by_message(card.response.id)
    return f"vq:cancel:{job.id}"


async def upload_stored_by_content(world: World) -> None:
    """The upload was kept under its content's hash in the attachments folder, whatever its name."""
    stored = Path((await world.store.get(1)).params["init_image"])
    assert stored.parent == world.env.bot.config.attachments_dir and len(stored.stem) == 64
    assert stored.suffix == ".png" and stored.is_file()


async def upload_typed_by_content(world: World) -> None:
    assert (await world.store.get(1)).params["init_image"].endswith(".jpg")


async def rerun_belongs_to_the_reactor(world: World) -> None:
    rerun = await world.store.get(2)
    assert rerun.user_id == world.bob.id and rerun.parent_id == 1


async def job_one_still_waits(world: World) -> None:
    assert (await world.store.get(1)).state is JobState.QUEUED


CASES: dict[str, Case] = {
    # ---- /imagine prompt
    "prompt: only spaces": Case(imagine(prompt="   "), "The prompt is empty"),
    "prompt: only separators": Case(imagine(prompt="| | |"), "The prompt is empty"),
    "prompt: NaN weight": Case(imagine(prompt="a cat:nan"), "must be a finite number"),
    "prompt: weight beyond float": Case(imagine(prompt="a cat:1e999"), "must be a finite number"),
    "prompt: huge weight": Case(imagine(prompt="a cat:1e300"), "is too large; use a weight between -100 and 100."),
    "prompt: stop out of range": Case(imagine(prompt="a cat:1:99"), "The stop value 99 is out of range"),
    "prompt: weight without words": Case(imagine(prompt=":0.5"), "has a weight but no text"),
    "prompt: 17 prompts": Case(imagine(prompt="|".join(["a cat"] * 17)), "There are 17 prompts; use at most 16"),
    "prompt: one prompt of 1000 characters": Case(imagine(prompt="a" * 1000), "keep each prompt under 400"),
    "prompt: 1001 characters": Case(imagine(prompt="a" * 1001), DISCORD_REFUSES),
    "prompt: a NUL character": Case(imagine(prompt="a\x00cat"), "The prompt contains a NUL character"),
    "prompt: a broken character": Case(imagine(prompt="a \ud800 cat"), "not text I can read"),
    "prompt: masked link, accepted as text": Case(
        imagine(prompt="[free nitro](https://evil.example)"), "Queued", jobs=1,
        typed="[free nitro](https://evil.example)"),
    "prompt: mentions, accepted as text": Case(
        imagine(prompt="a cat <@&123456789012345678> @everyone @here"), "Queued", jobs=1,
        typed="a cat <@&123456789012345678> @everyone @here"),
    "prompt: control and bidi characters, accepted": Case(imagine(prompt="a\u202e cat\x07"), "Queued", jobs=1),
    "prompt: CLIP's end marker": Case(imagine(prompt="a cat <end_of_text> a dog"), CLIP_MARKER,
                                      typed="<end_of_text>"),
    "prompt: CLIP's start marker in capitals": Case(imagine(prompt="a cat | <START_OF_TEXT> a dog"), CLIP_MARKER),
    "prompt: CLIP's end marker as HTML entities": Case(imagine(prompt="a cat &lt;end_of_text&gt; a dog"), CLIP_MARKER),
    "prompt: Hugging Face's end marker, split at its |s, accepted": Case(imagine(prompt="a cat <|endoftext|> a dog"),
                                                                         "Queued", jobs=1),
    "prompt: 96 tokens in one prompt, accepted": Case(imagine(prompt=("a red apple on a wooden table, " * 12).strip()),
                                                      "Queued", jobs=1),
    # ---- size, aspect, steps, seed, cutouts
    "size: words": Case(imagine(prompt="a cat", size="big"), "The size “big” is not WIDTHxHEIGHT, e.g. 512x512."),
    "size: zero": Case(imagine(prompt="a cat", size="0x0"), "The size 0x0 is too small"),
    "size: negative": Case(imagine(prompt="a cat", size="-16x16"), "The size -16x16 is too small"),
    "size: three sides": Case(imagine(prompt="a cat", size="16x16x16"), "is not WIDTHxHEIGHT"),
    "size: not a multiple of 16": Case(imagine(prompt="a cat", size="500x500"), "must be a multiple of 16"),
    "size: beyond the engine": Case(imagine(prompt="a cat", size="99984x99984"), "between 16 and 2048"),
    "size: beyond the server's limit": Case(imagine(prompt="a cat", size="1024x1024"), "up to 512 pixels a side"),
    "size: one character": Case(imagine(prompt="a cat", size="5"), DISCORD_REFUSES),
    "size: markdown": Case(imagine(prompt="a cat", size="**9**"), "is not WIDTHxHEIGHT", typed="**9**"),
    "size and aspect together": Case(imagine(prompt="a cat", size="64x64", aspect="16:9"),
                                     "Give either a size or an aspect ratio, not both."),
    "aspect: not one of the choices": Case(imagine(prompt="a cat", aspect="5:4"), DISCORD_REFUSES),
    "aspect: one of the choices": Case(imagine(prompt="a cat", aspect="16:9"), "Queued", jobs=1),
    "steps: zero": Case(imagine(prompt="a cat", steps=0), DISCORD_REFUSES),
    "steps: beyond the server's limit": Case(imagine(prompt="a cat", steps=600), "at most 500 steps"),
    "steps: beyond any limit": Case(imagine(prompt="a cat", steps=5001), DISCORD_REFUSES),
    "seed: negative": Case(imagine(prompt="a cat", seed=-1), DISCORD_REFUSES),
    "seed: beyond 32 bits": Case(imagine(prompt="a cat", seed=2**32), DISCORD_REFUSES),
    "seed: the largest": Case(imagine(prompt="a cat", seed=2**32 - 1), "Queued", jobs=1),
    "cutouts: beyond the server's limit": Case(imagine(prompt="a cat", cutouts=100), "at most 64 cutouts"),
    # ---- style and model
    "style: unknown": Case(imagine(prompt="a cat", style="nope"), "There is no style called “nope” here; pick one of:"),
    "style: markdown and a mention": Case(imagine(prompt="a cat", style="**x** <@&123456789012345678>"),
                                          "There is no style called", typed="**x** <@&123456789012345678>"),
    "style: a path": Case(imagine(prompt="a cat", style="../../etc/passwd"), "There is no style called"),
    "style: a known one in capitals": Case(imagine(prompt="a cat", style=" GHIBLI "), "Queued", jobs=1),
    "model: not installed": Case(imagine(prompt="a cat", model="gpt-5"),
                                 "The model gpt-5 is not installed; choose one of: tiny-vqgan."),
    "model: a path": Case(imagine(prompt="a cat", model="../../models/evil.ckpt"), "is not installed"),
    "model: a masked link": Case(imagine(prompt="a cat", model="[x](https://evil.example)"), "is not installed",
                                 typed="[x](https://evil.example)"),
    # ---- attachments
    "init image: a text file": Case(imagine(prompt="a cat", init_image=("notes.txt", b"hello there")),
                                    "The init image " + NOT_A_PICTURE),
    "init image: PNG by name, JPEG inside": Case(imagine(prompt="a cat", init_image=("cat.png", picture("JPEG"))),
                                                 "Queued", jobs=1, then=upload_typed_by_content),
    "init image: JPEG by name, HTML inside": Case(imagine(prompt="a cat", init_image=("cat.jpg", HTML)),
                                                  "The init image " + NOT_A_PICTURE),
    "init image: SVG": Case(imagine(prompt="a cat", init_image=("cat.svg", SVG)), "The init image " + NOT_A_PICTURE),
    "init image: TIFF": Case(imagine(prompt="a cat", init_image=("cat.tiff", picture("TIFF"))),
                             "The init image " + NOT_A_PICTURE),
    "init image: 5000x5000 pixels": Case(imagine(prompt="a cat", init_image=("big.png", huge_png(5000, 5000))),
                                         "The init image is 5000x5000 pixels; use a picture under 16 megapixels."),
    "init image: truncated PNG": Case(imagine(prompt="a cat", init_image=("cut.png", small_png()[:60])),
                                      "The init image " + NOT_A_PICTURE),
    "init image: zero bytes": Case(imagine(prompt="a cat", init_image=("empty.png", b"")),
                                   "The init image " + NOT_A_PICTURE),
    "init image: a path as its name": Case(imagine(prompt="a cat", init_image=("../../etc/passwd.png", small_png())),
                                           "Queued", jobs=1, then=upload_stored_by_content),
    "init image: markdown and mentions in its name": Case(
        imagine(prompt="a cat", init_image=("**x** @everyone <@&123456789012345678>.png", small_png())),
        "Queued", jobs=1, typed="**x** @everyone <@&123456789012345678>.png", then=upload_stored_by_content),
    "image prompt: 50 MiB": Case(imagine(prompt="a cat", image_prompt=("big.png", b"\0" * (50 * 2**20))),
                                 "The image prompt is 50 MiB; upload a picture under 8 MiB."),
    "image prompt: an animated GIF": Case(imagine(prompt="a cat", image_prompt=("cat.gif", picture("GIF", frames=3))),
                                          "Queued", jobs=1),
    # ---- reactions and buttons from others
    "cancel reaction by another member": Case(reaction(REACT_CANCEL), ONLY_OWNER, jobs=1, then=job_one_still_waits),
    "continue reaction by another member on a waiting card": Case(reaction(REACT_CONTINUE),
                                                  "Job #1 has no finished picture to continue from.", jobs=1),
    "rerun reaction by another member: a rerun of their own": Case(reaction(REACT_RERUN, on_result=True),
                                                                   f"{OTHER_MEMBERS_JOB} · ⏳ Queued", jobs=2,
                                                                   then=rerun_belongs_to_the_reactor),
    "cancel reaction by a bot": Case(reaction(REACT_CANCEL, by="bot"), None, jobs=1, then=job_one_still_waits),
    "thumbs-up reaction by another member": Case(reaction("👍"), None, jobs=1),
    "cancel reaction on a message that is no job's": Case(react_on_someone_elses_message, None),
    "Cancel button by another member": Case(button(cancel_on_alices_card), ONLY_OWNER, jobs=1,
                                            then=job_one_still_waits),
    "Cancel button by an admin of another server's job": Case(button(another_servers_job, by="admin"),
                                                              "Job #1 no longer exists.", jobs=1,
                                                              then=job_one_still_waits),
    "Cancel button of a job that is gone": Case(button("vq:cancel:999"), "Job #999 no longer exists."),
    "forged button: unknown action": Case(button("vq:delete:1"), UNKNOWN_BUTTON),
    "forged button: not a number": Case(button("vq:cancel:abc"), UNKNOWN_BUTTON),
    "forged button: 20 digits": Case(button("vq:cancel:99999999999999999999"), UNKNOWN_BUTTON),
    "forged button: job zero": Case(button("vq:cancel:0"), UNKNOWN_BUTTON),
    "forged button: markdown": Case(button("**<@&123456789012345678>**"), UNKNOWN_BUTTON),
    # ---- /config values
    "config max_steps: negative": Case(config("set", key="max_steps", value="-5"),
                                       "max_steps must be between 1 and 10000, got -5."),
    "config max_steps: huge": Case(config("set", key="max_steps", value="1e308"), "must be between 1 and 10000"),
    "config max_steps: beyond float": Case(config("set", key="max_steps", value="1e999"),
                                           "max_steps must be a whole number, got '1e999'."),
    "config max_steps: NaN": Case(config("set", key="max_steps", value="nan"), "max_steps must be a whole number"),
    "config max_steps: words": Case(config("set", key="max_steps", value="lots"), "max_steps must be a whole number"),
    "config max_steps: a fraction": Case(config("set", key="max_steps", value="10.5"), "must be a whole number"),
    "config max_steps: nothing": Case(config("set", key="max_steps", value=""), "must be a whole number"),
    "config cooldown_s: negative": Case(config("set", key="cooldown_s", value="-1"), "cooldown_s must be between 0"),
    "config reactions_enabled: maybe": Case(config("set", key="reactions_enabled", value="maybe"),
                                            "reactions_enabled must be true or false, got 'maybe'."),
    "config: unknown key": Case(config("set", key="max_stepz", value="5"),
                                "There is no setting called 'max_stepz'. Valid settings: max_steps"),
    "config: a dunder key": Case(config("set", key="__class__", value="5"), "There is no setting called"),
    "config banned_words: markdown and mentions, accepted": Case(
        config("set", key="banned_words", value="**x** <@&123456789012345678> @everyone"), "is now",
        typed="**x** <@&123456789012345678> @everyone"),
    "config banned_words: an entry of 101 characters": Case(config("set", key="banned_words", value="x" * 101),
                                                            "entries must be text of 1 to 100 characters."),
    "config allowed_channels: words": Case(config("set", key="allowed_channels", value="general"),
                                           "allowed_channels must list Discord ids"),
    "config allowed_channels: a channel mention, accepted": Case(
        config("set", key="allowed_channels", value="<#123456789012345678>"), "is now"),
    "config style-set: a path as the name": Case(config("style-set", name="../etc", text="a"),
                                                 "A style name is 1 to 32 letters, digits, '-' or '_'"),
    "config style-set: a masked link as the text, accepted": Case(
        config("style-set", name="evil", text="[free nitro](https://evil.example)"), "is now",
        typed="[free nitro](https://evil.example)"),
    "config style-delete: a style that does not exist": Case(config("style-delete", name="nope"),
                                                             "There is no style called 'nope' in this server; /config styles lists its styles."),
    "config ban: only spaces": Case(config("ban", word="   "), "entries must be text of 1 to 100 characters."),
    "config ban: a broken character": Case(config("ban", word="\udfff"), "not text I can read"),
}


@pytest.fixture
def world(simcord_env, store, tiny_engine):
    return build_world(simcord_env, store, tiny_engine)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_hostile_input_gets_the_answer_a_member_needs(world, case):
    env = world.env
    if case.expect == DISCORD_REFUSES:
        with pytest.raises(OptionError):
            await case.act(world)
        answer = None
    else:
        answer = await case.act(world)
        if case.expect is None:
            assert answer is None, f"expected no answer, got {answer!r}"
        else:
            assert answer is not None, "no answer at all"
            assert case.expect in shown(answer), answer
    await env.settle()
    jobs = [job for i in range(1, 10) if (job := await world.store.get(i)) is not None]
    assert len(jobs) == case.jobs, [j.prompt for j in jobs]
    assert "Something went wrong" not in (answer or "")
    assert env.errors == []  # nothing failed inside the bot, answered or not
    assert unwanted_pings(env.http_requests, {job.user_id for job in jobs}) == []
    if case.typed:
        assert markup_problems(env.http_requests, one_line(case.typed)) == []
    assert all_problems(env.http_requests) == []
    if case.then is not None:
        await case.then(world)

"""User text shows as the characters typed and as nothing else: no markdown, links, mentions,
timestamps or emoji, wherever the bot shows it (cards, results, /queue, /history, refusals,
/config answers, autocomplete). Checked on the requests the bot sent, with a model of Discord's
rendering (tests/bot/rendering.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.bot.discord_spec import all_problems
from tests.bot.finishing import finish_next
from tests.bot.rendering import markup_problems, markup_where_shown, one_line, shown
from tests.bot.world import build_world, delivery_of

NASTY = {  # id: text a member might type
    "masked link": "[free nitro](https://evil.example)",
    "bare link": "free nitro at https://evil.example/login",
    "autolink": "<https://evil.example>",
    "invite": "join discord.gg/evil now",
    "user mention": "<@123456789012345678>",
    "nickname mention": "<@!123456789012345678>",
    "role mention": "<@&123456789012345678>",
    "everyone": "@everyone look",
    "here": "@here look",
    "channel mention": "<#123456789012345678>",
    "command mention": "</imagine:123456789012345678>",
    "timestamp": "<t:1700000000:R>",
    "custom emoji": "<:kek:123456789012345678>",
    "animated emoji": "<a:kek:123456789012345678>",
    "bold and italics": "**bold** and *italic*",
    "underline": "__underlined__ and _this_",
    "strikethrough": "~~struck~~",
    "inline code": "`code`",
    "code fence": "```py print(1)```",
    "header": "# Big header",
    "subtext": "-# small print",
    "block quote": "> quoted",
    "multi-line quote": ">>> everything after",
    "list": "- item",
    "numbered list": "1. first",
    "trailing backslash": "a cat \\",
    "already escaped": "\\*not bold\\*",
    "new line then header": "a cat\n# big",
    "bidi override": "a cat \u202eevil",
}
ADMIN_NASTY = {  # admins type these into /config: the same, plus spoilers (prompts split on "|")
    **{k: v for k, v in NASTY.items() if "\n" not in v},
    "spoiler": "||secret||",
    "pipes": "a ||| b",
}


@pytest.fixture
def world(simcord_env, store, tiny_engine):
    return build_world(simcord_env, store, tiny_engine)


def assert_plain(world, display: str, *answers: str) -> None:
    for answer in answers:
        assert display in shown(answer), f"{display!r} is not shown as typed in {answer!r}"
        assert markup_where_shown(answer, display) == Counter(), answer
    problems = markup_problems(world.env.http_requests, display)
    assert problems == [], "\n".join(problems)
    assert all_problems(world.env.http_requests) == []


@pytest.mark.parametrize("text", NASTY.values(), ids=NASTY.keys())
async def test_a_prompt_shows_as_typed_on_its_card_result_queue_and_history(world, text):
    card = await world.alice.slash(world.channel, "imagine", prompt=text)
    job = await world.store.get(1)
    assert job is not None, card.response.content
    display = one_line(job.prompt)
    queue = await world.alice.slash(world.channel, "queue")
    history = await world.alice.slash(world.channel, "history")
    await finish_next(world.store)
    await delivery_of(world.env.bot).run_pass()
    result = world.messages()[-1]
    assert result.attachments, "no result was posted"
    assert_plain(world, display, card.response.embeds[0].title, queue.response.content,
                 history.response.content, result.content)


@pytest.mark.parametrize("text", NASTY.values(), ids=NASTY.keys())
async def test_a_refusal_quotes_the_users_text_as_typed(world, text):
    display = one_line(text)
    weightless = await world.alice.slash(world.channel, "imagine", prompt=f"{text}:0")
    no_style = await world.alice.slash(world.channel, "imagine", prompt="a cat", style=text)
    no_model = await world.alice.slash(world.channel, "imagine", prompt="a cat", model=text)
    answers = [r.response.content for r in (weightless, no_style, no_model)]
    assert "has weight 0" in shown(answers[0])
    assert "There is no style called" in shown(answers[1])
    assert "is not installed" in shown(answers[2])
    assert_plain(world, display, *answers)
    assert await world.store.get(1) is None


@pytest.mark.parametrize("text", ADMIN_NASTY.values(), ids=ADMIN_NASTY.keys())
async def test_admins_text_shows_as_typed_in_config_answers_and_autocomplete(world, text):
    display = one_line(text)
    style = await world.admin.slash(world.channel, "config style-set", name="nasty", text=text)
    styles = await world.admin.slash(world.channel, "config styles")
    banned = await world.admin.slash(world.channel, "config ban", word=text)
    models = await world.admin.slash(world.channel, "config set", key="allowed_models", value=text)
    show = await world.admin.slash(world.channel, "config show")
    audit = await world.admin.slash(world.channel, "config audit")
    assert_plain(world, display, *(r.response.content for r in (style, styles, banned, models, show, audit)))
    choices = await world.alice.autocomplete(world.channel, "imagine", "style", "nasty", prompt="a cat")
    names = [c["name"] if isinstance(c, dict) else c.name for c in choices]
    assert one_line(f"nasty: {text}")[:100] in names  # choice names show verbatim, so nothing is escaped

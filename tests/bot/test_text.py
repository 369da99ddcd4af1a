"""bot.text.plain on strings built from every markdown-significant piece: they show as typed and
render as nothing, at any length limit, also inside the bot's own markup."""

from __future__ import annotations

import random

import pytest

from bot.text import ZWSP, join_lines, label, plain
from tests.bot.rendering import live, markup_where_shown, one_line, shown

PIECES = [*"*_~`|<>[]()#-+.:@!/\\ \n\tabcdeht019&", "https://", "everyone", "here", "discord.gg/", "<t:",
          "\u202e", ZWSP, "<@", "<@&", "<#", "</", "<:", "1. ", "-# ", ">>> ", "```", "||", "\ud800"]


def nasty_strings(seed: int, count: int = 2000) -> list[str]:
    rnd = random.Random(seed)
    return ["".join(rnd.choice(PIECES) for _ in range(rnd.randint(0, 30))) for _ in range(count)]


def typed(text: str) -> str:
    """What a reader should see of ``text``: one line, and a broken character as U+FFFD."""
    return one_line(text.replace("\ud800", "\ufffd")).replace(ZWSP, "")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_text_shows_as_typed_and_renders_as_nothing(seed):
    for text in nasty_strings(seed):
        out = plain(text)
        assert shown(out) == typed(text), repr(text)
        assert not live(out), (repr(text), live(out))


@pytest.mark.parametrize("limit", [5, 12, 40, 256])
def test_shortened_text_stays_within_its_limit_and_inert(limit):
    for text in nasty_strings(limit, 500):
        out = plain(text, limit)
        assert len(out) <= limit and not live(out), repr(text)
        assert typed(text).startswith(shown(out).removesuffix("…").rstrip()), repr(text)


def test_text_inside_the_bots_own_bold_stays_text():
    for text in nasty_strings(4, 500):
        display = typed(text)
        if display:
            assert markup_where_shown(f"<@1> here is **{plain(text)}**", display) == {}, repr(text)


def test_labels_are_one_short_line_shown_verbatim():
    assert label("a **cat**\n| <@1>") == "a **cat** | <@1>"
    assert len(label("x" * 300)) == 100 and label("   ") == "…"


def test_long_answers_keep_whole_lines_and_say_how_many_were_left_out():
    text = join_lines([f"line {i} " + "x" * 90 for i in range(40)], limit=2000)
    assert len(text) <= 2000 and text.endswith("more") and all(len(line) < 120 for line in text.split("\n"))

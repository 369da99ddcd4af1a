"""The README pictures' HTML pages (docs/message_page.py): hostile text shows as typed and adds no
markup, the bot's own markdown shows as Discord shows it, pictures come only from the message's
own attachments. No Chromium needed: docs/render_pictures.py makes the screenshots."""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import discord

from bot.cards import render_result
from bot.grid_cards import grid_view, render_grid_card
from db import JobState
from docs.message_page import Attachment, ShownMessage, message_page
from tests.bot.pictures import SVG, small_png
from tests.bot.test_card_lines import job

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
HOSTILE = ('<script>alert(1)</script> @everyone <@&5> **bold** _it_ [free nitro](https://evil.example) '
           '<img src=x onerror=alert(2)> `code` &amp; "quoted" \'single\' \\ -# small')
ALICE = 100
NAMES = {ALICE: "alice"}
TAGS = {"html", "head", "meta", "style", "body", "div", "span", "b", "img"}
ATTRIBUTES = {"charset", "http-equiv", "content", "class", "style", "alt", "src"}


class Page(HTMLParser):
    """The tags, attributes and visible text of a page."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[str] = []
        self.in_style = False
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self.in_style = False

    def handle_data(self, data: str) -> None:
        if not self.in_style:
            self.texts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts).replace("\u200b", "")

    def classes(self, name: str) -> list[str]:
        return [str(attrs.get("class")) for _tag, attrs in self.tags if name in str(attrs.get("class", "")).split()]

    def problems(self) -> list[str]:
        """Markup the page's own builder would never write."""
        found = []
        for tag, attrs in self.tags:
            if tag not in TAGS:
                found.append(f"tag <{tag}>")
            found += [f"attribute {name}= on <{tag}>" for name in attrs if name not in ATTRIBUTES]
            src = attrs.get("src")
            if src is not None and not src.startswith(("data:image/png;", "data:image/webp;")):
                found.append(f"picture from {src[:40]!r}")
            style = attrs.get("style")
            if tag != "style" and style is not None and not style.startswith("border-left-color: #"):
                found.append(f"style {style!r}")
        return found


def shown(card: Any, *, author: str = "vqbot", attachments: tuple[Attachment, ...] = ()) -> ShownMessage:
    """A bot renderer's JobMessage as Discord would hold it."""
    return ShownMessage(author=author, created_at=NOW, content=card.content or "",
                        embeds=[card.embed.to_dict()] if card.embed else [],
                        components=card.view.to_components() if card.view else [],
                        attachments=attachments, names=NAMES)


def finished_grid(prompt: str) -> list[Any]:
    return [job(id=i, group_id=1, prompt=prompt, state=JobState.SUCCEEDED, step=500, seed=6 + i, gpu_seconds=2.0,
                user_id=ALICE) for i in (1, 2, 3, 4)]


def test_a_hostile_prompt_on_a_grid_shows_as_typed_and_adds_no_markup() -> None:
    jobs = finished_grid(HOSTILE)
    picture = discord.File(io.BytesIO(small_png()), filename="grid.png")
    card = render_grid_card(jobs, image=picture, mention=True)
    page = Page(message_page(shown(card, attachments=(Attachment("grid.png", small_png()),))))
    assert page.problems() == []
    assert page.text.count(HOSTILE) == 2  # the title and the content, each exactly as typed
    assert [t for t in page.texts if "@" in t and "everyone" not in t] == ["@alice", "@alice"]  # the owner only
    assert len(page.classes("mention")) == 2 and page.classes("link") == []
    assert page.classes("subtext") == []  # "-# small" is not at a line's start and stays text
    assert len(page.classes("button")) == 9 and len([t for t, a in page.tags if t == "img"]) == 1


def test_raw_hostile_text_in_every_place_is_escaped() -> None:
    button = {"type": 2, "style": 2, "label": HOSTILE, "emoji": {"name": "<b>x</b>"}, "custom_id": "vq:rerun:1"}
    message = ShownMessage(
        author=HOSTILE, created_at=NOW, content=HOSTILE, command=(HOSTILE, HOSTILE), names={ALICE: HOSTILE},
        embeds=[{"title": HOSTILE, "description": f"{HOSTILE}\n-# {HOSTILE} <@{ALICE}>", "color": "red;x:y",
                 "fields": [{"name": HOSTILE, "value": HOSTILE, "inline": True}], "footer": {"text": HOSTILE},
                 "image": {"url": f"attachment://{HOSTILE}"}}],
        components=[{"type": 1, "components": [button, {**button, "style": '"><script>'}]}],
        attachments=[Attachment(HOSTILE, SVG), Attachment("a.html", b"<script>alert(3)</script>")])
    html = message_page(message)
    page = Page(html)
    assert page.problems() == []
    assert "<script" not in html.lower() and "onerror=" not in html.replace("onerror=alert(2)&gt;", "")
    assert "<script>alert(1)</script>" in page.text and "<b>x</b>" in page.text and "a.html" in page.text
    assert page.classes("link") != [] and all(attrs.get("href") is None for _t, attrs in page.tags)  # inert


def test_the_bots_markdown_shows_as_discord_shows_it() -> None:
    at = int((NOW + timedelta(seconds=4)).timestamp())
    message = ShownMessage(author="vqbot", created_at=NOW, names=NAMES,
                           content=f"<@{ALICE}> here is **a \\*starry\\* night**\n-# 64x64 · done <t:{at}:R>")
    html = message_page(message)
    assert '<span class="mention">@alice</span> here is <b>a *starry* night</b>' in html
    assert '<div class="subtext">64x64 · done <span class="stamp">in 4 seconds</span></div>' in html
    later = message_page(dataclasses.replace(message, seen_at=NOW + timedelta(minutes=2)))
    assert "1 minute ago" in later


def test_pictures_come_only_from_the_messages_own_attachments() -> None:
    result = render_result(job(state=JobState.SUCCEEDED, user_id=ALICE),
                           [discord.File(io.BytesIO(small_png()), filename="result.png")])
    page = Page(message_page(shown(result, attachments=(Attachment("result.png", small_png()),))))
    assert [a["src"][:22] for t, a in page.tags if t == "img"] == ["data:image/png;base64,"]
    foreign = ShownMessage(author="vqbot", created_at=NOW, embeds=[{"image": {"url": "https://evil.example/x.png"}}],
                           attachments=[Attachment("x.svg", SVG)])
    assert [t for t, _a in Page(message_page(foreign)).tags if t == "img"] == []


def test_a_used_button_shows_green() -> None:
    jobs = finished_grid("a pear")
    view = grid_view(jobs, used=frozenset({"vq:upscale:2"}))
    assert view is not None
    html = message_page(dataclasses.replace(shown(render_grid_card(jobs)), components=view.to_components()))
    assert Page(html).classes("success") == ["button success"]
    assert '<div class="button success">U2</div>' in html and '<div class="button secondary">U1</div>' in html

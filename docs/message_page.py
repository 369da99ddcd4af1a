"""One Discord message as a small HTML page in Discord's dark theme, for the README's pictures.

A pure function of the message as Discord holds it (content, embeds and components in Discord's
own JSON form, attachments as bytes): :func:`message_page`. docs/render_pictures.py captures
the messages from the simulated Discord and screenshots the pages with headless Chromium.

Every piece of text, whoever wrote it, leaves here through :func:`html.escape`; the only markup
is the page's own. The inline markdown the bot uses is shown as Discord shows it (backslash
escapes, ``**bold**``, ``-#`` subtext, mentions, timestamps, masked links as link-coloured text
without a target); everything else is text. Pictures are inline ``data:`` URLs of the message's
own attachments (PNG, JPEG, WebP, GIF by their bytes), never a URL from the message, and the
page's Content-Security-Policy allows no script and no other source.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

BUTTON_STYLES = {1: "primary", 2: "secondary", 3: "success", 4: "danger", 5: "secondary"}
PICTURE_TYPES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))

# One inline construct of Discord's markdown, tried left to right; anything else is text.
INLINE = re.compile(
    r"\\(?P<escaped>[!-/:-@\[-`{-~])"
    r"|<@!?(?P<user>\d+)>|<@&(?P<role>\d+)>|<#(?P<channel>\d+)>"
    r"|<t:(?P<time>-?\d{1,12})(?::(?P<style>[tTdDfFR]))?>"
    r"|\*\*(?P<bold>(?:\\.|[^\\*]|\*(?!\*))+?)\*\*"
    r"|\[(?P<text>(?:\\.|[^\\\]\n])+)\]\((?P<url>https?://[^\s)]+)\)",
    re.DOTALL,
)
SUBTEXT = re.compile(r"^-# (?P<rest>.*)$")

PAGE_STYLE = """
* { box-sizing: border-box; }
body { margin: 0; background: #313338; color: #dbdee1; font: 15px/1.375 "gg sans", "Noto Sans", "Liberation Sans", "DejaVu Sans", sans-serif; }
.message { display: flex; gap: 16px; padding: 12px 16px 16px; }
.avatar { flex: none; width: 40px; height: 40px; border-radius: 50%; background: #5865f2; color: #fff;
  font-weight: 700; font-size: 18px; display: flex; align-items: center; justify-content: center; }
.body { min-width: 0; flex: 1; }
.used { color: #b5bac1; font-size: 13px; margin-bottom: 2px; }
.used b { color: #c9cdfb; font-weight: 500; }
.author { color: #f2f3f5; font-weight: 600; }
.tag { background: #5865f2; color: #fff; font-size: 10px; font-weight: 700; border-radius: 3px;
  padding: 1px 4px; margin-left: 4px; vertical-align: 2px; }
.time { color: #949ba4; font-size: 12px; margin-left: 6px; }
.ephemeral { color: #949ba4; font-size: 12px; margin-top: 4px; }
.content { white-space: pre-wrap; overflow-wrap: anywhere; }
.subtext { color: #949ba4; font-size: 12.5px; }
.mention { background: rgba(88, 101, 242, .3); color: #c9cdfb; border-radius: 3px; padding: 0 2px; font-weight: 500; }
.stamp { background: rgba(255, 255, 255, .06); border-radius: 3px; padding: 0 2px; }
.link { color: #00a8fc; }
.embed { margin-top: 6px; max-width: 432px; background: #2b2d31; border-left: 4px solid #1e1f22;
  border-radius: 4px; padding: 8px 16px 16px 12px; }
.embed-title { color: #f2f3f5; font-weight: 600; margin-top: 8px; overflow-wrap: anywhere; }
.embed-description { margin-top: 8px; font-size: 14px; white-space: pre-wrap; overflow-wrap: anywhere; }
.fields { display: flex; flex-wrap: wrap; gap: 8px 16px; margin-top: 8px; }
.field { flex: 1 1 100%; min-width: 0; font-size: 14px; }
.field.inline { flex: 1 1 28%; }
.field-name { color: #f2f3f5; font-weight: 600; margin-bottom: 2px; overflow-wrap: anywhere; }
.field-value { white-space: pre-wrap; overflow-wrap: anywhere; }
.picture { display: block; margin-top: 16px; width: 300px; border-radius: 4px; image-rendering: pixelated; }
.attachment { display: block; margin-top: 6px; width: 300px; border-radius: 8px; image-rendering: pixelated; }
.file { margin-top: 6px; display: inline-block; background: #2b2d31; border-radius: 8px; padding: 10px 14px; }
.footer { margin-top: 8px; color: #b5bac1; font-size: 12px; overflow-wrap: anywhere; }
.row { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 8px; }
.button { color: #fff; border-radius: 3px; padding: 2px 16px; min-height: 32px; min-width: 60px; font-size: 14px;
  font-weight: 500; display: flex; align-items: center; justify-content: center; gap: 4px; }
.button.primary { background: #5865f2; } .button.secondary { background: #4e5058; }
.button.success { background: #248046; } .button.danger { background: #da373c; }
.button.disabled { opacity: .5; }
"""
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass(frozen=True)
class Attachment:
    filename: str
    data: bytes


@dataclass(frozen=True)
class ShownMessage:
    """A message as Discord holds it: ``embeds`` and ``components`` in Discord's JSON form
    (``discord.Embed.to_dict()``, action rows of buttons)."""

    author: str
    created_at: datetime
    content: str = ""
    embeds: Sequence[Mapping[str, Any]] = ()
    components: Sequence[Mapping[str, Any]] = ()
    attachments: Sequence[Attachment] = ()
    bot: bool = True
    ephemeral: bool = False
    command: tuple[str, str] | None = None
    """(who, command name) when the message answers a slash command: "alice used /imagine"."""
    names: Mapping[int, str] = field(default_factory=dict)
    """Display names of the users, roles and channels its mentions name, by id."""
    seen_at: datetime | None = None
    """When it was looked at: what relative timestamps count from (its own time if None)."""


def picture_type(data: bytes) -> str | None:
    """The MIME type of a picture the page may show, from its bytes; None for anything else."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in PICTURE_TYPES if data.startswith(magic)), None)


def data_url(data: bytes) -> str | None:
    kind = picture_type(data)
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}" if kind else None


def relative_time(when: datetime, now: datetime) -> str:
    seconds = round((when - now).total_seconds())
    size = abs(seconds)
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if size >= length or unit == "second":
            count = size // length
            words = f"{count} {unit}{'' if count == 1 else 's'}"
            return f"in {words}" if seconds >= 0 else f"{words} ago"
    raise AssertionError("unreachable")


def timestamp(value: int, style: str | None, now: datetime) -> str:
    when = datetime.fromtimestamp(value, UTC)
    if style == "R":
        return relative_time(when, now)
    formats = {"t": "%H:%M", "T": "%H:%M:%S", "d": "%d/%m/%Y", "D": "%d %B %Y", "F": "%A, %d %B %Y %H:%M"}
    return when.strftime(formats.get(style or "f", "%d %B %Y %H:%M"))


def inline(text: str, names: Mapping[int, str], now: datetime) -> str:
    """``text``'s inline markdown as HTML; every character of ``text`` is escaped."""
    out: list[str] = []
    last = 0
    for match in INLINE.finditer(text):
        out.append(escape(text[last:match.start()]))
        last = match.end()
        if match["escaped"] is not None:
            out.append(escape(match["escaped"]))
        elif match["user"] is not None:
            out.append(f'<span class="mention">@{escape(names.get(int(match["user"]), "unknown-user"))}</span>')
        elif match["role"] is not None:
            out.append(f'<span class="mention">@{escape(names.get(int(match["role"]), "unknown-role"))}</span>')
        elif match["channel"] is not None:
            out.append(f'<span class="mention">#{escape(names.get(int(match["channel"]), "unknown"))}</span>')
        elif match["time"] is not None:
            out.append(f'<span class="stamp">{escape(timestamp(int(match["time"]), match["style"], now))}</span>')
        elif match["bold"] is not None:
            out.append(f"<b>{inline(match['bold'], names, now)}</b>")
        elif match["text"] is not None:
            out.append(f'<span class="link">{inline(match["text"], names, now)}</span>')
        else:  # every alternative of INLINE is one of the above
            raise AssertionError(match.group(0))
    out.append(escape(text[last:]))
    return "".join(out)


def markdown(text: str, names: Mapping[int, str], now: datetime) -> str:
    """Lines of ``text`` as HTML: ``-# `` lines as subtext, the rest inline markdown."""
    lines = []
    for line in text.split("\n"):
        sub = SUBTEXT.match(line)
        if sub:
            lines.append(f'<div class="subtext">{inline(sub["rest"], names, now)}</div>')
        else:
            lines.append(f"<div>{inline(line, names, now) or '&nbsp;'}</div>")
    return "".join(lines)


def colour(value: object) -> str:
    return f"#{value:06x}" if isinstance(value, int) and 0 <= value <= 0xFFFFFF else "#1e1f22"


def attachment_url(url: object, attachments: Sequence[Attachment]) -> str | None:
    """The data URL of the attachment an ``attachment://NAME`` URL names; None for any other URL."""
    if not isinstance(url, str) or not url.startswith("attachment://"):
        return None
    name = url.removeprefix("attachment://")
    found = next((a for a in attachments if a.filename == name), None)
    return data_url(found.data) if found else None


def embed_html(embed: Mapping[str, Any], message: ShownMessage, now: datetime) -> str:
    names = message.names
    parts = [f'<div class="embed" style="border-left-color: {colour(embed.get("color"))}">']
    if embed.get("title"):
        parts.append(f'<div class="embed-title">{inline(str(embed["title"]), names, now)}</div>')
    if embed.get("description"):
        parts.append(f'<div class="embed-description">{markdown(str(embed["description"]), names, now)}</div>')
    fields = [f for f in embed.get("fields", ()) if isinstance(f, Mapping)]
    if fields:
        parts.append('<div class="fields">')
        for item in fields:
            kind = "field inline" if item.get("inline") else "field"
            parts.append(f'<div class="{kind}"><div class="field-name">{inline(str(item.get("name", "")), names, now)}'
                         f'</div><div class="field-value">{markdown(str(item.get("value", "")), names, now)}</div></div>')
        parts.append("</div>")
    image = embed.get("image")
    url = attachment_url(image.get("url"), message.attachments) if isinstance(image, Mapping) else None
    if url:
        parts.append(f'<img class="picture" alt="" src="{escape(url)}">')
    footer = embed.get("footer")
    if isinstance(footer, Mapping) and footer.get("text"):
        parts.append(f'<div class="footer">{escape(str(footer["text"]))}</div>')
    parts.append("</div>")
    return "".join(parts)


def shown_in_embeds(message: ShownMessage) -> set[str]:
    """The filenames the message's embeds show (Discord shows those attachments only there)."""
    urls = {embed.get("image", {}).get("url") for embed in message.embeds if isinstance(embed.get("image"), Mapping)}
    return {url.removeprefix("attachment://") for url in urls if isinstance(url, str)}


def button_html(button: Mapping[str, Any]) -> str:
    style = BUTTON_STYLES.get(button.get("style"), "secondary")  # type: ignore[arg-type]
    disabled = " disabled" if button.get("disabled") else ""
    emoji = button.get("emoji")
    shown = escape(str(emoji.get("name", ""))) if isinstance(emoji, Mapping) else ""
    label = escape(str(button.get("label") or ""))
    return f'<div class="button {style}{disabled}">{shown}{" " if shown and label else ""}{label}</div>'


def components_html(rows: Sequence[Mapping[str, Any]]) -> str:
    out = []
    for row in rows:
        buttons = [c for c in row.get("components", ()) if isinstance(c, Mapping) and c.get("type") == 2]
        if buttons:
            out.append('<div class="row">' + "".join(button_html(b) for b in buttons) + "</div>")
    return "".join(out)


def message_page(message: ShownMessage, *, now: datetime | None = None) -> str:
    """The whole page for ``message`` (``now``: what relative timestamps count from; when it
    was seen, else its own time, by default)."""
    now = now or message.seen_at or message.created_at
    author = escape(message.author)
    parts = ['<!doctype html><html><head><meta charset="utf-8">',
             f'<meta http-equiv="Content-Security-Policy" content="{escape(POLICY)}">',
             f"<style>{PAGE_STYLE}</style></head><body><div class=\"message\">",
             f'<div class="avatar">{escape(message.author[:1].upper())}</div><div class="body">']
    if message.command:
        who, name = message.command
        parts.append(f'<div class="used"><b>{escape(who)}</b> used <b>/{escape(name)}</b></div>')
    tag = '<span class="tag">APP</span>' if message.bot else ""
    parts.append(f'<div><span class="author">{author}</span>{tag}'
                 f'<span class="time">Today at {message.created_at:%H:%M}</span></div>')
    if message.content:
        parts.append(f'<div class="content">{markdown(message.content, message.names, now)}</div>')
    for embed in message.embeds:
        parts.append(embed_html(embed, message, now))
    in_embeds = shown_in_embeds(message)
    for item in message.attachments:
        if item.filename in in_embeds:
            continue
        url = data_url(item.data)
        if url:
            parts.append(f'<img class="attachment" alt="" src="{escape(url)}">')
        else:
            parts.append(f'<div class="file">{escape(item.filename)}</div>')
    parts.append(components_html(message.components))
    if message.ephemeral:
        parts.append('<div class="ephemeral">Only you can see this</div>')
    parts.append("</div></div></body></html>")
    return "".join(parts)

"""How Discord would render what the bot sent: what a reader sees, what is live markup, who is pinged.

A model of Discord's message markdown written from its documented rules (not from bot/text.py):
a backslash before ASCII punctuation shows that character literally; a zero-width space splits
a construct; everything else below is live.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")  # \ before ASCII punctuation: the character itself
ZWSP = "\u200b"

# Inline constructs anywhere, line constructs at the start of a line.
LIVE: dict[str, re.Pattern[str]] = {
    "masked link": re.compile(r"\[[^\]\n]*\]\(\s*<?[^)\s]+>?\s*\)"),
    "link": re.compile(r"(?i)[a-z][a-z0-9+.-]*://[^\s<]"),
    "invite": re.compile(r"(?i)discord(?:app)?\.(?:gg|com/invite)/\w"),
    "user or role mention": re.compile(r"<@[!&]?\d+>"),
    "channel mention": re.compile(r"<#\d+>"),
    "command mention": re.compile(r"</[\w -]+:\d+>"),
    "timestamp": re.compile(r"<t:-?\d+(?::[tTdDfFR])?>"),
    "custom emoji": re.compile(r"<a?:\w+:\d+>"),
    "everyone or here": re.compile(r"@(?:everyone|here)"),
    "bold or italics": re.compile(r"\*"),
    "underline or italics": re.compile(r"_"),
    "strikethrough": re.compile(r"~~"),
    "spoiler": re.compile(r"\|\|"),
    "code": re.compile(r"`"),
    "header": re.compile(r"(?m)^[ \t]*#{1,3}[ \t]"),
    "subtext": re.compile(r"(?m)^[ \t]*-#[ \t]"),
    "block quote": re.compile(r"(?m)^[ \t]*>"),
    "list": re.compile(r"(?m)^[ \t]*(?:[-*+]|\d+\.)[ \t]"),
}


def shown(text: str) -> str:
    """What a reader sees: escapes resolved, zero-width spaces invisible."""
    return ESCAPED.sub(r"\1", text).replace(ZWSP, "")


def live(text: str) -> Counter[str]:
    """How many of each live construct ``text`` holds (escaped characters take part in none)."""
    inert = ESCAPED.sub("\x00", text)
    return Counter({name: n for name, rx in LIVE.items() if (n := len(rx.findall(inert)))})


def _shown_with_origin(raw: str) -> tuple[str, list[int]]:
    """``shown(raw)`` and, for each of its characters, where it came from in ``raw``."""
    out: list[str] = []
    origin: list[int] = []
    i = 0
    while i < len(raw):
        escape = ESCAPED.match(raw, i)
        if escape:
            out.append(escape.group(1))
            origin.append(i)
            i = escape.end()
        elif raw[i] == ZWSP:
            i += 1
        else:
            out.append(raw[i])
            origin.append(i)
            i += 1
    return "".join(out), origin


def markup_where_shown(raw: str, display: str) -> Counter[str] | None:
    """The live constructs in the part of ``raw`` that shows ``display`` (None when ``raw`` does
    not show it). Line constructs count only where that part starts a line."""
    text, origin = _shown_with_origin(raw)
    at = text.find(display)
    if at < 0 or not display:
        return None
    end = at + len(display)
    start, stop = origin[at], origin[end] if end < len(origin) else len(raw)
    line_start = raw[raw.rfind("\n", 0, start) + 1:start].strip() == ""
    return live(("" if line_start else "\x00") + raw[start:stop])


def one_line(text: str) -> str:
    """``text`` as the bot shows user text: bidi controls gone, whitespace runs one space."""
    return " ".join(re.sub("[\u202a-\u202e\u2066-\u2069]", "", text).split())


def texts(body: Any) -> Iterator[str]:
    """Every piece of text a request shows: content, embed titles, descriptions, fields, footers,
    and the names of autocomplete choices (interaction callbacks nest them under ``data``)."""
    if not isinstance(body, dict):
        return
    data = body.get("data") if isinstance(body.get("data"), dict) else body
    if isinstance(data.get("content"), str):
        yield data["content"]
    for embed in data.get("embeds") or []:
        for key in ("title", "description"):
            if embed.get(key):
                yield embed[key]
        for field in embed.get("fields") or []:
            yield field.get("name", "")
            yield field.get("value", "")
        if embed.get("footer"):
            yield embed["footer"].get("text", "")
    for choice in data.get("choices") or []:
        yield choice["name"]


def shown_text(requests: list[Any]) -> str:
    """All the text of ``requests``, as readers see it, one piece a line."""
    return "\n".join(shown(t) for r in requests for t in texts(r.json))


def pingable(body: Any) -> set[str]:
    """Who the request lets Discord ping: "everyone", "users", "roles" (any named in the content),
    or "user:<id>" / "role:<id>" for the ones it lists. No ``allowed_mentions`` at all means
    Discord parses everything the content names."""
    if not isinstance(body, dict):
        return set()
    data = body.get("data") if isinstance(body.get("data"), dict) else body
    if not data.get("content"):
        return set()  # embeds and empty content never ping
    allowed = data.get("allowed_mentions")
    if allowed is None:
        return {"everyone", "users", "roles"}
    found = set(allowed.get("parse") or [])
    found |= {f"user:{int(u)}" for u in allowed.get("users") or []}
    found |= {f"role:{int(r)}" for r in allowed.get("roles") or []}
    return found


def unwanted_pings(requests: list[Any], owners: set[int]) -> list[str]:
    """Requests that could ping anyone but the given owners (as "METHOD path: what")."""
    allowed = {f"user:{o}" for o in owners}
    return [f"{r.method} {r.path}: {sorted(p - allowed)}" for r in requests if (p := pingable(r.json)) - allowed]


def markup_problems(requests: list[Any], display: str) -> list[str]:
    """Every piece of text the bot sent that shows ``display`` where it renders as more than text."""
    found = []
    for r in requests:
        for piece in texts(r.json):
            markup = markup_where_shown(piece, display)
            if markup:
                found.append(f"{r.method} {r.path}: {dict(markup)} in {piece!r}")
    return found

"""User text as Discord shows it: inert, readable, one line.

Everything a member (or an admin) typed, and every error sentence that quotes it, goes
through :func:`plain` before it reaches message content, an embed's title, description or
fields: prompts, style names and texts, banned words, /config values, the store's and the
prompt parser's refusals. The result renders as the same characters the user typed and as
nothing else: no markdown (bold, italics, underline, strike, spoilers, code, headers,
subtext, block quotes, lists), no masked or bare links (so no link previews either), no
mentions of users, roles, @everyone/@here, channels or slash commands, no timestamps or
custom emoji. Pings are stopped a second time by ``allowed_mentions`` (bot.mentions).

Where Discord shows text verbatim (autocomplete choice names), :func:`label` only makes it
one short line: backslashes would show there.
"""

from __future__ import annotations

import re
import unicodedata

ZWSP = "\u200b"  # zero-width space: splits a construct without changing what is shown
ELLIPSIS = "…"

# Line breaks and other whitespace runs become one space, so that no user text starts a
# line inside a message (headers, quotes and lists only count at the start of a line).
_SPACES = re.compile(r"\s+")
# Bidirectional overrides and isolates reorder what follows them on screen.
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
# Halves of a surrogate pair on their own are no text (they can't be encoded); shown as U+FFFD.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Backslash-escaped wherever they appear: Discord's markdown treats a backslash before any
# ASCII punctuation as "this character, literally". ``|`` only matters doubled (spoilers).
_MARKUP = re.compile(r"[\\*_~`<>\[\]#]|\|(?=\|)|(?<=\|)\|")
# Only at the start of the text: list markers ("- ", "+ ", "1. ").
_LIST_START = re.compile(r"^([-+])|^(\d+)\.")
# "scheme://..." is linked (and previewed) by Discord, even glued to other letters; a zero-width
# space in "://" keeps it readable and makes it text. Invite links are linked without a scheme.
_SCHEME = re.compile(r"://")
_INVITE = re.compile(r"(?i)(discord(?:app)?)\.(?=(?:gg|io|me|li|com)\b)")
_EVERYONE = re.compile(r"@(?=everyone|here|[!&]?\d)", re.IGNORECASE)


def one_line(text: str) -> str:
    """``text`` without control characters, bidi overrides or lone surrogates, its whitespace
    runs as one space."""
    text = _SURROGATE.sub("\ufffd", _BIDI.sub("", text))
    visible = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
    return _SPACES.sub(" ", visible).strip()


def _escape(text: str) -> str:
    text = _MARKUP.sub(lambda m: "\\" + m.group(0), text)
    text = _LIST_START.sub(lambda m: "\\" + m.group(1) if m.group(1) else m.group(2) + "\\.", text)
    text = _SCHEME.sub(":" + ZWSP + "//", text)
    text = _INVITE.sub(lambda m: m.group(1) + ZWSP + ".", text)
    return _EVERYONE.sub("@" + ZWSP, text)


def plain(text: object, limit: int | None = None) -> str:
    """``text`` made inert for message content and embeds, at most ``limit`` characters
    (cut with an ellipsis, never inside an escape)."""
    raw = one_line(str(text))
    shown = _escape(raw)
    if limit is None or len(shown) <= limit:
        return shown
    keep = min(len(raw), limit - 1)
    while keep > 0:
        shown = _escape(raw[:keep].rstrip())
        if len(shown) <= limit - 1:
            break
        keep -= max(1, (len(shown) - (limit - 1)) // 2)
    return (shown if keep > 0 else "") + ELLIPSIS


def label(text: object, limit: int = 100) -> str:
    """``text`` as one line of at most ``limit`` characters, for places Discord shows
    verbatim (autocomplete choice names); never empty."""
    line = one_line(str(text))
    if len(line) > limit:
        line = line[: limit - 1].rstrip() + ELLIPSIS
    return line or ELLIPSIS


def is_text(value: str) -> bool:
    """Whether ``value`` is text that can be stored and shown (no lone surrogates)."""
    return _SURROGATE.search(value) is None


def join_lines(lines: list[str], limit: int = 2000) -> str:
    """Lines joined for one message of at most ``limit`` characters: whole lines only, then
    a last line that says how many were left out. Each line must be shorter than ``limit``."""
    text = "\n".join(lines)
    if len(text) <= limit:
        return text
    reserve = len(f"… and {len(lines)} more")
    kept: list[str] = []
    used = 0
    for line in lines:
        if used + len(line) + 1 + reserve > limit:
            break
        kept.append(line)
        used += len(line) + 1
    return "\n".join([*kept, f"… and {len(lines) - len(kept)} more"])

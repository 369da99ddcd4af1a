"""Banned words and phrases, matched against prompts the way CLIP reads them.

Both sides are compared in ``jobspec.clip_text.fold``'s form, so other spellings of one word
(full-width letters, HTML entities, zero-width characters, accents, look-alike letters,
case) are the same word. What matches an entry:

- the whole word or phrase (``cat`` refuses ``a CAT.`` and ``ｃａｔ``, not ``category``);
  the punctuation between words doesn't matter (``black cat`` refuses ``black, cat``);
- spelled out with single letters (``c a t``, ``c.a.t``, ``c-a-t``), anywhere in the run
  of single letters (``a c a t``);
- inside a longer word only where the entry says so, with ``*`` at its start or end as in
  Discord's AutoMod: ``cat*`` refuses ``catgirl``, ``*cat`` refuses ``wildcat``,
  ``*cat*`` refuses both and ``concatenate``. Without ``*`` a word inside another never
  matches, so that banning ``ass`` does not refuse ``class``.

Not matched (CLIP reads them as other words): a word split between longer pieces
(``ca t``), digits for letters (``c4t``), misspellings and plurals (``catt``, ``cats``:
list them, or use ``cat*``). See docs/queue.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from jobspec.clip_text import fold

WILDCARD = "*"


def banned_entry(text: str) -> str:
    """An admin's banned word or phrase in the form it is stored and matched in: folded,
    with any ``*`` kept at its start and end. Raises ValueError if nothing is left."""
    bare = text.strip()
    before = WILDCARD if bare.startswith(WILDCARD) else ""
    after = WILDCARD if bare.endswith(WILDCARD) and len(bare) > 1 else ""
    words = fold(bare.strip(WILDCARD) if before or after else text)
    if not words:
        raise ValueError(f"{text!r} has no letters or digits to match")
    return f"{before}{words}{after}"


@dataclass(frozen=True)
class _Matcher:
    exact: frozenset[str]
    """Entries without ``*``: whole words or phrases."""
    lengths: frozenset[int]
    """How many words the entries in ``exact`` have."""
    partial: re.Pattern[str] | None
    """Entries with ``*``, as one pattern over the folded prompt."""
    compact: tuple[tuple[str, str], ...]
    """(entry, its letters without spaces) for runs of single letters."""


@lru_cache(maxsize=256)
def _matcher(entries: tuple[str, ...]) -> _Matcher:
    exact: set[str] = set()
    partial: list[str] = []
    compact: list[tuple[str, str]] = []
    for raw in entries:
        try:
            entry = banned_entry(raw)
        except ValueError:
            continue
        core = entry.strip(WILDCARD)
        compact.append((entry, core.replace(" ", "")))
        if entry == core:
            exact.add(entry)
            continue
        left = "" if entry.startswith(WILDCARD) else "(?<![^ ])"
        right = "" if entry.endswith(WILDCARD) else "(?![^ ])"
        partial.append(f"{left}{re.escape(core)}{right}")
    return _Matcher(
        exact=frozenset(exact),
        lengths=frozenset(entry.count(" ") + 1 for entry in exact),
        partial=re.compile("|".join(sorted(partial, key=len, reverse=True))) if partial else None,
        compact=tuple(compact),
    )


def find_banned(prompt: str, entries: tuple[str, ...]) -> str | None:
    """The first banned entry (in its stored form) that ``prompt`` contains, or None."""
    if not entries:
        return None
    matcher = _matcher(tuple(entries))
    words = fold(prompt).split()
    runs = _single_letter_runs(words)
    for candidate in (words, _joined(words, runs)):
        found = _find_exact(matcher, candidate) or _find_partial(matcher, candidate)
        if found:
            return found
    for start, end in runs:
        letters = "".join(words[start:end])
        for entry, compact in matcher.compact:
            if compact in letters:
                return entry
    return None


def _find_exact(matcher: _Matcher, words: list[str]) -> str | None:
    for start in range(len(words)):
        for length in matcher.lengths:
            phrase = " ".join(words[start : start + length])
            if phrase in matcher.exact:
                return phrase
    return None


def _find_partial(matcher: _Matcher, words: list[str]) -> str | None:
    if matcher.partial is None:
        return None
    match = matcher.partial.search(" ".join(words))
    if match is None:
        return None
    for entry, _ in matcher.compact:  # the entry whose core matched
        core = entry.strip(WILDCARD)
        if entry != core and match.group(0) == core:
            return entry
    return match.group(0)


def _single_letter_runs(words: list[str]) -> list[tuple[int, int]]:
    """(start, end) of each run of two or more one-character words: a spelled-out word."""
    runs: list[tuple[int, int]] = []
    start = None
    for index, word in enumerate([*words, ""]):
        if len(word) == 1:
            start = index if start is None else start
            continue
        if start is not None and index - start >= 2:
            runs.append((start, index))
        start = None
    return runs


def _joined(words: list[str], runs: list[tuple[int, int]]) -> list[str]:
    """``words`` with each run of single letters written as one word."""
    out: list[str] = []
    last = 0
    for start, end in runs:
        out += [*words[last:start], "".join(words[start:end])]
        last = end
    return out + words[last:]

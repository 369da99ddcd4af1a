"""A banned word is refused in every spelling CLIP reads as that word, and only there.

Each case sets one banned entry in a guild of a real store and submits one prompt; the
verdict is whether ``enqueue`` refuses it with LimitExceeded("banned_words").
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from db import InvalidInput, LimitExceeded, SqliteStore, Store
from tests.db.factories import new_job

REFUSED, ALLOWED = True, False

SPELLINGS = [
    # what CLIP's own cleaning makes the same word
    ("cat", "a cat on a mat", REFUSED),
    ("cat", "A CAT, LOUD", REFUSED),
    ("cat", "ｃａｔ", REFUSED),  # full-width
    ("cat", "ＣAT", REFUSED),
    ("cat", "&#99;at", REFUSED),  # decimal entity
    ("cat", "&#x63;at", REFUSED),  # hex entity
    ("cat", "&amp;#99;at", REFUSED),  # escaped twice: CLIP unescapes twice
    ("cat", "<b>cat</b>", REFUSED),
    # invisible characters inside the word
    ("cat", "c\u200bat", REFUSED),  # zero-width space
    ("cat", "c\u200dat", REFUSED),  # zero-width joiner
    ("cat", "c\u2060at", REFUSED),  # word joiner
    ("cat", "c\u00adat", REFUSED),  # soft hyphen
    ("cat", "c&shy;at", REFUSED),
    ("cat", "c&#8203;at", REFUSED),
    ("cat", "c\ufe0fat", REFUSED),  # variation selector
    ("cat", "c\u034fat", REFUSED),  # combining grapheme joiner
    ("cat", "c\U000e0020at", REFUSED),  # tag character
    ("cat", "c\u3164at", REFUSED),  # Hangul filler, a blank letter
    # combining marks and accents
    ("cat", "c\u0336a\u0336t\u0336", REFUSED),  # strike-through overlay
    ("cat", "c\u0301a\u0300t", REFUSED),
    ("cat", "ćàţ", REFUSED),
    ("café", "CAFE", REFUSED),
    ("ano", "feliz año", REFUSED),  # the price of ignoring accents: año reads as ano
    # compatibility forms and enclosed letters
    ("cat", "𝐜𝐚𝐭", REFUSED),  # mathematical bold
    ("cat", "𝔠𝔞𝔱", REFUSED),  # fraktur
    ("cat", "ⓒⓐⓣ", REFUSED),
    ("cat", "⒞⒜⒯", REFUSED),
    ("cat", "🅒🅐🅣", REFUSED),
    ("cat", "🇨🇦🇹", REFUSED),  # regional indicators
    ("cat", "ᶜᵃᵗ", REFUSED),
    ("cat", "ᴄᴀᴛ", REFUSED),  # small capitals
    ("straße", "STRASSE", REFUSED),
    # look-alike letters of other scripts
    ("cat", "cаt", REFUSED),  # Cyrillic а
    ("cat", "сat", REFUSED),  # Cyrillic с
    ("cat", "САТ", REFUSED),  # Cyrillic capitals only
    ("cat", "ϲαt", REFUSED),  # Greek lunate sigma and alpha
    ("xxx", "ХХХ", REFUSED),
    ("dom", "дом", ALLOWED),  # a Russian word (д has no Latin look-alike) stays Russian
    # spelled out, split by punctuation or spaces
    ("cat", "c.a.t", REFUSED),
    ("cat", "c a t", REFUSED),
    ("cat", "C_A_T", REFUSED),
    ("cat", "c-a-t", REFUSED),
    ("cat", "draw a c a t", REFUSED),
    ("cat", "cat's toy", REFUSED),
    ("cat", "cat9", REFUSED),
    ("black cat", "BLACK   Cat", REFUSED),
    ("black cat", "black, cat", REFUSED),
    ("black cat", "black c.a.t", REFUSED),
    ("black cat", "a black dog and a cat", ALLOWED),
    ("cat", "ca t", ALLOWED),  # CLIP reads "ca" and "t"
    ("cat", "c4t", ALLOWED),  # CLIP reads a digit
    # the word inside another word: only where the entry asks for it
    ("cat", "category", ALLOWED),
    ("cat", "concatenate", ALLOWED),
    ("cat", "scatter", ALLOWED),
    ("cat", "bobcat", ALLOWED),
    ("cat", "cats", ALLOWED),
    ("ass", "a glass of water in class", ALLOWED),
    ("gore", "gorgeous gorey temple", ALLOWED),
    ("cat*", "catgirl", REFUSED),
    ("cat*", "bobcat", ALLOWED),
    ("*cat", "wildcat", REFUSED),
    ("*cat", "catgirl", ALLOWED),
    ("*cat*", "concatenate", REFUSED),
    # the entry itself in another spelling
    ("ＣＡＴ", "a cat", REFUSED),
    ("c\u200bat", "a cat", REFUSED),
    ("Cаt", "a CAT", REFUSED),
]


@pytest.mark.parametrize(("entry", "prompt", "refused"), SPELLINGS)
async def test_banned_words_are_matched_as_clip_reads_them(
    limited: SqliteStore, entry: str, prompt: str, refused: bool
) -> None:
    await limited.set_setting(1, "banned_words", [entry], by_user=1)
    if refused:
        with pytest.raises(LimitExceeded) as refusal:
            await limited.enqueue(new_job(prompt=prompt))
        assert refusal.value.limit == "banned_words"
        assert await limited.queue(1) == []
    else:
        await limited.enqueue(new_job(prompt=prompt))


async def test_banned_words_are_stored_in_one_spelling(store: SqliteStore) -> None:
    settings = await store.set_setting(
        1, "banned_words", ["ＣＡＴ", "Cat", "c\u200bat", "Black  Cat!", " cat* ", "*Gore"], by_user=1
    )
    assert settings.banned_words == ("cat", "black cat", "cat*", "*gore")
    assert (await store.settings(1)).banned_words == settings.banned_words


@pytest.mark.parametrize("entry", ["\u200b", "!!!", "***", "&nbsp;", "\u0301"])
async def test_an_entry_without_letters_or_digits_is_refused(store: SqliteStore, entry: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        await store.set_setting(1, "banned_words", ["fine", entry], by_user=1)
    assert refused.value.field == "banned_words" and "no letters or digits" in str(refused.value)
    assert (await store.settings(1)).banned_words == ()


async def test_a_thousand_banned_words_still_find_the_one_in_a_long_prompt(
    limited: SqliteStore,
) -> None:
    words = [f"word{i}" for i in range(999)] + ["*dragon*"]
    await limited.set_setting(1, "banned_words", words, by_user=1)
    prompt = "a wooden banana temple in an underwater kingdom, " * 38
    with pytest.raises(LimitExceeded):
        await limited.enqueue(new_job(prompt=prompt + "snapdragons"))
    await limited.enqueue(new_job(prompt=prompt + "snapshots"))


async def test_a_stored_entry_this_version_refuses_does_not_unban_the_others(
    limited: Store, raw_sql: Callable[..., object]
) -> None:
    raw_sql(  # as an older vqbot stored them, verbatim
        "INSERT INTO guild_settings (guild_id, key, value) VALUES (1, 'banned_words', ?)",
        (json.dumps(["***", "ＣＡＴ", "\u200b"]),),
    )
    assert (await limited.settings(1)).banned_words == ("cat",)
    with pytest.raises(LimitExceeded):
        await limited.enqueue(new_job(prompt="a c.a.t"))

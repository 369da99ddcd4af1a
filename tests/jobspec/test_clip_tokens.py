"""jobspec.clip_text counts CLIP tokens exactly as open_clip's tokenizer makes them, and says
which end of a long prompt part CLIP does not read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import open_clip
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobspec import PromptError, parse_prompts
from jobspec.clip_text import CONTEXT_LENGTH, dropped_text, fold, token_count, token_ids

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = open_clip.tokenizer.SimpleTokenizer()
MARKER_IDS = frozenset(TOKENIZER.all_special_ids)  # <start_of_text>, <end_of_text>
LONG = (
    "a wooden banana temple in an underwater kingdom, painted by Hokusai, concept art, "
    "trending on artstation, unreal engine, 8K 3D, matte painting, tilt shift, storybook "
    "illustration, Studio Ghibli style, chalk art, cel shading, low poly, steampunk"
)
CORPUS = [
    "",
    "   \t\n ",
    "a wooden banana temple | trending on artstation",
    "Delicious chocolate bar made of spectral matter | ArtStation HD",
    "it's don't we'll they're I'd you've I'm IT'S",
    "it\u2019s curly \u201cquotes\u201d",  # ftfy straightens them
    "'ſ 'S 'T",  # contractions under IGNORECASE
    "café naïve résumé Ærøskøbing ĳssel ﬁne",
    "e\u0301 n\u0303 Zalgo: c\u0336a\u0336t\u0336 ̴̢̛̖͍̝",
    "猫と犬が遊んでいる 东京塔 한국어 문장 ภาษาไทย हिन्दी العربية עברית",
    "🐱🐶🦊 👨‍👩‍👧‍👦 🏳️‍🌈 🇯🇵 ✨✨✨",
    "ｆｕｌｌ－ｗｉｄｔｈ ＣＡＴ ①②③ ⅻ ½ ² 𝐛𝐨𝐥𝐝 ⓒⓐⓣ",
    "&amp; &lt;tag&gt; &#99;at &#x63;at &amp;amp;#99; &nbsp;x &bogus;",
    "punctuation!!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& (((])) {{}} ~~~",
    "1234567890 3.14159 1,000,000 0x1F 10^9",
    "zero\u200bwidth soft\u00adhyphen bidi\u202eoverride\u202c tag\U000e0061",
    "\x00\x01\x1b[31mred\x1b[0m\x7f control",
    "Ã©tÃ© mojibake â€œquoteâ€\x9d",
    "<start_of_text> <end_of_text> <END_OF_TEXT>x <|endoftext|>",
    "UPPER lower MiXeD İstanbul ǅemal ß ẞ",
    "a\ud800b lone surrogate",
    "x" * 500,
    "supercalifragilisticexpialidocious " * 30,
    LONG * 3,
    "🐱" * 100,
    "猫" * 300,
]


@pytest.mark.parametrize("text", CORPUS)
def test_token_ids_equal_open_clips(text: str) -> None:
    assert token_ids(text) == TOKENIZER.encode(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=120))
def test_token_ids_equal_open_clips_for_any_text(text: str) -> None:
    assert token_ids(text) == TOKENIZER.encode(text)


def test_a_part_within_the_context_drops_nothing() -> None:
    assert token_count(LONG) < CONTEXT_LENGTH - 2
    assert dropped_text(LONG) is None
    assert dropped_text("") is None


def test_the_part_open_clip_cuts_off_is_named_by_whole_words() -> None:
    text = LONG + ", " + LONG
    ids = TOKENIZER.encode(text)
    kept_by_clip = open_clip.tokenize([text])[0].tolist()  # start, 75 tokens, end
    assert kept_by_clip[1:-1] == ids[: CONTEXT_LENGTH - 2] and len(ids) > CONTEXT_LENGTH - 2
    dropped = dropped_text(text)
    assert dropped is not None and text.endswith(dropped) and not dropped[0].isspace()
    kept = text[: len(text) - len(dropped)]
    assert ids[: token_count(kept)] == token_ids(kept)  # what is kept, CLIP reads in full
    first_dropped_word = dropped.split()[0]
    assert token_count(kept + first_dropped_word) > CONTEXT_LENGTH - 2  # ...and not one word more


@pytest.mark.parametrize("context_length", [3, 10, 77, 100])
def test_dropped_text_follows_the_context_length(context_length: int) -> None:
    text = LONG * 2
    dropped = dropped_text(text, context_length)
    assert dropped is not None
    kept = text[: len(text) - len(dropped)]
    assert token_count(kept) <= context_length - 2 < token_count(kept + dropped.split()[0])


def test_a_first_word_longer_than_the_context_is_cut_inside() -> None:
    text = "🐱" * 100 + " and more"
    assert dropped_text(text) == "🐱" * 25 + " and more"


@pytest.mark.parametrize("text", CORPUS)
def test_folding_a_folded_text_changes_nothing(text: str) -> None:
    assert fold(fold(text)) == fold(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_folding_is_stable_for_any_text(text: str) -> None:
    folded = fold(text)
    assert fold(folded) == folded
    assert folded == folded.strip() and "  " not in folded


def test_jobspec_reads_clip_tokens_without_torch_or_open_clip() -> None:
    code = (
        "import sys; from jobspec.clip_text import dropped_text, token_count; "
        "assert token_count('a cat') == 2 and dropped_text('x ' * 80) == 'x ' * 5; "
        "loaded = {'torch', 'open_clip'} & set(sys.modules); assert not loaded, loaded"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def clip_reads_a_marker(text: str) -> bool:
    return not MARKER_IDS.isdisjoint(TOKENIZER.encode(text))


def refused_as_marker(prompt: str) -> bool:
    try:
        parse_prompts(prompt)
    except PromptError as exc:
        assert "which CLIP reads as a marker of where a text starts or ends" in str(exc), exc
        return True
    return False


@pytest.mark.parametrize(
    "prompt, marker",
    [
        ("a cat <end_of_text> a dog", True),
        ("a cat <START_OF_TEXT>", True),
        ("a cat&lt;End_Of_Text&gt;", True),  # HTML entities, unescaped by CLIP's cleaning
        ("a cat &amp;lt;end&lowbar;of&lowbar;text&amp;gt;:0.5", True),  # twice
        ("a cat ＜end_of_text＞", True),  # full-width brackets, made narrow by ftfy
        ("a cat!<end_of_text>", False),  # glued to a symbol: CLIP reads "!<" and words
        ("a cat <<end_of_text>", False),
        ("a cat <end of text>", False),
        ("a cat <|endoftext|>", False),  # Hugging Face's spelling, split at its "|"s
    ],
)
def test_a_prompt_is_refused_where_clip_reads_its_own_markers(prompt: str, marker: bool) -> None:
    assert clip_reads_a_marker(prompt) is marker
    assert refused_as_marker(prompt) is marker


MARKER_PIECES = ["<start_of_text>", "<end_of_text>", "<END_of_Text>", "&lt;", "&gt;", "&amp;", "&lowbar;",
                 "<", ">", "＜", "＞", "end", "_of_", "text", "start", "!", "'s", " ", "\u200b", "cat", "1"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(MARKER_PIECES), max_size=8).map("".join))
def test_a_prompt_is_refused_exactly_when_clip_reads_a_marker_in_it(text: str) -> None:
    prompt = "a " + text
    assert refused_as_marker(prompt) is clip_reads_a_marker(prompt)

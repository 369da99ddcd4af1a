"""What CLIP's text encoder reads of a prompt: its cleaning, its tokens, and the folded
form that banned words are matched in.

CLIP never sees a prompt as typed. open_clip's tokenizer first cleans it (``ftfy.fix_text``,
HTML entities unescaped twice, runs of whitespace collapsed, lower case), splits the result
into pieces (runs of letters, single digits, runs of other symbols, English contractions),
then encodes each piece with byte-level BPE: the piece's UTF-8 bytes, each written as one
printable character, merged pair by pair in the order of the merge list. CLIP reads 77
tokens, its start and end tokens included; the rest is cut off.

This module does the same in plain Python (``ftfy`` and ``regex``, which open_clip itself
uses; never torch or open_clip), reading the merge list from open_clip's installed data file
without importing open_clip. ``tests/jobspec/test_clip_tokens.py`` checks it against
open_clip's own tokenizer.

``fold`` is the form two texts are compared in when one must not hide a banned word: the
text as CLIP reads it, with the spellings that only look different (compatibility forms,
case, invisible characters, combining marks, look-alike letters) written one way.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

import ftfy
import regex

CONTEXT_LENGTH = 77
"""Tokens CLIP reads of one prompt part, its start and end tokens included."""
START, END = "<start_of_text>", "<end_of_text>"
VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
MERGES = 49152 - 256 - 2
"""How many of the file's merges CLIP's 49,408-token vocabulary uses (after 512 byte tokens)."""
END_OF_WORD = "</w>"

# open_clip's piece pattern: special tokens, contractions, letter runs, one digit, other runs.
_PIECE = regex.compile(
    rf"{START}|{END}|'s|'t|'re|'ve|'m|'ll|'d|\p{{L}}+|\p{{N}}|[^\s\p{{L}}\p{{N}}]+", regex.IGNORECASE
)
_WORD = regex.compile(r"\p{L}+|\p{N}+")


def clip_clean(text: str) -> str:
    """The text open_clip's tokenizer encodes: fixed by ftfy, entities unescaped twice,
    whitespace collapsed to single spaces, lower case."""
    return " ".join(_unescaped(text).split()).lower()


def _unescaped(text: str) -> str:
    return html.unescape(html.unescape(ftfy.fix_text(text)))


# --- byte-level BPE --------------------------------------------------------------------


@dataclass(frozen=True)
class _Vocabulary:
    byte_symbols: tuple[str, ...]
    """The printable character that stands for each byte value (index: the byte)."""
    ranks: dict[tuple[str, str], int]
    ids: dict[str, int]


def _byte_symbols() -> dict[int, str]:
    """Bytes that print as themselves keep their character; the others, in order, take the
    characters from U+0100 on. Insertion order is the order of CLIP's first 256 tokens."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    symbols = {byte: chr(byte) for byte in printable}
    spare = 256
    for byte in range(256):
        if byte not in symbols:
            symbols[byte] = chr(spare)
            spare += 1
    return symbols


def vocab_path() -> Path:
    """open_clip's merge list, found without importing open_clip (which imports torch)."""
    spec = importlib.util.find_spec("open_clip")
    folders = list(spec.submodule_search_locations or ()) if spec else []
    for folder in folders:
        path = Path(folder) / VOCAB_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"CLIP's token list {VOCAB_FILE} was not found; install open_clip_torch (a vqbot dependency)."
    )


@lru_cache(maxsize=1)
def _vocabulary() -> _Vocabulary:
    with gzip.open(vocab_path(), "rt", encoding="utf-8") as lines:
        next(lines)  # a version line
        merges = [tuple(line.split()) for _, line in zip(range(MERGES), lines, strict=False)]
    symbols = _byte_symbols()
    tokens = [*symbols.values(), *(s + END_OF_WORD for s in symbols.values())]
    tokens += ["".join(pair) for pair in merges] + [START, END]
    return _Vocabulary(
        byte_symbols=tuple(symbols[byte] for byte in range(256)),
        ranks={(a, b): rank for rank, (a, b) in enumerate(merges)},
        ids={token: index for index, token in enumerate(tokens)},
    )


@lru_cache(maxsize=65_536)
def _bpe(piece: str) -> tuple[str, ...]:
    """The BPE tokens of one piece: its bytes as symbols, the lowest-ranked adjacent pair
    merged everywhere (left to right) until no adjacent pair is in the merge list."""
    if piece in (START, END):
        return (piece,)
    vocab = _vocabulary()
    symbols = [vocab.byte_symbols[byte] for byte in piece.encode("utf-8")]
    symbols[-1] += END_OF_WORD
    ranks = vocab.ranks
    while len(symbols) > 1:
        pairs = {pair for pair in pairwise(symbols) if pair in ranks}
        if not pairs:
            break
        first, second = min(pairs, key=ranks.__getitem__)
        merged: list[str] = []
        i = 0
        while i < len(symbols):
            if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
                merged.append(first + second)
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return tuple(symbols)


def _pieces(text: str) -> list[str]:
    """The pieces open_clip's tokenizer splits one prompt part into (each becomes BPE tokens)."""
    return list(_PIECE.findall(clip_clean(text)))


def token_ids(text: str) -> list[int]:
    """CLIP's token ids for one prompt part, without the start and end tokens."""
    ids = _vocabulary().ids
    return [ids[token] for piece in _pieces(text) for token in _bpe(piece)]


def first_marker(text: str) -> str | None:
    """The first of CLIP's own markers (``START``, ``END``) that CLIP reads in one prompt part
    as a marker, not as words, or None. Typed in any case or as HTML entities (``&lt;END_OF_TEXT&gt;``),
    it is one to CLIP, and CLIP reads nothing of the part past an ``END``; glued to symbols
    before it (``!<end_of_text>``), it is only symbols and letters."""
    return next((piece for piece in _pieces(text) if piece in (START, END)), None)


def token_count(text: str) -> int:
    """How many tokens CLIP makes of one prompt part, not counting its start and end
    tokens: the part is read in full when this is at most ``CONTEXT_LENGTH - 2``."""
    return len(token_ids(text))


def dropped_text(text: str, context_length: int = CONTEXT_LENGTH) -> str | None:
    """The end of ``text`` (one prompt part, as written) that CLIP does not read, or None
    when it reads all of it.

    The answer starts at the first whitespace-separated word that CLIP does not read in
    full, so a user sees whole words; only when CLIP stops inside the first word does it
    start inside that word.
    """
    room = context_length - 2  # the start and end tokens
    if room < 1:
        raise ValueError(f"context_length must be at least 3, got {context_length}.")
    if token_count(text) <= room:
        return None
    words = [m.span() for m in regex.finditer(r"\S+", text)]
    # The first word whose end takes the count past ``room`` (counts only grow with words).
    low, high = 0, len(words) - 1
    while low < high:
        middle = (low + high) // 2
        if token_count(text[: words[middle][1]]) > room:
            high = middle
        else:
            low = middle + 1
    start, end = words[low]
    if low == 0:  # CLIP stops inside the first word: find where, character by character
        first, last = start + 1, end
        while first < last:
            middle = (first + last) // 2
            if token_count(text[:middle]) > room:
                last = middle
            else:
                first = middle + 1
        start = first - 1
    return text[start:]


# --- the folded form banned words are matched in -----------------------------------------

# Letters drawn as other letters that a word can't hold for any other reason.
_LATIN_LOOKALIKES = str.maketrans(
    "ıȷɑɡɩᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘꞯʀꜱᴛᴜᴠᴡʏᴢ",
    "ijagiabcdefghijklmnopqrstuvwyz",
)
# Cyrillic and Greek letters that look like Latin ones: capitals that look unlike their
# small letter, then small letters (a capital not listed is looked up by its small letter).
_CAPITAL_LOOKALIKES = dict(zip("ΗΜΝΥ", "hmny", strict=True))
_SMALL_LOOKALIKES = dict(
    zip(
        "аеорсухіјѕԁһԛԝьүӏпгкмтвнαβγεζηικνορτυχωμςϲ",
        "aeopcyxijsdhqwbylnrkmtbhabyeznikvoptuxwucc",
        strict=True,
    )
)


def _lookalike(ch: str) -> str | None:
    return _CAPITAL_LOOKALIKES.get(ch) or _SMALL_LOOKALIKES.get(ch) or _SMALL_LOOKALIKES.get(ch.casefold())


# Enclosed letters without a compatibility decomposition: negative circled and squared
# capitals, and the regional indicators that flags are made of.
_ENCLOSED = {
    base + offset: chr(ord("a") + offset)
    for base in (0x1F150, 0x1F170, 0x1F1E6)
    for offset in range(26)
}
# Letters that draw nothing (Hangul fillers), on top of categories Cf, Mn and Me.
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")


def _visible(text: str) -> str:
    """``text`` without format characters (zero-width, soft hyphen, bidi controls), combining
    marks (accents, strike-through overlays, variation selectors) and blank letters."""
    decomposed = unicodedata.normalize("NFD", text)
    kept = (
        ch
        for ch in decomposed
        if unicodedata.category(ch) not in ("Cf", "Mn", "Me") and ch not in _INVISIBLE_LETTERS
    )
    return unicodedata.normalize("NFC", "".join(kept))


def _unmasked(word: str) -> str:
    """A word with Cyrillic or Greek look-alikes written in Latin letters, when it mixes them
    with Latin letters or is made of look-alikes only; a word with any other Cyrillic or
    Greek letter is a real word of that script and stays as it is."""
    word = word.translate(_LATIN_LOOKALIKES)
    foreign = [ch for ch in word if not ch.isascii() and _script(ch) in ("CYRILLIC", "GREEK")]
    if not foreign:
        return word
    mixed = any(_script(ch) == "LATIN" for ch in word)
    if not mixed and not all(_lookalike(ch) for ch in foreign):
        return word
    return "".join(_lookalike(ch) or ch if ch in foreign else ch for ch in word)


def _script(ch: str) -> str:
    return unicodedata.name(ch, "").partition(" ")[0]


def fold(text: str) -> str:
    """``text`` as the words CLIP reads in it, in one spelling: lower-case words of letters
    or of digits, separated by single spaces (punctuation and symbols only separate words).

    On top of CLIP's own cleaning (ftfy, HTML entities unescaped twice: so ``ｃａｔ`` and
    ``&#99;at`` are ``cat`` to CLIP as well), it applies Unicode NFKC (``𝐜𝐚𝐭``, ``ⓒⓐⓣ``,
    ligatures), case folding, removes invisible characters and combining marks (``c\\u200bat``,
    ``c̶a̶t̶``, ``cát``), writes enclosed letters (``🅒🅐🅣``) and look-alike letters (Cyrillic
    ``а`` in ``cаt``, small capitals ``ᴄᴀᴛ``) as Latin ones. Pure: the same text always folds
    the same way, and folding a folded text changes nothing.
    """
    if not isinstance(text, str):
        raise TypeError(f"fold() needs text, got {type(text).__name__}")
    folded = _fold_once(text)
    # ftfy may read some folded text as mojibake and fix it again: fold to a fixed point, so
    # that a stored folded entry folds to itself. Letters, digits and spaces of ASCII are one.
    for _ in range(8):
        if folded.isascii():
            break
        again = _fold_once(folded)
        if again == folded:
            break
        folded = again
    return folded


def _fold_once(text: str) -> str:
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates: not letters
    text = unicodedata.normalize("NFKC", _unescaped(text)).translate(_ENCLOSED)
    words = (_unmasked(word) for word in _WORD.findall(_visible(text)))
    folded = (_visible(unicodedata.normalize("NFKC", word.casefold())) for word in words)
    return " ".join(" ".join(_WORD.findall(word)) for word in folded)

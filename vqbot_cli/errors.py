"""What the ``vqbot`` command prints when something is wrong: one safe line, never a traceback.

Everything shown comes from hostile places (argv, ``.env``, file names), so control
characters, bidirectional overrides and other invisible characters are shown escaped
(``\\x1b``), never sent to the terminal, and long values are cut.
"""

from __future__ import annotations

import unicodedata

MAX_LINE = 400  # characters of one error line
MAX_VALUE = 100  # characters of one quoted value inside a message

# Unicode categories never printed raw: controls, format characters (bidi overrides,
# zero-width), line/paragraph separators, surrogates (undecodable argv bytes), unassigned.
_HIDDEN = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}


class UsageError(ValueError):
    """Bad input the user can fix; ``str(error)`` is the sentence to show."""


class OutputError(Exception):
    """The picture was made but could not be written where asked; the message says where it went."""


def visible(text: str) -> str:
    """``text`` with every invisible or terminal-controlling character written as an escape."""
    out = []
    for char in text:
        if char == " " or unicodedata.category(char) not in _HIDDEN:
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)


def shown(value: object) -> str:
    """A value quoted for a message: visible, and cut in the middle to ``MAX_VALUE`` characters."""
    text = visible(str(value))
    if len(text) > MAX_VALUE:  # keep both ends: a path's file name, a number's size
        half = (MAX_VALUE - 1) // 2
        text = f"{text[:half]}…{text[-half:]}"
    return f"“{text}”"


def error_line(message: str) -> str:
    """The one line printed for an error: ``vqbot: error: <message>``, safe for a terminal."""
    text = " ".join(message.split()) if message.strip() else "unknown error"
    text = visible(text)
    if len(text) > MAX_LINE:
        text = text[: MAX_LINE - 1] + "…"
    return f"vqbot: error: {text}"

"""Per-guild settings: the registry that describes each key, and their values.

``SETTINGS`` is what the bot's /config builds its UI from: for each key its
kind, range, default and help text. ``GuildSettings`` holds one guild's
values (defaults unless an admin changed them). Style presets (name -> prompt
suffix) live here too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from db.banned import banned_entry
from db.checks import MAX_SNOWFLAKE, check_text, describe
from db.errors import InvalidInput, UnknownSetting

SettingValue = int | float | bool | tuple[str, ...] | tuple[int, ...]


class SettingKind(StrEnum):
    INT = "int"
    SECONDS = "seconds"
    BOOL = "bool"
    WORDS = "words"
    IDS = "ids"


@dataclass(frozen=True)
class Setting:
    """How one guild setting looks, what it accepts and what it means."""

    key: str
    kind: SettingKind
    help: str
    minimum: float | None = None
    maximum: float | None = None
    max_items: int = 200
    empty_means: str | None = None
    normalise: Callable[[str], str] | None = None
    """For text lists: the form each entry is stored and compared in (ValueError: unusable)."""

    def coerce(self, value: object) -> SettingValue:
        """The typed value for ``value`` (typed, or text as a user types it).

        Raises InvalidInput naming the key, the bad value and what is valid.
        """
        kind = self.kind
        if kind is SettingKind.BOOL:
            return _coerce_bool(self.key, value)
        if kind in (SettingKind.INT, SettingKind.SECONDS):
            number = _coerce_number(self.key, value, integer=kind is SettingKind.INT)
            if (self.minimum is not None and number < self.minimum) or (
                self.maximum is not None and number > self.maximum
            ):
                raise InvalidInput(
                    self.key,
                    f"{self.key} must be between {self.minimum:g} and {self.maximum:g}, "
                    f"got {number:g}.",
                )
            return number
        return _coerce_items(self, value)


def _coerce_bool(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else value
    if text in ("true", "yes", "on", "1", 1):
        return True
    if text in ("false", "no", "off", "0", 0):
        return False
    raise InvalidInput(key, f"{key} must be true or false, got {describe(value)}.")


def _coerce_number(key: str, value: object, *, integer: bool) -> int | float:
    """A finite number (whole if ``integer``) from a number or its text."""
    number = math.nan
    if isinstance(value, str) and len(value) <= MAX_NUMBER_CHARS:
        with contextlib.suppress(ValueError):
            number = float(value.strip())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # an int beyond float range
            number = float(value)
    if not math.isfinite(number) or (integer and number != int(number)):
        what = "a whole number" if integer else "a number"
        raise InvalidInput(key, f"{key} must be {what}, got {describe(value)}.")
    return int(number) if integer else number


_ITEM_SPLIT = re.compile(r"[,\n]+")
_ID_SPLIT = re.compile(r"[\s,<>#@&!]+")
MAX_ITEM_CHARS = 100
MAX_NUMBER_CHARS = 100


def _coerce_items(spec: Setting, value: object) -> tuple[Any, ...]:
    key, ids = spec.key, spec.kind is SettingKind.IDS
    if isinstance(value, str):
        check_text(key, value, most=spec.max_items * (MAX_ITEM_CHARS + 25))
        raw: list[Any] = [p for p in (_ID_SPLIT if ids else _ITEM_SPLIT).split(value) if p.strip()]
    elif isinstance(value, (list, tuple)):
        raw = list(value)
    else:
        raise InvalidInput(key, f"{key} must be a list or comma-separated text, got {describe(value)}.")
    if len(raw) > spec.max_items:
        raise InvalidInput(key, f"{key} holds at most {spec.max_items} entries, got {len(raw)}.")
    items: list[Any] = []
    for item in raw:
        item = _coerce_id(key, item) if ids else _coerce_word(spec, item)
        if item not in items:
            items.append(item)
    return tuple(items)


def _coerce_id(key: str, item: object) -> int:
    if isinstance(item, str) and item.strip().isascii() and item.strip().isdecimal():
        item = int(item.strip())
    if isinstance(item, bool) or not isinstance(item, int) or not 0 < item <= MAX_SNOWFLAKE:
        raise InvalidInput(key, f"{key} must list Discord ids, got {describe(item)}.")
    return item


def _coerce_word(spec: Setting, item: object) -> str:
    key = spec.key
    if not isinstance(item, str) or not item.strip() or len(item) > MAX_ITEM_CHARS:
        raise InvalidInput(key, f"{key} entries must be text of 1 to {MAX_ITEM_CHARS} characters.")
    word = check_text(key, item, most=MAX_ITEM_CHARS).strip()
    if spec.normalise is None:
        return word
    try:
        word = spec.normalise(word)
    except ValueError:
        raise InvalidInput(
            key, f"{key} entry {describe(item)} has no letters or digits to match; write the word itself."
        ) from None
    if len(word) > MAX_ITEM_CHARS:  # stored entries must pass this check again when read back
        raise InvalidInput(key, f"{key} entry {describe(item)} is too long once written out.")
    return word


@dataclass(frozen=True)
class GuildSettings:
    """One guild's settings. Field names are the keys of ``SETTINGS``."""

    max_steps: int = 500
    max_size: int = 512
    max_cutouts: int = 64
    allowed_models: tuple[str, ...] = ()
    max_queued_per_user: int = 8  # two grids of four candidates
    max_queued_per_guild: int = 25
    cooldown_s: float = 10.0
    gpu_budget_guild_s: float = 3600.0
    gpu_budget_user_s: float = 600.0
    allowed_channels: tuple[int, ...] = ()
    banned_words: tuple[str, ...] = ()
    reactions_enabled: bool = True
    buttons_enabled: bool = True
    grid_enabled: bool = True
    grid_size: int = 256
    grid_steps: int = 200

    def with_values(self, values: dict[str, object]) -> GuildSettings:
        """A copy with ``values`` (key -> typed or text value) coerced and applied."""
        changes: dict[str, Any] = {key: setting(key).coerce(value) for key, value in values.items()}
        return dataclasses.replace(self, **changes)


SETTINGS: dict[str, Setting] = {
    s.key: s
    for s in (
        Setting(
            "max_steps", SettingKind.INT, "Most optimisation steps a job may ask for.", 1, 10_000
        ),
        Setting(
            "max_size",
            SettingKind.INT,
            "Largest width or height of a picture, in pixels.",
            16,
            4096,
        ),
        Setting(
            "max_cutouts", SettingKind.INT, "Most cutouts per step a job may ask for.", 1, 1024
        ),
        Setting(
            "allowed_models",
            SettingKind.WORDS,
            "VQGAN models members may use.",
            empty_means="every model the workers offer",
        ),
        Setting(
            "max_queued_per_user",
            SettingKind.INT,
            "Most jobs one member may have waiting or running at once.",
            1,
            100_000,
        ),
        Setting(
            "max_queued_per_guild",
            SettingKind.INT,
            "Most jobs the whole server may have waiting or running at once.",
            1,
            1_000_000,
        ),
        Setting(
            "cooldown_s", SettingKind.SECONDS, "Seconds a member waits between two jobs.", 0, 86_400
        ),
        Setting(
            "gpu_budget_guild_s",
            SettingKind.SECONDS,
            "GPU seconds the server may use per UTC day (0: no limit).",
            0,
            86_400 * 64,
        ),
        Setting(
            "gpu_budget_user_s",
            SettingKind.SECONDS,
            "GPU seconds one member may use per UTC day in this server (0: no limit).",
            0,
            86_400 * 64,
        ),
        Setting(
            "allowed_channels",
            SettingKind.IDS,
            "Channels where members may start jobs.",
            empty_means="every channel",
        ),
        Setting(
            "banned_words",
            SettingKind.WORDS,
            "Words or phrases a prompt may not contain, in any spelling (case, accents, "
            "look-alike letters, spelled out); *word* also inside longer words.",
            max_items=1000,
            empty_means="nothing banned",
            normalise=banned_entry,
        ),
        Setting(
            "reactions_enabled", SettingKind.BOOL, "Whether reactions on job cards do anything."
        ),
        Setting("buttons_enabled", SettingKind.BOOL, "Whether job cards show buttons."),
        Setting(
            "grid_enabled",
            SettingKind.BOOL,
            "Whether /imagine makes four candidates in a 2x2 grid (true) or one picture (false).",
        ),
        Setting(
            "grid_size",
            SettingKind.INT,
            "Largest width or height of a grid's candidate, in pixels (upscale makes the full size).",
            16,
            4096,
        ),
        Setting(
            "grid_steps",
            SettingKind.INT,
            "Most optimisation steps of a grid's candidate (upscale runs the full steps).",
            1,
            10_000,
        ),
    )
}

assert list(SETTINGS) == [f.name for f in dataclasses.fields(GuildSettings)]


def setting(key: str) -> Setting:
    """The registry entry for ``key``; UnknownSetting lists the valid keys."""
    try:
        return SETTINGS[key]
    except (KeyError, TypeError):
        raise UnknownSetting(key if isinstance(key, str) else describe(key), list(SETTINGS)) from None


DEFAULT_STYLES: dict[str, str] = {
    "artstation": "trending on artstation",
    "concept-art": "concept art",
    "hokusai": "painting by Hokusai",
    "pixelart": "pixelart",
    "da-vinci": "sketch by Leonardo Da Vinci",
    "unreal": "unreal engine",
    "behance": "Behance HD",
    "ink": "ink drawing",
    "ghibli": "Studio Ghibli style",
    "watercolour": "watercolour",
    "chalk": "chalk art",
    "cel-shading": "cel shading",
    "low-poly": "low poly",
    "matte-painting": "matte painting",
    "pencil-sketch": "pencil sketch",
    "disney": "disney style",
    "steampunk": "steampunk",
    "storybook": "storybook illustration",
    "tilt-shift": "tilt shift",
    "8k-3d": "8K 3D",
    "artstation-hd": "ArtStation HD",
}

STYLE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
MAX_STYLE_CHARS = 200
MAX_STYLES = 100


def check_style_name(name: object) -> str:
    """The normalised (lower-case) style name, or InvalidInput."""
    normal = name.strip().lower() if isinstance(name, str) else ""
    if not STYLE_NAME.fullmatch(normal):
        raise InvalidInput(
            "style",
            f"A style name is 1 to 32 letters, digits, '-' or '_', got {describe(name)}. "
            "Pick another name.",
        )
    return normal


def check_style_text(text: object) -> str:
    clean = text.strip() if isinstance(text, str) else ""
    if not clean or len(clean) > MAX_STYLE_CHARS or "\x00" in clean:
        raise InvalidInput(
            "style_text", f"A style is 1 to {MAX_STYLE_CHARS} characters of prompt text."
        )
    return check_text("style_text", clean, most=MAX_STYLE_CHARS)


@dataclass(frozen=True)
class AuditEntry:
    """One change an admin made: ``key`` is a setting key or ``style:<name>``.

    ``old``/``new`` are the values before and after (None: the default, or
    no such style).
    """

    id: int
    guild_id: int
    user_id: int
    at: datetime
    key: str
    old: Any
    new: Any

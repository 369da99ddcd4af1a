"""Guild settings as every backend stores them: one JSON text per key, decoded with the registry.

Both backends keep a guild's changed settings as (key, JSON text) rows and audit
old and new values as JSON text, so a database moved from SQLite to PostgreSQL
reads back the same. Values a newer or older vqbot stored that this one refuses
are skipped with a warning, never an error: a guild's settings always load.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from db.errors import StoreError
from db.settings import SETTINGS, GuildSettings, SettingValue

log = logging.getLogger(__name__)


def encode_value(value: SettingValue | str | None) -> str | None:
    """A setting value (or a style text) as the JSON text a row holds; None stays None."""
    if value is None:
        return None
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def decode_value(key: str, text: str | None) -> SettingValue | str | None:
    """An audited value as the setting's type (tuples stay tuples); a style's text as text."""
    if text is None:
        return None
    value = json.loads(text)
    return SETTINGS[key].coerce(value) if key in SETTINGS else value


def apply_stored(defaults: GuildSettings, guild_id: int, rows: Iterable[tuple[str, str]]) -> GuildSettings:
    """``defaults`` with the guild's stored (key, JSON text) rows applied."""
    settings = defaults
    for key, text in rows:
        stored = json.loads(text)
        try:
            settings = settings.with_values({key: stored})
        except StoreError as exc:  # a key, range or entry this version no longer accepts
            usable = _usable_entries(key, stored)
            if usable is None:
                log.warning("guild %d: ignoring stored setting %s=%s (%s)", guild_id, key, text, exc)
                continue
            log.warning("guild %d: dropping stored %s entries this version refuses (%s)", guild_id, key, exc)
            settings = settings.with_values({key: usable})
    return settings


def _usable_entries(key: str, stored: object) -> list[object] | None:
    """The entries of a stored list that are valid alone (an old banned word without letters
    must not unban all the others), or None when the setting isn't a list this version has."""
    if key not in SETTINGS or not isinstance(stored, list):
        return None
    usable = []
    for entry in stored:
        try:
            SETTINGS[key].coerce([entry])
        except StoreError:
            continue
        usable.append(entry)
    return usable

"""Guild settings, style presets and the audit trail of their changes."""

from __future__ import annotations

import logging
import sqlite3

from db.clock import from_epoch
from db.errors import InvalidInput, UnknownSetting
from db.settings import DEFAULT_STYLES, MAX_STYLES, AuditEntry, GuildSettings, SettingValue
from db.sqlite.connection import write
from db.stored_settings import apply_stored, decode_value, encode_value

log = logging.getLogger(__name__)


def load_settings(
    conn: sqlite3.Connection, guild_id: int, defaults: GuildSettings
) -> GuildSettings:
    """The guild's settings: ``defaults`` with the guild's own values applied."""
    rows = conn.execute("SELECT key, value FROM guild_settings WHERE guild_id = ?", (guild_id,))
    return apply_stored(defaults, guild_id, ((key, value) for key, value in rows))


def set_setting(
    conn: sqlite3.Connection,
    guild_id: int,
    key: str,
    new_value: SettingValue | None,
    *,
    by_user: int,
    defaults: GuildSettings,
    now: float,
) -> GuildSettings:
    """Change one setting (None: back to the default) and record it in the audit trail."""
    with write(conn):
        before = load_settings(conn, guild_id, defaults)
        if new_value is None:
            conn.execute(
                "DELETE FROM guild_settings WHERE guild_id = ? AND key = ?", (guild_id, key)
            )
        else:
            conn.execute(
                "INSERT INTO guild_settings (guild_id, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (guild_id, key) DO UPDATE SET value = excluded.value",
                (guild_id, key, encode_value(new_value)),
            )
        after = load_settings(conn, guild_id, defaults)
        old, new = getattr(before, key), getattr(after, key)
        if old != new:
            _audit(conn, guild_id, by_user, now, key, old, new)
    if old != new:
        log.info("guild %d: user %d set %s from %r to %r", guild_id, by_user, key, old, new)
    return after


def load_styles(conn: sqlite3.Connection, guild_id: int) -> dict[str, str]:
    """Style name -> prompt suffix: the defaults, with the guild's changes applied."""
    styles = dict(DEFAULT_STYLES)
    for name, text in conn.execute(
        "SELECT name, text FROM guild_styles WHERE guild_id = ? ORDER BY name", (guild_id,)
    ):
        if text is None:
            styles.pop(name, None)
        else:
            styles[name] = text
    return styles


def set_style(
    conn: sqlite3.Connection, guild_id: int, name: str, text: str, *, by_user: int, now: float
) -> dict[str, str]:
    """Add or change a style preset; audited."""
    with write(conn):
        styles = load_styles(conn, guild_id)
        if name not in styles and len(styles) >= MAX_STYLES:
            raise InvalidInput(
                "style", f"This server already has {MAX_STYLES} styles. Delete one, then add yours."
            )
        old = styles.get(name)
        conn.execute(
            "INSERT INTO guild_styles (guild_id, name, text) VALUES (?, ?, ?) "
            "ON CONFLICT (guild_id, name) DO UPDATE SET text = excluded.text",
            (guild_id, name, text),
        )
        if old != text:
            _audit(conn, guild_id, by_user, now, f"style:{name}", old, text)
        styles[name] = text
    return styles


def delete_style(
    conn: sqlite3.Connection, guild_id: int, name: str, *, by_user: int, now: float
) -> dict[str, str]:
    """Remove a style preset (a default one is hidden in this guild); audited."""
    with write(conn):
        styles = load_styles(conn, guild_id)
        if name not in styles:
            raise UnknownSetting.style(name, sorted(styles))
        if name in DEFAULT_STYLES:
            conn.execute(
                "INSERT INTO guild_styles (guild_id, name, text) VALUES (?, ?, NULL) "
                "ON CONFLICT (guild_id, name) DO UPDATE SET text = NULL",
                (guild_id, name),
            )
        else:
            conn.execute(
                "DELETE FROM guild_styles WHERE guild_id = ? AND name = ?", (guild_id, name)
            )
        _audit(conn, guild_id, by_user, now, f"style:{name}", styles.pop(name), None)
    return styles


def load_audit(conn: sqlite3.Connection, guild_id: int, limit: int) -> list[AuditEntry]:
    """The guild's most recent changes, newest first."""
    rows = conn.execute(
        "SELECT id, guild_id, user_id, at, key, old, new FROM audit_log WHERE guild_id = ? "
        "ORDER BY id DESC LIMIT ?",
        (guild_id, limit),
    )
    return [
        AuditEntry(
            id=r["id"],
            guild_id=r["guild_id"],
            user_id=r["user_id"],
            at=from_epoch(r["at"]),  # type: ignore[arg-type]
            key=r["key"],
            old=decode_value(r["key"], r["old"]),
            new=decode_value(r["key"], r["new"]),
        )
        for r in rows
    ]


def _audit(
    conn: sqlite3.Connection,
    guild_id: int,
    by_user: int,
    now: float,
    key: str,
    old: SettingValue | str | None,
    new: SettingValue | str | None,
) -> None:
    conn.execute(
        "INSERT INTO audit_log (guild_id, user_id, at, key, old, new) VALUES (?, ?, ?, ?, ?, ?)",
        (guild_id, by_user, now, key, encode_value(old), encode_value(new)),
    )


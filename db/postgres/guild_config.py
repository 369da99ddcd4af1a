"""Guild settings, style presets and the audit trail of their changes, on PostgreSQL.

The values are stored as JSON text, as in SqliteStore, and decoded with the
same code (``db.stored_settings``). A change locks the guild's rows it replaces
(``ON CONFLICT ... DO UPDATE``), so two admins changing one setting at once
are applied one after the other, each audited with the value it replaced.
"""

from __future__ import annotations

import logging

from db.clock import from_epoch
from db.errors import InvalidInput, UnknownSetting
from db.postgres.connection import Tx
from db.settings import (
    DEFAULT_STYLES,
    MAX_STYLES,
    AuditEntry,
    GuildSettings,
    SettingValue,
)
from db.stored_settings import apply_stored, decode_value, encode_value

log = logging.getLogger(__name__)

# Serialises the configuration changes of one guild (transaction-scoped advisory lock).
GUILD_CONFIG_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('vqbot guild config', %s))"


async def load_settings(tx: Tx, guild_id: int, defaults: GuildSettings) -> GuildSettings:
    """The guild's settings: ``defaults`` with the guild's own values applied."""
    rows = await tx.all("SELECT key, value FROM guild_settings WHERE guild_id = %s", (guild_id,))
    return apply_stored(defaults, guild_id, ((row["key"], row["value"]) for row in rows))


async def set_setting(
    tx: Tx,
    guild_id: int,
    key: str,
    new_value: SettingValue | None,
    *,
    by_user: int,
    defaults: GuildSettings,
    now: float,
) -> GuildSettings:
    """Change one setting (None: back to the default) and record it in the audit trail."""
    await tx.run(GUILD_CONFIG_LOCK, (guild_id,))
    before = await load_settings(tx, guild_id, defaults)
    if new_value is None:
        await tx.run("DELETE FROM guild_settings WHERE guild_id = %s AND key = %s", (guild_id, key))
    else:
        await tx.run(
            "INSERT INTO guild_settings (guild_id, key, value) VALUES (%s, %s, %s) "
            "ON CONFLICT (guild_id, key) DO UPDATE SET value = excluded.value",
            (guild_id, key, encode_value(new_value)),
        )
    after = await load_settings(tx, guild_id, defaults)
    old, new = getattr(before, key), getattr(after, key)
    if old != new:
        await _audit(tx, guild_id, by_user, now, key, old, new)
        log.info("guild %d: user %d set %s from %r to %r", guild_id, by_user, key, old, new)
    return after


async def load_styles(tx: Tx, guild_id: int) -> dict[str, str]:
    """Style name -> prompt suffix: the defaults, with the guild's changes applied."""
    styles = dict(DEFAULT_STYLES)
    for row in await tx.all("SELECT name, text FROM guild_styles WHERE guild_id = %s ORDER BY name", (guild_id,)):
        if row["text"] is None:
            styles.pop(row["name"], None)
        else:
            styles[row["name"]] = row["text"]
    return styles


async def set_style(tx: Tx, guild_id: int, name: str, text: str, *, by_user: int, now: float) -> dict[str, str]:
    """Add or change a style preset; audited."""
    await tx.run(GUILD_CONFIG_LOCK, (guild_id,))
    styles = await load_styles(tx, guild_id)
    if name not in styles and len(styles) >= MAX_STYLES:
        raise InvalidInput("style", f"This server already has {MAX_STYLES} styles. Delete one, then add yours.")
    old = styles.get(name)
    await tx.run(
        "INSERT INTO guild_styles (guild_id, name, text) VALUES (%s, %s, %s) "
        "ON CONFLICT (guild_id, name) DO UPDATE SET text = excluded.text",
        (guild_id, name, text),
    )
    if old != text:
        await _audit(tx, guild_id, by_user, now, f"style:{name}", old, text)
    styles[name] = text
    return styles


async def delete_style(tx: Tx, guild_id: int, name: str, *, by_user: int, now: float) -> dict[str, str]:
    """Remove a style preset (a default one is hidden in this guild); audited."""
    await tx.run(GUILD_CONFIG_LOCK, (guild_id,))
    styles = await load_styles(tx, guild_id)
    if name not in styles:
        raise UnknownSetting.style(name, sorted(styles))
    if name in DEFAULT_STYLES:
        await tx.run(
            "INSERT INTO guild_styles (guild_id, name, text) VALUES (%s, %s, NULL) "
            "ON CONFLICT (guild_id, name) DO UPDATE SET text = NULL",
            (guild_id, name),
        )
    else:
        await tx.run("DELETE FROM guild_styles WHERE guild_id = %s AND name = %s", (guild_id, name))
    await _audit(tx, guild_id, by_user, now, f"style:{name}", styles.pop(name), None)
    return styles


async def load_audit(tx: Tx, guild_id: int, limit: int) -> list[AuditEntry]:
    """The guild's most recent changes, newest first."""
    rows = await tx.all(
        "SELECT id, guild_id, user_id, at, key, old, new FROM audit_log WHERE guild_id = %s "
        "ORDER BY id DESC LIMIT %s",
        (guild_id, limit),
    )
    entries = []
    for r in rows:
        at = from_epoch(r["at"])
        assert at is not None
        entries.append(
            AuditEntry(
                id=r["id"],
                guild_id=r["guild_id"],
                user_id=r["user_id"],
                at=at,
                key=r["key"],
                old=decode_value(r["key"], r["old"]),
                new=decode_value(r["key"], r["new"]),
            )
        )
    return entries


async def _audit(
    tx: Tx,
    guild_id: int,
    by_user: int,
    now: float,
    key: str,
    old: SettingValue | str | None,
    new: SettingValue | str | None,
) -> None:
    await tx.run(
        "INSERT INTO audit_log (guild_id, user_id, at, key, old, new) VALUES (%s, %s, %s, %s, %s, %s)",
        (guild_id, by_user, now, key, encode_value(old), encode_value(new)),
    )

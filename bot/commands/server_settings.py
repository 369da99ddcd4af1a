"""/config: an admin's view of the server's settings (db.GuildSettings): limits, the audit
trail, style presets and banned words (Manage Server only).

``default_permissions`` hides the group from members, but server owners can
override that per command, so every subcommand checks again at run time.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import mentions
from bot.permissions import is_admin
from bot.text import join_lines, label, plain
from db import SETTINGS, AuditEntry, InvalidInput, NotFound, Store
from db.banned import banned_entry

log = logging.getLogger(__name__)


VALUE_MAX = 300  # characters of one value shown in an answer


def show_value(value: object) -> str:
    """A setting's value as inert text (banned words and model names are admins' text)."""
    if isinstance(value, tuple):
        return plain(", ".join(map(str, value)), VALUE_MAX) if value else "(none)"
    return plain(value, VALUE_MAX)


def stored_form(word: str) -> str:
    """A banned word as the store keeps it (``db.banned.banned_entry``), so that two spellings of
    one word (``cat``, ``ＣＡＴ``) are one entry; as typed when it has no letters (the store refuses it)."""
    try:
        return banned_entry(word)
    except ValueError:
        return word


async def setting_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    typed = current.casefold()
    return [app_commands.Choice(name=label(k), value=k) for k in SETTINGS if typed in k][:25]


def guild_of(interaction: discord.Interaction) -> int:
    """The guild the command runs in (the group is guild-only, so there always is one)."""
    assert interaction.guild_id is not None
    return interaction.guild_id


@app_commands.default_permissions(manage_guild=True)
@app_commands.guild_only()
class ServerSettings(commands.GroupCog, group_name="config", group_description="Server limits, styles and banned words"):
    def __init__(self, store: Store) -> None:
        self.store = store

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        if is_admin(interaction.permissions):
            return True
        await interaction.response.send_message("You need the Manage Server permission to change vqbot's settings.",
                                                ephemeral=True)
        return False

    @app_commands.command(name="show", description="Every setting and its value")
    async def show(self, interaction: discord.Interaction) -> None:
        settings = await self.store.settings(guild_of(interaction))
        lines = []
        for key, spec in SETTINGS.items():
            value = getattr(settings, key)
            shown = show_value(value) if value != () or spec.empty_means is None else f"(empty: {spec.empty_means})"
            lines.append(f"`{key}` = {shown} · {spec.help}")
        await interaction.response.send_message(join_lines(lines), ephemeral=True)

    @app_commands.command(name="set", description="Change one setting")
    @app_commands.autocomplete(key=setting_autocomplete)
    async def set(self, interaction: discord.Interaction, key: str, value: app_commands.Range[str, 0, 1500]) -> None:
        try:
            await self.store.set_setting(guild_of(interaction), key, value, by_user=interaction.user.id)
        except InvalidInput as exc:
            await interaction.response.send_message(plain(exc), ephemeral=True)
            return
        settings = await self.store.settings(guild_of(interaction))
        log.info("guild %s: %s set %s", interaction.guild_id, interaction.user.id, key)
        await interaction.response.send_message(f"`{key}` is now {show_value(getattr(settings, key))}.", ephemeral=True)

    @app_commands.command(name="audit", description="Who changed what, newest first")
    async def audit(self, interaction: discord.Interaction) -> None:
        entries = await self.store.audit(guild_of(interaction))
        lines = [audit_line(e) for e in list(entries)[:20]] or ["No changes yet."]
        await interaction.response.send_message(join_lines(lines), ephemeral=True, allowed_mentions=mentions.NOBODY)

    @app_commands.command(name="styles", description="The style presets of this server")
    async def styles(self, interaction: discord.Interaction) -> None:
        styles = await self.store.styles(guild_of(interaction))
        lines = [f"**{plain(n)}**: {plain(t, VALUE_MAX)}" for n, t in sorted(styles.items())]
        await interaction.response.send_message(join_lines(lines) or "No styles.", ephemeral=True)

    @app_commands.command(name="style-set", description="Add or change a style preset")
    async def style_set(self, interaction: discord.Interaction, name: app_commands.Range[str, 1, 32],
                        text: app_commands.Range[str, 1, 200]) -> None:
        try:
            await self.store.set_style(guild_of(interaction), name, text, by_user=interaction.user.id)
        except InvalidInput as exc:
            await interaction.response.send_message(plain(exc), ephemeral=True)
            return
        await interaction.response.send_message(
            f"Style **{plain(name.strip().lower())}** is now “{plain(text, VALUE_MAX)}”.", ephemeral=True)

    @app_commands.command(name="style-delete", description="Remove a style preset")
    async def style_delete(self, interaction: discord.Interaction, name: str) -> None:
        try:
            await self.store.delete_style(guild_of(interaction), name, by_user=interaction.user.id)
        except (InvalidInput, NotFound) as exc:
            await interaction.response.send_message(plain(exc), ephemeral=True)
            return
        await interaction.response.send_message(f"Style **{plain(name.strip().lower())}** removed.", ephemeral=True)

    @app_commands.command(name="ban", description="Refuse prompts containing a word or phrase")
    async def ban(self, interaction: discord.Interaction, word: app_commands.Range[str, 1, 100]) -> None:
        await self._change_words(interaction, add=word.strip())

    @app_commands.command(name="unban", description="Allow a banned word or phrase again")
    async def unban(self, interaction: discord.Interaction, word: app_commands.Range[str, 1, 100]) -> None:
        await self._change_words(interaction, remove=word.strip())

    async def _change_words(self, interaction: discord.Interaction, *, add: str | None = None,
                            remove: str | None = None) -> None:
        settings = await self.store.settings(guild_of(interaction))
        gone = None if remove is None else stored_form(remove)
        words = [w for w in settings.banned_words if stored_form(w) != gone]
        if add is not None and stored_form(add) not in (stored_form(w) for w in words):
            words.append(add)
        try:
            await self.store.set_setting(guild_of(interaction), "banned_words", words, by_user=interaction.user.id)
        except InvalidInput as exc:
            await interaction.response.send_message(plain(exc), ephemeral=True)
            return
        await interaction.response.send_message(f"Banned words: {len(words)} (“{plain(add or remove, VALUE_MAX)}” "
                                                f"{'added' if add else 'removed'}).", ephemeral=True)


def audit_line(entry: AuditEntry) -> str:
    old = "default" if entry.old is None else show_value(entry.old)
    new = "default" if entry.new is None else show_value(entry.new)
    return f"{discord.utils.format_dt(entry.at, 'R')} <@{entry.user_id}> {plain(entry.key)}: {old} → {new}"

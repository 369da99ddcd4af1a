"""/config: guild limits, the audit trail, style presets and banned words (Manage Server only).

``default_permissions`` hides the group from members, but server owners can
override that per command, so every subcommand checks again at run time.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from db.errors import InvalidInput
from db.settings import SETTINGS, AuditEntry

if TYPE_CHECKING:
    from bot.client import VQBot

log = logging.getLogger(__name__)


def show_value(value: object) -> str:
    if isinstance(value, tuple):
        return ", ".join(map(str, value)) if value else "(none)"
    return str(value)


async def setting_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=k, value=k) for k in SETTINGS if current.casefold() in k][:25]


@app_commands.default_permissions(manage_guild=True)
@app_commands.guild_only()
class ConfigGroup(app_commands.Group, name="config", description="Server limits, styles and banned words"):
    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        perms = interaction.permissions
        if perms.manage_guild or perms.administrator:
            return True
        await interaction.response.send_message("You need the Manage Server permission to change vqbot's settings.",
                                                ephemeral=True)
        return False

    @app_commands.command(name="show", description="Every setting and its value")
    async def show(self, interaction: discord.Interaction) -> None:
        bot: VQBot = interaction.client  # type: ignore[assignment]
        settings = await bot.guild_settings(interaction.guild_id)  # type: ignore[arg-type]
        lines = []
        for key, spec in SETTINGS.items():
            value = getattr(settings, key)
            shown = show_value(value) if value != () or spec.empty_means is None else f"(empty: {spec.empty_means})"
            lines.append(f"`{key}` = {shown} · {spec.help}")
        await interaction.response.send_message("\n".join(lines)[:2000], ephemeral=True)

    @app_commands.command(name="set", description="Change one setting")
    @app_commands.autocomplete(key=setting_autocomplete)
    async def set(self, interaction: discord.Interaction, key: str, value: app_commands.Range[str, 0, 1500]) -> None:
        bot: VQBot = interaction.client  # type: ignore[assignment]
        try:
            await bot.store.set_setting(interaction.guild_id, key, value, by_user=interaction.user.id)
        except InvalidInput as exc:
            await interaction.response.send_message(str(exc), ephemeral=True)
            return
        settings = await bot.guild_settings(interaction.guild_id)  # type: ignore[arg-type]
        log.info("guild %s: %s set %s", interaction.guild_id, interaction.user.id, key)
        await interaction.response.send_message(f"`{key}` is now {show_value(getattr(settings, key))}.", ephemeral=True)

    @app_commands.command(name="audit", description="Who changed what, newest first")
    async def audit(self, interaction: discord.Interaction) -> None:
        bot: VQBot = interaction.client  # type: ignore[assignment]
        entries = await bot.store.audit(interaction.guild_id)
        lines = [audit_line(e) for e in list(entries)[:20]] or ["No changes yet."]
        await interaction.response.send_message("\n".join(lines)[:2000], ephemeral=True,
                                                allowed_mentions=discord.AllowedMentions.none())

    @app_commands.command(name="styles", description="The style presets of this server")
    async def styles(self, interaction: discord.Interaction) -> None:
        bot: VQBot = interaction.client  # type: ignore[assignment]
        styles = await bot.store.styles(interaction.guild_id)
        text = "\n".join(f"`{n}`: {t}" for n, t in sorted(styles.items())) or "No styles."
        await interaction.response.send_message(text[:2000], ephemeral=True)

    @app_commands.command(name="style-set", description="Add or change a style preset")
    async def style_set(self, interaction: discord.Interaction, name: app_commands.Range[str, 1, 32],
                        text: app_commands.Range[str, 1, 200]) -> None:
        bot: VQBot = interaction.client  # type: ignore[assignment]
        try:
            await bot.store.set_style(interaction.guild_id, name, text, by_user=interaction.user.id)
        except InvalidInput as exc:
            await interaction.response.send_message(str(exc), ephemeral=True)
            return
        await interaction.response.send_message(f"Style `{name.strip().lower()}` is now “{text.strip()}”.", ephemeral=True)

    @app_commands.command(name="style-delete", description="Remove a style preset")
    async def style_delete(self, interaction: discord.Interaction, name: str) -> None:
        bot: VQBot = interaction.client  # type: ignore[assignment]
        try:
            await bot.store.delete_style(interaction.guild_id, name, by_user=interaction.user.id)
        except InvalidInput as exc:
            await interaction.response.send_message(str(exc), ephemeral=True)
            return
        await interaction.response.send_message(f"Style `{name}` removed.", ephemeral=True)

    @app_commands.command(name="ban", description="Refuse prompts containing a word or phrase")
    async def ban(self, interaction: discord.Interaction, word: app_commands.Range[str, 1, 100]) -> None:
        await self._change_words(interaction, add=word.strip())

    @app_commands.command(name="unban", description="Allow a banned word or phrase again")
    async def unban(self, interaction: discord.Interaction, word: app_commands.Range[str, 1, 100]) -> None:
        await self._change_words(interaction, remove=word.strip())

    async def _change_words(self, interaction: discord.Interaction, *, add: str | None = None,
                            remove: str | None = None) -> None:
        bot: VQBot = interaction.client  # type: ignore[assignment]
        settings = await bot.guild_settings(interaction.guild_id)  # type: ignore[arg-type]
        words = [w for w in settings.banned_words if remove is None or w.casefold() != remove.casefold()]
        if add is not None and add.casefold() not in (w.casefold() for w in words):
            words.append(add)
        try:
            await bot.store.set_setting(interaction.guild_id, "banned_words", words, by_user=interaction.user.id)
        except InvalidInput as exc:
            await interaction.response.send_message(str(exc), ephemeral=True)
            return
        await interaction.response.send_message(f"Banned words: {len(words)} (“{add or remove}” "
                                                f"{'added' if add else 'removed'}).", ephemeral=True)


def audit_line(entry: AuditEntry) -> str:
    old = "default" if entry.old is None else show_value(entry.old)
    new = "default" if entry.new is None else show_value(entry.new)
    return f"{discord.utils.format_dt(entry.at, 'R')} <@{entry.user_id}> `{entry.key}`: {old} → {new}"

"""Guild settings and style presets: defaults, validated changes, an audit trail."""

from __future__ import annotations

import dataclasses

import pytest

from db import (
    DEFAULT_STYLES,
    SETTINGS,
    FakeClock,
    GuildSettings,
    InvalidInput,
    SettingKind,
    SqliteStore,
    UnknownSetting,
)


async def test_a_new_guild_has_the_default_settings(store: SqliteStore) -> None:
    assert await store.settings(42) == store.defaults


async def test_a_change_is_validated_applied_and_audited(
    store: SqliteStore, clock: FakeClock
) -> None:
    changed = await store.set_setting(1, "max_steps", "300", by_user=77)
    assert changed.max_steps == 300 and (await store.settings(1)).max_steps == 300
    assert (await store.settings(2)).max_steps == store.defaults.max_steps
    (entry,) = await store.audit(1)
    assert (entry.user_id, entry.key, entry.old, entry.new) == (77, "max_steps", 500, 300)
    assert entry.at == clock.now()


async def test_lists_parse_from_text_and_round_trip(store: SqliteStore) -> None:
    await store.set_setting(1, "allowed_channels", "<#123> <#456>", by_user=1)
    await store.set_setting(1, "banned_words", "gore, blood ,gore", by_user=1)
    settings = await store.settings(1)
    assert settings.allowed_channels == (123, 456) and settings.banned_words == ("gore", "blood")
    entries = await store.audit(1)
    assert entries[0].new == ("gore", "blood") and entries[1].new == (123, 456)


async def test_none_resets_a_setting_to_its_default(store: SqliteStore) -> None:
    await store.set_setting(1, "reactions_enabled", False, by_user=1)
    reset = await store.set_setting(1, "reactions_enabled", None, by_user=2)
    assert reset.reactions_enabled is True
    assert [(e.old, e.new) for e in await store.audit(1)] == [(False, True), (True, False)]


async def test_setting_the_same_value_records_nothing(store: SqliteStore) -> None:
    await store.set_setting(1, "max_size", store.defaults.max_size, by_user=1)
    assert await store.audit(1) == []


async def test_audit_is_newest_first_and_limited(store: SqliteStore) -> None:
    for steps in range(100, 105):
        await store.set_setting(1, "max_steps", steps, by_user=1)
    entries = await store.audit(1, limit=2)
    assert [e.new for e in entries] == [104, 103]


def test_every_setting_is_described_for_the_config_ui() -> None:
    fields = {f.name: f for f in dataclasses.fields(GuildSettings)}
    assert set(SETTINGS) == set(fields)
    for key, spec in SETTINGS.items():
        assert spec.help.endswith(")") or spec.help.endswith(".")
        default = fields[key].default
        assert spec.coerce(default) == default
        if spec.kind in (SettingKind.INT, SettingKind.SECONDS):
            assert spec.minimum is not None and spec.maximum is not None
            assert spec.minimum <= default <= spec.maximum


async def test_styles_start_from_the_defaults(store: SqliteStore) -> None:
    styles = await store.styles(1)
    assert styles == DEFAULT_STYLES and len(styles) == 21
    assert styles["hokusai"] == "painting by Hokusai" and styles["8k-3d"] == "8K 3D"


async def test_styles_can_be_added_changed_and_deleted_with_an_audit_trail(
    store: SqliteStore,
) -> None:
    await store.set_style(1, "Logo", "black-and-white | nature-lover", by_user=5)
    await store.set_style(1, "hokusai", "woodblock print by Hokusai", by_user=5)
    await store.delete_style(1, "pixelart", by_user=5)
    await store.delete_style(1, "logo", by_user=5)
    styles = await store.styles(1)
    assert "logo" not in styles and "pixelart" not in styles
    assert styles["hokusai"] == "woodblock print by Hokusai"
    assert await store.styles(2) == DEFAULT_STYLES
    assert [(e.key, e.old, e.new) for e in await store.audit(1)] == [
        ("style:logo", "black-and-white | nature-lover", None),
        ("style:pixelart", "pixelart", None),
        ("style:hokusai", "painting by Hokusai", "woodblock print by Hokusai"),
        ("style:logo", None, "black-and-white | nature-lover"),
    ]
    await store.set_style(1, "pixelart", "pixelart", by_user=5)  # a deleted default comes back
    assert (await store.styles(1))["pixelart"] == "pixelart"


@pytest.mark.parametrize(
    ("name", "text"),
    [("", "x"), ("two words", "x"), ("x" * 33, "x"), ("ok", ""), ("ok", "x" * 201)],
)
async def test_bad_style_names_and_texts_are_refused(
    store: SqliteStore, name: str, text: str
) -> None:
    with pytest.raises(InvalidInput):
        await store.set_style(1, name, text, by_user=5)
    assert await store.styles(1) == DEFAULT_STYLES


async def test_deleting_a_missing_style_is_refused_as_an_unknown_key_like_a_missing_setting(
    store: SqliteStore,
) -> None:
    await store.delete_style(1, "pixelart", by_user=5)
    for name in ("nope", "pixelart"):  # never there, and deleted already
        with pytest.raises(UnknownSetting) as missing:
            await store.delete_style(1, name, by_user=5)
        assert isinstance(missing.value, InvalidInput)  # what /config's commands catch
        assert missing.value.field == "style" and missing.value.key == name
        assert f"no style called '{name}'" in str(missing.value)
        assert missing.value.valid == sorted(await store.styles(1))
    with pytest.raises(UnknownSetting) as setting:
        await store.set_setting(1, "nope", 5, by_user=5)
    assert setting.value.field == "key"
    assert len(await store.audit(1)) == 1

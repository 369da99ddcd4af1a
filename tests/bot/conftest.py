"""The real bot on a simulated Discord (simcord), the real store on a temp file, the real engine."""

from __future__ import annotations

from pathlib import Path

import discord
import pytest

from bot.client import VQBot
from bot.config import DISCORD_CDN_HOSTS, BotConfig
from db import GuildSettings, SqliteStore
from tests.worker.engine_fixtures import TINY_MODEL, TinyModels, tiny_engine, tiny_models  # noqa: F401  (fixtures)


class DiscordClock:
    """The store's clock follows simcord's virtual clock (discord.utils.utcnow is patched)."""

    def now(self):
        return discord.utils.utcnow()


# Most bot tests are about one picture; tests/bot/test_grids.py turns the grid on (the default).
SINGLE_PICTURES = GuildSettings(grid_enabled=False)


@pytest.fixture
async def store(tmp_path: Path):
    store = await SqliteStore.open(tmp_path / "vqbot.sqlite3", clock=DiscordClock(), defaults=SINGLE_PICTURES)
    yield store
    await store.close()


def tiny_bot_config(data_dir: Path, tiny_models: TinyModels) -> BotConfig:
    """The bot's settings for a simulated Discord with the tiny models (also docs/render_pictures.py)."""
    # Waits at or above simcord's settle timeout (5 s) park until the test advances the clock.
    return BotConfig(
        data_dir=data_dir,
        edit_interval_s=10.0,
        poll_interval_s=60.0,
        backoff_initial_s=10.0,
        attachment_hosts=(*DISCORD_CDN_HOSTS, "cdn.simcord.invalid"),
        default_side=64,
        default_steps=20,
        default_cutouts=8,
        models=(TINY_MODEL,),
        clip_model=tiny_models.clip_model,
        clip_pretrained="",
    )


@pytest.fixture
def bot_config(tmp_path: Path, tiny_models) -> BotConfig:
    return tiny_bot_config(tmp_path / "data", tiny_models)


def make_bot(store, bot_config, **options) -> VQBot:
    return VQBot(store, bot_config, sync_commands=True, **options)


@pytest.fixture
def simcord_bot(store, bot_config) -> VQBot:
    return make_bot(store, bot_config)

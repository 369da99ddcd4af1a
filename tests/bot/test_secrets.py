"""The bot token never shows up in logs, reprs or anything the bot sends."""

from __future__ import annotations

import logging

import pytest

from tests.bot.world import REACT_RERUN, build_world
from vqbot_cli.settings import Settings

SIMCORD_TOKEN = "simcord.fake.token"  # what simcord logs the bot in with


@pytest.fixture
def world(simcord_env, store, tiny_engine):
    return build_world(simcord_env, store, tiny_engine)


async def test_the_token_is_never_logged_or_sent_during_a_whole_job(world, caplog):
    caplog.set_level(logging.DEBUG)
    assert world.env.bot.http.token == SIMCORD_TOKEN
    await world.alice.slash(world.channel, "imagine", prompt="a cat")
    await world.worker.run_once()
    await world.alice.react(world.messages()[-1], REACT_RERUN)
    await world.alice.slash(world.channel, "status")
    await world.env.settle()
    assert caplog.records, "nothing was logged at all"
    assert SIMCORD_TOKEN not in caplog.text
    assert not any(SIMCORD_TOKEN in repr(r.json) or SIMCORD_TOKEN in r.path for r in world.env.http_requests)


def test_settings_hide_the_token(tmp_path, monkeypatch):
    monkeypatch.setenv("DISCORD_TOKEN", "abc.def.ghi")
    settings = Settings.from_env(tmp_path / "none.env")
    assert settings.discord_token.get_secret_value() == "abc.def.ghi"
    assert "abc.def.ghi" not in repr(settings) and "abc.def.ghi" not in str(settings)
    assert "abc.def.ghi" not in f"{settings.discord_token}"

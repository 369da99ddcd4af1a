"""`vqbot run` and `vqbot sync` ask Discord first; each failure is one sentence with the fix, no traceback."""

from __future__ import annotations

import asyncio

import pytest

from tests.cli.discord_standin import APP, BOT, HAPPY, UNRESOLVABLE_BASE, closed_port_base, discord_standin
from vqbot_cli import discord_check
from vqbot_cli.discord_check import DiscordUnreachable, check_discord
from vqbot_cli.main import main

TOKEN = "MTEw.GkXy7a.not-a-real-token-but-shaped-like-one"


def problem(base: str, token: str = TOKEN) -> DiscordUnreachable:
    with pytest.raises(DiscordUnreachable) as caught:
        asyncio.run(check_discord(token, base=base, timeout_s=5.0))
    return caught.value


def test_a_good_token_names_the_bot_its_application_and_servers() -> None:
    with discord_standin(HAPPY) as (base, seen):
        me = asyncio.run(check_discord(TOKEN, base=base, guilds=True))
    assert (me.bot_name, me.application_name, me.guilds) == (BOT["username"], APP["name"],
                                                            ("Banana Temple", "Chocolate Bar"))
    assert seen[0]["Authorization"] == f"Bot {TOKEN}"


@pytest.mark.parametrize("status, body, kind, words", [
    (401, {"message": "401: Unauthorized", "code": 0}, "token", "Reset Token"),
    (429, {"message": "You are being rate limited.", "retry_after": 64.5, "global": True}, "rate_limited", "64 s"),
    (502, {"message": "Bad Gateway"}, "server", "discordstatus.com"),
])
def test_discord_refusing_says_why(status, body, kind, words) -> None:
    with discord_standin({"/api/v10/users/@me": (status, body)}) as (base, _):
        found = problem(base)
    assert found.kind == kind and words in str(found), str(found)


def test_a_name_that_does_not_resolve_is_a_dns_problem() -> None:
    found = problem(UNRESOLVABLE_BASE)
    assert found.kind == "dns" and "discord.invalid" in str(found) and "DNS" in str(found)


def test_nothing_listening_is_a_connection_problem() -> None:
    found = problem(closed_port_base())
    assert found.kind == "connect" and "network, firewall or proxy" in str(found)


@pytest.mark.parametrize("token", ["Bot " + TOKEN, "secret-without-dots", "abc.def\r\nX-Evil: 1.ghi"])
def test_what_cannot_be_a_token_is_never_sent(token) -> None:
    with discord_standin(HAPPY) as (base, seen):
        assert problem(base, token).kind == "token"
    assert seen == []


def settings_file(tmp_path, *extra: str):
    env = tmp_path / ".env"
    env.write_text("\n".join([f"DISCORD_TOKEN={TOKEN}", f"VQBOT_MODEL_DIR={tmp_path / 'models'}",
                              f"VQBOT_DATABASE={tmp_path / 'db.sqlite3'}", *extra]) + "\n")
    return env


@pytest.fixture
def clean(monkeypatch):
    for key in ("DISCORD_TOKEN", "VQBOT_MODEL_DIR", "VQBOT_DATABASE", "VQBOT_VQGAN_CONFIG", "VQBOT_VQGAN_CHECKPOINT",
                "VQBOT_AUTO_DOWNLOAD", "VQBOT_MODELS"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vqbot: error: ") and "Traceback" not in err, err
    return lines[0]


def test_run_with_a_refused_token_stops_before_any_download(tmp_path, clean, capsys) -> None:
    # the models are missing and may be downloaded: the refusal must come before the download starts
    with discord_standin({"/api/v10/users/@me": (401, {"message": "401: Unauthorized"})}) as (base, seen):
        clean.setattr(discord_check, "API_BASE", base)
        assert main(["--env-file", str(settings_file(tmp_path, "VQBOT_AUTO_DOWNLOAD=1")), "run"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "refused the token" in line and TOKEN not in line and len(seen) == 1
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_run_with_missing_models_and_downloads_off_says_so_before_asking_discord(tmp_path, clean, capsys) -> None:
    with discord_standin(HAPPY) as (base, seen):
        clean.setattr(discord_check, "API_BASE", base)
        assert main(["--env-file", str(settings_file(tmp_path, "VQBOT_AUTO_DOWNLOAD=0")), "run"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "vqbot models download vqgan_imagenet_f16_16384" in line and "GB" in line and seen == []


@pytest.mark.parametrize("command", [["sync"], ["run", "--no-worker"]])
def test_no_way_to_discord_is_one_sentence(tmp_path, clean, capsys, command) -> None:
    clean.setattr(discord_check, "API_BASE", closed_port_base())
    assert main(["--env-file", str(settings_file(tmp_path)), *command]) == 2
    assert "Can't connect to 127.0.0.1" in one_error_line(capsys.readouterr().err)


def test_the_first_run_asks_discord_then_says_what_it_downloads(tmp_path, clean, capsys) -> None:
    import dataclasses
    from types import MappingProxyType

    from engine import catalog

    with discord_standin(HAPPY) as (base, seen):
        # the catalogue's files come from the stand-in (which has none of them), not from the internet
        here = base.replace("/api/v10", "/files")
        moved = {name: dataclasses.replace(
            spec, config=dataclasses.replace(spec.config, urls=(f"{here}/{name}.yaml",)),
            checkpoint=dataclasses.replace(spec.checkpoint, urls=(f"{here}/{name}.ckpt",)))
            for name, spec in catalog.MODELS.items()}
        clean.setattr(catalog, "MODELS", MappingProxyType(moved))
        clean.setattr(discord_check, "API_BASE", base)
        assert main(["--env-file", str(settings_file(tmp_path, "VQBOT_AUTO_DOWNLOAD=1")), "run"]) == 2
    err = capsys.readouterr().err
    # the token was checked (the bot, its application) before the download began, and never sent with it
    assert ["Authorization" in headers for headers in seen] == [True, True, False]
    assert "First start: downloading vqgan_imagenet_f16_16384 (about 1.0 GB)" in err
    assert "vqbot models download vqgan_imagenet_f16_16384" in err.strip().splitlines()[-1] and "Traceback" not in err

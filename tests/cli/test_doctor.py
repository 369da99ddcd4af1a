"""`vqbot doctor` says in plain lines what this machine and .env are ready for; `vqbot --version`."""

from __future__ import annotations

import asyncio

import pytest
import torch

from db import SqliteStore
from db.migrations import MIGRATIONS
from tests.cli.discord_standin import HAPPY, closed_port_base, discord_standin
from tests.tiny_models import write_tiny_clip, write_tiny_vqgan
from vqbot_cli import discord_check
from vqbot_cli.main import main

TOKEN = "MTEw.GkXy7a.not-a-real-token-but-shaped-like-one"
KEYS = ("DISCORD_TOKEN", "VQBOT_MODEL_DIR", "VQBOT_DATABASE", "VQBOT_VQGAN_CONFIG", "VQBOT_VQGAN_CHECKPOINT",
        "VQBOT_AUTO_DOWNLOAD", "VQBOT_MODELS", "VQBOT_CLIP", "VQBOT_CLIP_PRETRAINED", "VQBOT_DEVICE", "HF_HUB_OFFLINE")


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("doctor-models")
    config, checkpoint = write_tiny_vqgan(root / "vqgan")
    return config, checkpoint, write_tiny_clip(root / "clip")


@pytest.fixture
def doctor(tmp_path, monkeypatch, capsys):
    for key in KEYS:
        monkeypatch.delenv(key, raising=False)

    def run(*lines: str) -> tuple[int, list[str]]:
        env = tmp_path / ".env"
        env.write_text("\n".join([f"VQBOT_MODEL_DIR={tmp_path / 'models'}",
                                  f"VQBOT_DATABASE={tmp_path / 'data' / 'vqbot.sqlite3'}", *lines]) + "\n")
        status = main(["--env-file", str(env), "doctor"])
        out = capsys.readouterr().out
        assert "Traceback" not in out and "\x1b" not in out
        return status, out.splitlines()

    return run


def line(lines: list[str], start: str) -> str:
    """The first line whose words begin with those of ``start`` (level, topic, text)."""
    words = start.split()
    found = [item for item in lines if item.split()[: len(words)] == words]
    assert found, lines
    return found[0]


def test_a_ready_setup_exits_0_and_names_the_bot_and_its_servers(doctor, tiny_files, monkeypatch, tmp_path) -> None:
    config, checkpoint, clip = tiny_files
    asyncio.run(_queue_nothing(tmp_path / "data" / "vqbot.sqlite3"))
    with discord_standin(HAPPY) as (base, _):
        monkeypatch.setattr(discord_check, "API_BASE", base)
        status, lines = doctor(f"DISCORD_TOKEN={TOKEN}", f"VQBOT_VQGAN_CONFIG={config}",
                               f"VQBOT_VQGAN_CHECKPOINT={checkpoint}", f"VQBOT_CLIP=local-dir:{clip}")
    assert status == 0, lines
    assert f"torch {torch.__version__}" in line(lines, "info versions")
    assert "vqbot test app" in line(lines, "ok   discord  token of vqbot-test")
    assert "Banana Temple, Chocolate Bar" in line(lines, "ok discord in 2")
    assert f"schema {len(MIGRATIONS)} of {len(MIGRATIONS)}: no jobs" in line(lines, "ok   database")
    if not torch.cuda.is_available():  # this machine: said as a warning, not a failure
        assert "pictures are made on the CPU" in line(lines, "warn gpu")
        assert lines[-1] == "0 problem(s) to fix, 1 warning(s)"


async def _queue_nothing(path) -> None:
    async with await SqliteStore.open(path):
        pass


def test_no_network_no_models_and_downloads_off_are_problems_with_fixes(doctor, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(discord_check, "API_BASE", closed_port_base())
    status, lines = doctor(f"DISCORD_TOKEN={TOKEN}", "VQBOT_AUTO_DOWNLOAD=0", "HF_HUB_OFFLINE=1")
    assert status == 1
    models = lines.index(line(lines, "FAIL models"))
    assert "vqgan_imagenet_f16_16384 is not in" in lines[models] and "GB to download" in lines[models]
    assert lines[models + 1].strip() == "-> vqbot models download vqgan_imagenet_f16_16384"
    assert "Can't connect to 127.0.0.1" in line(lines, "FAIL discord")
    assert "does not exist yet" in line(lines, "ok   database")
    assert not (tmp_path / "data").exists()  # the doctor looks; it creates nothing


def test_first_run_downloads_are_announced_with_their_size(doctor, monkeypatch) -> None:
    monkeypatch.setattr(discord_check, "API_BASE", closed_port_base())
    _, lines = doctor(f"DISCORD_TOKEN={TOKEN}")
    assert "the first vqbot run downloads it (1.0 GB)" in line(lines, "info models")
    assert "downloaded on first use (0.6 GB)" in line(lines, "info clip")


def test_without_a_token_the_doctor_says_where_it_goes(doctor) -> None:
    status, lines = doctor()
    assert status == 1 and "DISCORD_TOKEN is not set" in line(lines, "FAIL discord")


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("vqbot 0.")

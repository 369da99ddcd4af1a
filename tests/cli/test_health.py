"""`vqbot health` (the containers' HEALTHCHECK): this host's bot and workers, read from the database."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta

import pytest

from db import FakeClock, SqliteStore
from vqbot_cli.main import main
from vqbot_cli.presence import PresenceReporter

HOST = socket.gethostname()


async def report(path, *reports, ago_s: float = 0.0) -> None:
    clock = FakeClock(datetime.now(UTC) - timedelta(seconds=ago_s))
    async with await SqliteStore.open(path, clock=clock) as store:
        for name, kind, host, state in reports:
            await store.report_presence(name, kind=kind, host=host, state=state)


def health(tmp_path, monkeypatch, capsys, *args: str) -> tuple[int, str]:
    env = tmp_path / "empty.env"
    env.write_text("")
    monkeypatch.setenv("VQBOT_DATABASE", str(tmp_path / "vqbot.sqlite3"))
    status = main(["--env-file", str(env), "health", *args])
    return status, capsys.readouterr().out


def test_a_connected_bot_and_a_reporting_worker_are_healthy(tmp_path, monkeypatch, capsys) -> None:
    asyncio.run(report(tmp_path / "vqbot.sqlite3", ("w0", "worker", HOST, "idle"), ("w0-bot", "bot", HOST, "connected"),
                       ("elsewhere", "worker", "other-host", "idle"), ago_s=600))
    asyncio.run(report(tmp_path / "vqbot.sqlite3", ("w0", "worker", HOST, "idle"),
                       ("w0-bot", "bot", HOST, "connected")))
    status, out = health(tmp_path, monkeypatch, capsys)
    assert status == 0, out
    assert "ok   worker w0" in out and "ok   bot w0-bot" in out and "elsewhere" not in out


@pytest.mark.parametrize("reports, ago_s, words", [
    ([("w0", "worker", HOST, "running")], 600, "gone or stuck"),
    ([("w0-bot", "bot", HOST, "connecting")], 0, "not connected to Discord"),
    ([("w0", "worker", HOST, "stopped")], 0, "no bot or worker has reported"),
    ([], 0, "no bot or worker has reported"),
])
def test_a_silent_worker_or_an_unconnected_bot_is_unhealthy(tmp_path, monkeypatch, capsys, reports, ago_s, words):
    asyncio.run(report(tmp_path / "vqbot.sqlite3", *reports, ago_s=ago_s))
    status, out = health(tmp_path, monkeypatch, capsys)
    assert status == 1 and words in out, out


def test_every_host_when_asked(tmp_path, monkeypatch, capsys) -> None:
    asyncio.run(report(tmp_path / "vqbot.sqlite3", ("far", "worker", "other-host", "idle")))
    status, out = health(tmp_path, monkeypatch, capsys, "--all-hosts")
    assert status == 0 and "far on other-host" in out


async def test_a_reporter_says_stopped_when_it_ends(tmp_path) -> None:
    async with await SqliteStore.open(tmp_path / "vqbot.sqlite3") as store:
        reporter = PresenceReporter(store, host="h")
        reporter.add("w", "worker", lambda: ("running", "cuda:1, 2 jobs"))
        task = asyncio.create_task(reporter.run())
        while not await store.presences():
            await asyncio.sleep(0)
        (first,) = await store.presences()
        task.cancel()
        await asyncio.wait([task])
        (last,) = await store.presences()
    assert (first.state, first.detail, last.state) == ("running", "cuda:1, 2 jobs", "stopped")

"""Each process's last word (``report_presence``) is what ``vqbot health`` and ``doctor`` read back."""

from __future__ import annotations

import pytest

from db import FakeClock, InvalidInput, Store
from db.presence import FORGET_AFTER_S


async def test_a_report_replaces_the_last_one_and_keeps_the_start(store: Store, clock: FakeClock) -> None:
    await store.report_presence("gpu-host-0", kind="worker", host="gpu-host", state="idle", detail="cuda:0")
    started = clock.now()
    clock.advance(5)
    await store.report_presence("gpu-host-0", kind="worker", host="gpu-host", state="running", detail="cuda:0 2 jobs")
    await store.report_presence("bot-1", kind="bot", host="web", state="connected")
    bot, worker = await store.presences()
    assert (bot.name, bot.kind, bot.state) == ("bot-1", "bot", "connected")
    assert (worker.state, worker.detail, worker.started_at, worker.seen_at) == (
        "running", "cuda:0 2 jobs", started, clock.now())
    assert worker.age_s(clock.advance(7)) == 7


async def test_a_process_that_stopped_and_came_back_starts_anew(store: Store, clock: FakeClock) -> None:
    await store.report_presence("w", kind="worker", host="h", state="idle")
    await store.report_presence("w", kind="worker", host="h", state="stopped")
    clock.advance(60)
    await store.report_presence("w", kind="worker", host="h", state="idle")
    (worker,) = await store.presences()
    assert worker.started_at == clock.now()


async def test_a_process_silent_for_a_week_is_forgotten(store: Store, clock: FakeClock) -> None:
    await store.report_presence("old", kind="worker", host="h", state="idle")
    clock.advance(FORGET_AFTER_S + 1)
    await store.report_presence("new", kind="worker", host="h", state="idle")
    assert [p.name for p in await store.presences()] == ["new"]


@pytest.mark.parametrize("field, value", [("kind", "gpu"), ("name", ""), ("name", "x" * 101),
                                          ("host", "evil\x1b[2J"), ("state", "\u202edeppots"), ("detail", "a\x00b")])
async def test_hostile_presence_text_is_refused(store: Store, field: str, value: str) -> None:
    report = {"name": "w", "kind": "worker", "host": "h", "state": "idle", "detail": "", field: value}
    name = report.pop("name")
    with pytest.raises(InvalidInput):
        await store.report_presence(name, **report)
    assert await store.presences() == []

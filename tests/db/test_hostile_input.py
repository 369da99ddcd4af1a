"""Hostile input against the Store API: every case has its expected answer.

An answer is a value (accepted) or a typed StoreError whose message is one or two sentences
naming the field; never a raw exception, never a hang. Every case runs on both backends (a real
SQLite file, a real PostgreSQL database), holding one running job (claimed by ``gpu-0``) and one
queued job; the "opening" cases are SqliteStore.open's own options.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from db import InvalidInput, NewJob, NotFound, ProgressAck, SqliteStore, Store, StoreError, UnknownSetting
from tests.db.factories import PNG, new_job, params


@dataclass(frozen=True)
class World:
    store: Store
    folder: Path
    running: int
    token: str
    queued: int


@dataclass(frozen=True)
class Refused:
    error: type[StoreError]
    field: str | None = None
    says: str | None = None
    """A word the message holds; by default the field's first word."""


@dataclass(frozen=True)
class Returns:
    value: object


ACCEPTED = Returns(...)
"""Any value: the call is accepted."""
Call = Callable[[World], Awaitable[Any]]


def nested(depth: int) -> dict[str, Any]:
    """Job params with an extra field nested ``depth`` dicts deep."""
    top = params()
    inner = top
    for _ in range(depth):
        inner["more"] = {}
        inner = inner["more"]
    return top


def job_with(**fields: Any) -> NewJob:
    base: dict[str, Any] = {
        "guild_id": 1, "channel_id": 10, "user_id": 200, "prompt": "a temple", "params": params(), "seed": 7
    }
    return NewJob(**(base | fields))


HUGE = 10**5000  # more digits than int -> str allows by default
MARKUP = "[free nitro](https://evil.example) <@123> @everyone \u202eevil"

CASES: list[tuple[str, Call, Refused | Returns]] = [
    # --- enqueue --------------------------------------------------------------------------
    ("prompt with a lone surrogate", lambda w: w.store.enqueue(new_job(prompt="a cat \ud800")),
     Refused(InvalidInput, "prompt")),
    ("params nested 100,000 deep", lambda w: w.store.enqueue(job_with(params=nested(100_000))),
     Refused(InvalidInput, "params")),
    ("params nested 33 deep", lambda w: w.store.enqueue(job_with(params=nested(33))),
     Refused(InvalidInput, "params")),
    ("params nested 30 deep", lambda w: w.store.enqueue(job_with(params=nested(30))), ACCEPTED),
    ("params holding a 5,000-digit number",
     lambda w: w.store.enqueue(job_with(params=params(big=HUGE))), Refused(InvalidInput, "params")),
    ("params holding a set", lambda w: w.store.enqueue(job_with(params=params(tags={1, 2}))),
     Refused(InvalidInput, "params")),
    ("params with a number as a key",
     lambda w: w.store.enqueue(job_with(params={**params(), 1: "x"})), Refused(InvalidInput, "params")),
    ("params holding a lone surrogate",
     lambda w: w.store.enqueue(job_with(params=params(note="\udc80"))), Refused(InvalidInput, "params")),
    ("params holding infinity", lambda w: w.store.enqueue(job_with(params=params(lr=float("inf")))),
     Refused(InvalidInput, "params")),
    ("params as a list", lambda w: w.store.enqueue(job_with(params=[params()])),
     Refused(InvalidInput, "params")),
    ("a 5,000-digit seed", lambda w: w.store.enqueue(job_with(seed=HUGE)), Refused(InvalidInput, "seed")),
    ("a guild id as text", lambda w: w.store.enqueue(job_with(guild_id="1")),
     Refused(InvalidInput, "guild_id")),
    ("a guild id as a float", lambda w: w.store.enqueue(job_with(guild_id=1.0)),
     Refused(InvalidInput, "guild_id")),
    ("a user id that is True", lambda w: w.store.enqueue(job_with(user_id=True)),
     Refused(InvalidInput, "user_id")),
    ("a prompt as bytes", lambda w: w.store.enqueue(job_with(prompt=b"a cat")),
     Refused(InvalidInput, "prompt")),
    ("a dict instead of a NewJob", lambda w: w.store.enqueue({"prompt": "a cat"}),  # type: ignore[arg-type]
     Refused(InvalidInput, "job")),
    ("enqueue_many of a string", lambda w: w.store.enqueue_many("abc"),  # type: ignore[arg-type]
     Refused(InvalidInput, "job")),
    ("a relation given as a list", lambda w: w.store.enqueue(job_with(parent_id=1, relation=["rerun"])),
     Refused(InvalidInput, "relation")),
    ("a model name with a newline", lambda w: w.store.enqueue(job_with(params=params(model="vq\ngan"))),
     Refused(InvalidInput, "params.model")),
    ("priority 2**70", lambda w: w.store.enqueue(job_with(priority=2**70)),
     Refused(InvalidInput, "priority")),
    ("markdown, mentions and bidi controls are stored as typed",
     lambda w: _prompt_of(w.store.enqueue(job_with(prompt=MARKUP))), Returns(MARKUP)),
    ("a prompt of zero-width characters only",
     lambda w: _prompt_of(w.store.enqueue(job_with(prompt="\u200b\u200b"))), Returns("\u200b\u200b")),
    ("terminal escapes are stored, not run",
     lambda w: _prompt_of(w.store.enqueue(job_with(prompt="\x1b[31mred\x1b[0m"))),
     Returns("\x1b[31mred\x1b[0m")),
    # --- claim ----------------------------------------------------------------------------
    ("a worker name with a newline", lambda w: w.store.claim("gpu\n0 claimed everything", lease_seconds=30),
     Refused(InvalidInput, "worker")),
    ("a blank worker name", lambda w: w.store.claim("   ", lease_seconds=30), Refused(InvalidInput, "worker")),
    ("a 201-character worker name", lambda w: w.store.claim("w" * 201, lease_seconds=30),
     Refused(InvalidInput, "worker")),
    ("a worker name as bytes", lambda w: w.store.claim(b"gpu-1", lease_seconds=30),  # type: ignore[arg-type]
     Refused(InvalidInput, "worker")),
    ("a worker name with a lone surrogate", lambda w: w.store.claim("gpu-\ud800", lease_seconds=30),
     Refused(InvalidInput, "worker")),
    ("a negative lease", lambda w: w.store.claim("gpu-1", lease_seconds=-1),
     Refused(InvalidInput, "lease_seconds")),
    ("a NaN lease", lambda w: w.store.claim("gpu-1", lease_seconds=float("nan")),
     Refused(InvalidInput, "lease_seconds")),
    ("a lease beyond float range", lambda w: w.store.claim("gpu-1", lease_seconds=10**400),
     Refused(InvalidInput, "lease_seconds")),
    ("a lease that is True", lambda w: w.store.claim("gpu-1", lease_seconds=True),
     Refused(InvalidInput, "lease_seconds")),
    ("a 5,000-digit batch size", lambda w: w.store.claim("gpu-1", lease_seconds=30, max_jobs=HUGE),
     Refused(InvalidInput, "max_jobs")),
    # --- the worker's reports -------------------------------------------------------------
    ("a heartbeat of a million seconds", lambda w: w.store.heartbeat(w.running, w.token, lease_seconds=1e6),
     Refused(InvalidInput, "lease_seconds")),
    ("a heartbeat for job 2**64", lambda w: w.store.heartbeat(2**64, w.token, lease_seconds=30),
     Returns(False)),
    ("progress at step 1.5", lambda w: w.store.report_progress(w.running, w.token, step=1.5),  # type: ignore[arg-type]
     Refused(InvalidInput, "step")),
    ("infinite steps per second",
     lambda w: w.store.report_progress(w.running, w.token, step=1, steps_per_s=float("inf")),
     Refused(InvalidInput, "steps_per_s")),
    ("a preview as text", lambda w: w.store.report_progress(w.running, w.token, step=1, preview="jpeg"),  # type: ignore[arg-type]
     Refused(InvalidInput, "preview")),
    ("a lease token as bytes", lambda w: w.store.report_progress(w.running, w.token.encode(), step=1),  # type: ignore[arg-type]
     Refused(InvalidInput, "token")),
    ("no lease token", lambda w: w.store.finish(w.running, None, result_png=PNG, gpu_seconds=1),  # type: ignore[arg-type]
     Refused(InvalidInput, "token")),
    ("progress for job '1'", lambda w: w.store.report_progress("1", w.token, step=1),  # type: ignore[arg-type]
     Refused(InvalidInput, "job_id")),
    ("progress for job 2**64", lambda w: w.store.report_progress(2**64, w.token, step=1),
     Returns(ProgressAck(ok=False))),
    ("a finish that took 1e300 GPU seconds",
     lambda w: w.store.finish(w.running, w.token, result_png=PNG, gpu_seconds=1e300),
     Refused(InvalidInput, "gpu_seconds")),
    ("a result as a memoryview",
     lambda w: w.store.finish(w.running, w.token, result_png=memoryview(PNG), gpu_seconds=1),  # type: ignore[arg-type]
     Returns(True)),
    ("a failure without an error text",
     lambda w: w.store.fail(w.running, w.token, error=None, gpu_seconds=1),  # type: ignore[arg-type]
     Refused(InvalidInput, "error")),
    ("an error text with a lone surrogate (a file name that was not UTF-8)",
     lambda w: _error_of(w, "can't read /tmp/\udcff.png"), Returns("can't read /tmp/\ufffd.png")),
    ("retry='yes'", lambda w: w.store.fail(w.running, w.token, error="x", gpu_seconds=1, retry="yes"),  # type: ignore[arg-type]
     Refused(InvalidInput, "retry")),
    ("a release with another worker's token", lambda w: w.store.release(w.running, "f" * 32), Returns(False)),
    ("a cancel confirmed after NaN GPU seconds",
     lambda w: w.store.confirm_cancelled(w.running, w.token, gpu_seconds=float("nan")),
     Refused(InvalidInput, "gpu_seconds")),
    # --- reading and the bot's bookkeeping ------------------------------------------------
    ("get job 2**64", lambda w: w.store.get(2**64), Returns(None)),
    ("get job '1'", lambda w: w.store.get("1"), Refused(InvalidInput, "job_id")),  # type: ignore[arg-type]
    ("get job True", lambda w: w.store.get(True), Refused(InvalidInput, "job_id")),
    ("get job -1", lambda w: w.store.get(-1), Returns(None)),
    ("the job of message 2**70", lambda w: w.store.by_message(2**70), Returns(None)),
    ("a message kind given as a list", lambda w: w.store.set_message(w.queued, 5, kind=["card"]),  # type: ignore[arg-type]
     Refused(InvalidInput, "kind")),
    ("message id 2**64", lambda w: w.store.set_message(w.queued, 2**64), Refused(InvalidInput, "message_id")),
    ("a card for job 0", lambda w: w.store.set_message(0, 5), Refused(NotFound)),
    ("the position of job 2**64", lambda w: w.store.position(2**64), Refused(NotFound)),
    ("cancel job 2**64", lambda w: w.store.request_cancel(2**64, by_user=100, is_admin=False),
     Refused(NotFound)),
    ("cancel as admin='yes'", lambda w: w.store.request_cancel(w.queued, by_user=1, is_admin="yes"),  # type: ignore[arg-type]
     Refused(InvalidInput, "is_admin")),
    ("a queue of -1 jobs", lambda w: w.store.queue(1, limit=-1), Refused(InvalidInput, "limit")),
    ("a history of a million jobs", lambda w: w.store.history(100, limit=10**6), Refused(InvalidInput, "limit")),
    ("changes since version -1", lambda w: w.store.changed_since(-1), Refused(InvalidInput, "version")),
    ("no undelivered jobs at all", lambda w: w.store.undelivered(limit=0), Refused(InvalidInput, "limit")),
    ("an audit of 2**64 entries", lambda w: w.store.audit(1, limit=2**64), Refused(InvalidInput, "limit")),
    ("prune previews older than NaN seconds", lambda w: w.store.prune(previews_older_than_s=float("nan")),
     Refused(InvalidInput, "previews_older_than_s")),
    ("prune usage older than -1 days (today's budgets)", lambda w: w.store.prune(usage_older_than_days=-1),
     Refused(InvalidInput, "usage_older_than_days")),
    ("the settings of guild 2**64", lambda w: w.store.settings(2**64), Refused(InvalidInput, "guild_id")),
    ("deliver job 2**64", lambda w: w.store.mark_delivered(2**64), Returns(False)),
    ("a delivery in message 2**64",
     lambda w: w.store.mark_delivered(w.running, result_message_id=2**64), Refused(InvalidInput, "result_message_id")),
    ("a delivery in message '5'",
     lambda w: w.store.mark_delivered(w.running, result_message_id="5"),  # type: ignore[arg-type]
     Refused(InvalidInput, "result_message_id")),
    ("a wait since version '5'", lambda w: w.store.wait_for_change("5", timeout=1),  # type: ignore[arg-type]
     Refused(InvalidInput, "since")),
    ("a wait for NaN seconds", lambda w: w.store.wait_for_change(0, timeout=float("nan")),
     Refused(InvalidInput, "timeout")),
    ("a wait for a year", lambda w: w.store.wait_for_change(0, timeout=365 * 86_400),
     Refused(InvalidInput, "timeout")),
    ("the preview of job -5", lambda w: w.store.preview(-5), Returns(None)),
    # --- guild settings and styles --------------------------------------------------------
    ("a cooldown beyond float range", lambda w: w.store.set_setting(1, "cooldown_s", 10**400, by_user=1),
     Refused(InvalidInput, "cooldown_s")),
    ("5,000-digit max_steps", lambda w: w.store.set_setting(1, "max_steps", HUGE, by_user=1),
     Refused(InvalidInput, "max_steps")),
    ("a superscript digit as a channel id", lambda w: w.store.set_setting(1, "allowed_channels", "²", by_user=1),
     Refused(InvalidInput, "allowed_channels")),
    ("channel mentions as typed in Discord",
     lambda w: _value_of(w.store.set_setting(1, "allowed_channels", "<#123> <#456>", by_user=1), "allowed_channels"),
     Returns((123, 456))),
    ("ten million characters of banned words",
     lambda w: w.store.set_setting(1, "banned_words", "a" * 10_000_000, by_user=1),
     Refused(InvalidInput, "banned_words")),
    ("a million and one banned words",
     lambda w: w.store.set_setting(1, "banned_words", ["x"] * 1_000_001, by_user=1),
     Refused(InvalidInput, "banned_words")),
    ("a banned word of zero-width characters", lambda w: w.store.set_setting(1, "banned_words", ["\u200b"], by_user=1),
     Refused(InvalidInput, "banned_words")),
    ("a banned word with a lone surrogate",
     lambda w: w.store.set_setting(1, "banned_words", ["cat\ud800"], by_user=1),
     Refused(InvalidInput, "banned_words")),
    ("a 5,000-digit switch", lambda w: w.store.set_setting(1, "reactions_enabled", HUGE, by_user=1),
     Refused(InvalidInput, "reactions_enabled")),
    ("a setting key given as a list", lambda w: w.store.set_setting(1, ["max_steps"], 5, by_user=1),  # type: ignore[arg-type]
     Refused(UnknownSetting, "key", says="valid settings")),
    ("a 5,000-digit setting key", lambda w: w.store.set_setting(1, HUGE, 5, by_user=1),  # type: ignore[arg-type]
     Refused(UnknownSetting, "key", says="valid settings")),
    ("a megabyte setting key", lambda w: w.store.set_setting(1, "k" * 2**20, 5, by_user=1),
     Refused(UnknownSetting, "key", says="valid settings")),
    ("a setting value given as a dict", lambda w: w.store.set_setting(1, "max_steps", {"a": 1}, by_user=1),
     Refused(InvalidInput, "max_steps")),
    ("a style with a lone surrogate", lambda w: w.store.set_style(1, "neon", "neon \ud800", by_user=1),
     Refused(InvalidInput, "style_text")),
    ("a style named by a 5,000-digit number", lambda w: w.store.set_style(1, HUGE, "neon", by_user=1),  # type: ignore[arg-type]
     Refused(InvalidInput, "style")),
    ("a style named like a path", lambda w: w.store.set_style(1, "../../etc/passwd", "x", by_user=1),
     Refused(InvalidInput, "style")),
    ("deleting a style that does not exist", lambda w: w.store.delete_style(1, "nope", by_user=1),
     Refused(UnknownSetting, "style")),
    ("a style with markdown and a mention is stored as typed",
     lambda w: _style_of(w.store.set_style(1, "evil", MARKUP, by_user=1), "evil"), Returns(MARKUP)),
    # --- opening --------------------------------------------------------------------------
    ("a NaN busy timeout", lambda w: _open(w.folder / "a.sqlite3", busy_timeout_s=float("nan")),
     Refused(InvalidInput, "busy_timeout_s")),
    ("synchronous=3", lambda w: _open(w.folder / "b.sqlite3", synchronous=3),
     Refused(InvalidInput, "synchronous")),
    ("a database path as bytes", lambda w: _open(b"c.sqlite3"), Refused(InvalidInput, "path")),
    ("a database path with a NUL", lambda w: _open(str(w.folder / "d\x00.sqlite3")),
     Refused(InvalidInput, "path")),
]


async def _prompt_of(enqueued: Awaitable[Any]) -> str:
    return str((await enqueued).prompt)


async def _value_of(settings: Awaitable[Any], key: str) -> object:
    return getattr(await settings, key)


async def _style_of(styles: Awaitable[dict[str, str]], name: str) -> str:
    return (await styles)[name]


async def _error_of(world: World, error: str) -> str | None:
    assert await world.store.fail(world.running, world.token, error=error, gpu_seconds=1)
    job = await world.store.get(world.running)
    return None if job is None else job.error


async def _open(path: Any, **options: Any) -> None:
    store = await SqliteStore.open(path, **options)
    await store.close()


@pytest.fixture
async def world(store: Store, tmp_path: Path) -> AsyncIterator[World]:
    await store.enqueue(new_job())
    (claim,) = await store.claim("gpu-0", lease_seconds=60)
    queued = await store.enqueue(new_job(seed=8))
    yield World(store, tmp_path, claim.job.id, claim.token, queued.id)


def test_the_corpus_covers_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30 and len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("call", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_hostile_input_gets_its_expected_answer(
    world: World, call: Call, expected: Refused | Returns
) -> None:
    try:
        answer = await asyncio.wait_for(call(world), timeout=60)
    except StoreError as error:
        assert isinstance(expected, Refused), f"refused with {error!r}, expected {expected}"
        assert isinstance(error, expected.error), repr(error)
        message = str(error)
        assert message.endswith(".") and len(message) <= 400 and message.count(". ") <= 1, message
        if expected.field is not None:
            assert getattr(error, "field", None) == expected.field, repr(error)
            says = expected.says or expected.field.replace(".", "_").split("_")[0]
            assert says in message.lower(), message
        return
    assert isinstance(expected, Returns), f"accepted with {answer!r}, expected {expected}"
    if expected is not ACCEPTED:
        assert answer == expected.value

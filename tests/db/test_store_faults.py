"""A database that can't be opened or written gives StoreUnavailable with one sentence that
says what to do, never a raw sqlite3 or OS error. A store that meets a lock or a full disk
later says so (transient: the worker tries again), changes nothing, and works once the fault
is gone."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from db import FakeClock, GuildSettings, SchemaTooNew, SqliteStore, StoreUnavailable
from db.jobs import check_new_job
from db.migrations import migrate
from db.sqlite import admission
from db.sqlite.connection import connect
from db.sqlite.faults import call_guarded
from tests.db.conftest_faults import in_child
from tests.db.factories import OPEN_LIMITS, PNG, new_job


def assert_says(error: BaseException, *, transient: bool, what: str) -> str:
    assert isinstance(error, StoreUnavailable), repr(error)
    assert error.transient is transient
    message = str(error)
    assert what in message and message.endswith(".") and message.count(". ") <= 1, message
    return message


async def make_database(path: Path) -> None:
    async with await SqliteStore.open(path) as store:
        await store.enqueue(new_job())


async def refusal(path: Path, **options: float) -> StoreUnavailable:
    with pytest.raises(StoreUnavailable) as refused:
        await SqliteStore.open(path, **options)
    return refused.value


# --- at open -----------------------------------------------------------------------------


async def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("my shopping list\n" * 500)
    message = assert_says(await refusal(path), transient=False, what="is not an SQLite database")
    assert str(path) in message
    assert path.read_text() == "my shopping list\n" * 500


async def test_a_damaged_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vqbot.sqlite3"
    await make_database(path)
    with path.open("r+b") as file:  # scribble over the schema's page
        file.seek(100)
        file.write(b"\xff" * 3000)
    assert_says(await refusal(path), transient=False, what="is damaged")


async def test_a_folder_given_as_the_path_is_refused(tmp_path: Path) -> None:
    message = assert_says(await refusal(tmp_path), transient=False, what="is a folder")
    assert str(tmp_path / "vqbot.sqlite3") in message


async def test_missing_folders_are_created(tmp_path: Path) -> None:
    path = tmp_path / "data" / "guilds" / "vqbot.sqlite3"
    async with await SqliteStore.open(path) as store:
        await store.enqueue(new_job())
    assert path.is_file()


async def test_a_folder_that_cannot_be_created_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file where the folder should be")
    path = tmp_path / "data" / "db" / "vqbot.sqlite3"
    message = assert_says(await refusal(path), transient=False, what="can't create the folder")
    assert str(path.parent) in message


async def test_a_database_of_a_newer_vqbot_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vqbot.sqlite3"
    await make_database(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    refused = await refusal(path)
    assert isinstance(refused, SchemaTooNew)
    assert_says(refused, transient=False, what="Upgrade vqbot")


async def test_a_database_another_program_holds_locked_is_refused_until_it_lets_go(
    tmp_path: Path,
) -> None:
    path = tmp_path / "vqbot.sqlite3"
    await make_database(path)
    hold_the_write_lock = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold_the_write_lock, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        refused = await refusal(path, busy_timeout_s=0)
        assert_says(refused, transient=True, what="is locked by another program")
    finally:
        holder.communicate("", timeout=30)
    async with await SqliteStore.open(path, busy_timeout_s=0) as store:
        assert len(await store.queue(1)) == 1


@pytest.mark.parametrize("existing", [False, True], ids=["new database", "existing database"])
async def test_a_read_only_folder_is_refused(tmp_path: Path, existing: bool) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "vqbot.sqlite3"
    if existing:
        await make_database(path)
    folder.chmod(0o555)
    try:
        outcome = in_child(
            f"""
            try:
                Path({str(folder / "probe")!r}).write_text("x")
                return {{"premise": "the child could write into a read-only folder"}}
            except PermissionError:
                pass
            return await attempt(SqliteStore.open({str(path)!r}))
            """,
            obey_permissions=True,
        )
    finally:
        folder.chmod(0o755)
    assert outcome.get("error") == "StoreUnavailable" and outcome["transient"] is False, outcome
    assert str(path) in outcome["message"] and "writable" in outcome["message"]


async def test_a_read_only_database_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vqbot.sqlite3"
    await make_database(path)
    path.chmod(0o444)
    outcome = in_child(
        f"""
        try:
            open({str(path)!r}, "ab").close()
            return {{"premise": "the child could write a read-only file"}}
        except PermissionError:
            pass
        return await attempt(SqliteStore.open({str(path)!r}))
        """,
        obey_permissions=True,
    )
    assert outcome.get("error") == "StoreUnavailable" and outcome["transient"] is False, outcome
    assert "is read-only" in outcome["message"] and str(path) in outcome["message"]


async def test_a_full_disk_at_open_is_refused_as_transient(tmp_path: Path) -> None:
    path = tmp_path / "vqbot.sqlite3"
    outcome = in_child(
        f"""
        limit_file_size(16 * 1024)
        return await attempt(SqliteStore.open({str(path)!r}))
        """
    )
    assert outcome.get("error") == "StoreUnavailable" and outcome["transient"] is True, outcome
    assert "disk is full or failing" in outcome["message"]


# --- after open --------------------------------------------------------------------------


@pytest.fixture
async def impatient(db_path: Path, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    """A store that gives up on a lock at once (busy_timeout 0)."""
    async with await SqliteStore.open(
        db_path, clock=clock, defaults=OPEN_LIMITS, busy_timeout_s=0
    ) as opened:
        yield opened


Call = Callable[[SqliteStore, int, str, int], Awaitable[object]]
WRITES: dict[str, Call] = {
    "enqueue": lambda s, job, token, queued: s.enqueue(new_job(seed=9)),
    "claim": lambda s, job, token, queued: s.claim("gpu-1", lease_seconds=30),
    "heartbeat": lambda s, job, token, queued: s.heartbeat(job, token, lease_seconds=60),
    "report_progress": lambda s, job, token, queued: s.report_progress(
        job, token, step=5, preview=b"jpeg"
    ),
    "finish": lambda s, job, token, queued: s.finish(job, token, result_png=PNG, gpu_seconds=1),
    "fail": lambda s, job, token, queued: s.fail(job, token, error="x", gpu_seconds=1, retry=True),
    "release": lambda s, job, token, queued: s.release(job, token),
    "request_cancel": lambda s, job, token, queued: s.request_cancel(
        queued, by_user=100, is_admin=False
    ),
    "set_setting": lambda s, job, token, queued: s.set_setting(1, "max_steps", 99, by_user=1),
    "set_style": lambda s, job, token, queued: s.set_style(1, "neon", "neon lights", by_user=1),
    "reclaim_expired": lambda s, job, token, queued: s.reclaim_expired(),
    "prune": lambda s, job, token, queued: s.prune(),
}


@pytest.mark.parametrize("name", WRITES)
async def test_a_lock_held_past_the_busy_timeout_is_transient_and_changes_nothing(
    impatient: SqliteStore, db_path: Path, name: str
) -> None:
    await impatient.enqueue(new_job())
    (claim,) = await impatient.claim("gpu-0", lease_seconds=30)
    queued = await impatient.enqueue(new_job(seed=8))
    before = (await impatient.get(claim.job.id), await impatient.get(queued.id), await impatient.version())
    settings_before = await impatient.settings(1), await impatient.styles(1)
    call = WRITES[name]
    locker = sqlite3.connect(db_path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable) as refused:
            await call(impatient, claim.job.id, claim.token, queued.id)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    message = assert_says(refused.value, transient=True, what="busy")
    assert str(db_path) not in message  # it may reach Discord users
    after = (await impatient.get(claim.job.id), await impatient.get(queued.id), await impatient.version())
    assert after == before
    assert (await impatient.settings(1), await impatient.styles(1)) == settings_before
    await call(impatient, claim.job.id, claim.token, queued.id)  # once the lock is gone, it works


async def test_a_full_disk_while_finishing_keeps_the_job_until_it_can_finish(tmp_path: Path) -> None:
    path = tmp_path / "vqbot.sqlite3"
    outcome = in_child(
        f"""
        path = Path({str(path)!r})
        store = await SqliteStore.open(path)
        await store.enqueue(job())
        (claim,) = await store.claim("gpu-0", lease_seconds=600)
        wal = path.with_name(path.name + "-wal")
        limit_file_size(max(path.stat().st_size, wal.stat().st_size) + 64 * 1024)
        picture = b"\\x89PNG" + bytes(2_000_000)
        full = await attempt(store.finish(claim.job.id, claim.token, result_png=picture, gpu_seconds=3))
        unlimit_file_size()
        held = await store.get(claim.job.id)
        progress = await store.report_progress(claim.job.id, claim.token, step=10)
        finished = await store.finish(claim.job.id, claim.token, result_png=picture, gpu_seconds=3)
        result = await store.result(claim.job.id)
        queued = len(await store.queue(1))
        await store.close()
        import sqlite3
        check = sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0]
        return dict(full=full, state_while_full=held.state, progress=bool(progress),
                    finished=finished, result_ok=result == picture, queued=queued, check=check)
        """
    )
    refused = outcome["full"]
    assert refused.get("error") == "StoreUnavailable" and refused["transient"] is True, outcome
    assert "disk is full or failing" in refused["message"] and str(path) not in refused["message"]
    assert outcome["state_while_full"] == "running" and outcome["progress"], outcome
    assert outcome["finished"] is True and outcome["result_ok"], outcome
    assert outcome["queued"] == 0 and outcome["check"] == "ok", outcome


def test_a_database_at_its_page_limit_is_full_and_the_enqueue_rolls_back(db_path: Path) -> None:
    """SQLITE_FULL itself (the child above meets a write error): the database may not grow."""
    conn = connect(db_path)
    try:
        migrate(conn)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        jobs = [check_new_job(new_job(seed=i, prompt="a wooden banana temple " * 80)) for i in range(200)]
        options = {"defaults": GuildSettings(), "enforce_limits": False, "now": 0.0}
        with pytest.raises(StoreUnavailable) as full:
            call_guarded(conn, admission.enqueue, (jobs,), options)
        message = assert_says(full.value, transient=True, what="disk is full or failing")
        assert str(db_path) not in message and not conn.in_transaction
        assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
        conn.execute("PRAGMA max_page_count = 1073741823")
        assert len(call_guarded(conn, admission.enqueue, (jobs,), options)) == 200
    finally:
        conn.close()


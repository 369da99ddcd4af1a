"""The fair-share queue on PostgreSQL: which job runs next, and reclaiming dead workers' jobs.

The policy is SqliteStore's (``db/sqlite/scheduler.py`` and docs/queue.md):
least-served guild, then least-served member, then priority and age, with
the job's estimated GPU seconds charged at claim and replaced by the measured
ones when the attempt ends, and an idle guild lifted to the least waiting
``vtime`` minus ``IDLE_CREDIT_S``.

What PostgreSQL adds is many claimers at once. Each pick locks the chosen
guild, member and job rows with ``FOR UPDATE SKIP LOCKED``: a second claimer
passes over a guild the first one is claiming from and takes the next one
instead of waiting, and no job is ever handed out twice. Locks are taken in
one order everywhere (job rows, then guild rows, then member rows; several
guilds or members in ascending id), and nobody waits for a row while holding
one that a waiter of that row could need, so transactions never deadlock.
Waiting retries (``not_before``) are counted as SqliteStore counts them: pending,
not queued, until ``due`` counts them in. The counters, virtual times and
charges themselves are kept by ``db/postgres/accounting.py``.
"""

from __future__ import annotations

import logging
import secrets

from psycopg.rows import DictRow

from db.fair_share import DEFAULT_SECONDS_PER_COST
from db.jobs import Claim
from db.postgres.accounting import due, enter_queue, rebuild_queues, settle
from db.postgres.connection import Tx
from db.postgres.rows import JOB_COLUMNS, job_from_row

log = logging.getLogger(__name__)

PICK_ATTEMPTS = 16  # guilds passed over in one pick (their only jobs locked by a cancel in flight)
RATE = f"(SELECT COALESCE(seconds_per_cost, {DEFAULT_SECONDS_PER_COST!r}) FROM store_state WHERE id = 1)"

CLAIM_GUILD = (
    "SELECT guild_id, vtime FROM guild_queues WHERE queued > 0 AND guild_id <> ALL(%s) "
    "ORDER BY vtime, last_claim, guild_id LIMIT 1 FOR UPDATE SKIP LOCKED"
)
CLAIM_USER = (
    "SELECT user_id, vtime FROM user_queues WHERE guild_id = %s AND queued > 0 "
    "ORDER BY vtime, last_claim, user_id LIMIT 1 FOR UPDATE SKIP LOCKED"
)
CLAIM_JOB = (
    "SELECT id, batch_key FROM jobs WHERE state = 'queued' AND guild_id = %s AND user_id = %s AND not_before IS NULL "
    "ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED"
)
_HAS_SHAPE = (
    "SELECT 1 FROM jobs j WHERE j.state = 'queued' AND j.guild_id = {0}.guild_id "
    "AND j.batch_key = %s AND j.not_before IS NULL"
)
SHAPE_GUILD = (
    "SELECT guild_id, vtime FROM guild_queues g WHERE queued > 0 AND guild_id <> ALL(%s) "
    f"AND EXISTS ({_HAS_SHAPE.format('g')}) ORDER BY vtime, last_claim, guild_id LIMIT 1 FOR UPDATE SKIP LOCKED"
)
SHAPE_USER = (
    "SELECT user_id, vtime FROM user_queues u WHERE guild_id = %s AND queued > 0 "
    f"AND EXISTS ({_HAS_SHAPE.format('u')} AND j.user_id = u.user_id) "
    "ORDER BY vtime, last_claim, user_id LIMIT 1 FOR UPDATE SKIP LOCKED"
)
SHAPE_JOB = (
    "SELECT id, batch_key FROM jobs WHERE state = 'queued' AND guild_id = %s AND batch_key = %s "
    "AND user_id = %s AND not_before IS NULL ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED"
)
ANY_QUEUED = (
    "SELECT 1 FROM jobs WHERE state = 'queued' AND guild_id = %s AND user_id = %s AND not_before IS NULL LIMIT 1"
)
# A job with a checkpoint starts at its step (NULL without one).
CHECKPOINT_STEP = "(SELECT c.step FROM checkpoints c WHERE c.job_id = jobs.id)"
EXPIRED = (
    "SELECT j.id, j.guild_id, j.user_id, j.state, j.attempts, j.max_attempts, j.cost, j.charged_s, "
    "j.lease_owner FROM job_progress p JOIN jobs j ON j.id = p.job_id "
    "WHERE p.lease_expires_at < %s AND j.state IN ('running', 'cancelling') "
    "ORDER BY j.guild_id, j.user_id, j.id FOR UPDATE OF j, p SKIP LOCKED"
)
# Lease the job, open its progress row and charge the estimate, in one statement.
# Bind (by name): worker, token, now, expires, version, id, guild, guild_vtime, user, user_vtime.
TAKE = f"""WITH j AS (
        UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = %(worker)s,
            lease_token = %(token)s, started_at = %(now)s, step = COALESCE({CHECKPOINT_STEP}, 0),
            resumed_from_step = {CHECKPOINT_STEP}, steps_per_s = NULL,
            charged_s = cost * {RATE}, version = %(version)s
        WHERE id = %(id)s AND state = 'queued' RETURNING *
    ), p AS (
        INSERT INTO job_progress (job_id, lease_token, lease_expires_at, step, steps_per_s, version)
        SELECT id, lease_token, %(expires)s, step, NULL, version FROM j
        ON CONFLICT (job_id) DO UPDATE SET lease_token = excluded.lease_token,
            lease_expires_at = excluded.lease_expires_at, step = excluded.step, steps_per_s = NULL,
            version = excluded.version
        RETURNING *
    ), g AS (
        UPDATE guild_queues SET vtime = vtime + (SELECT charged_s FROM j), user_vtime = %(user_vtime)s,
            claim_vtime = %(guild_vtime)s, last_claim = %(version)s, queued = queued - 1,
            queued_cost = queued_cost - (SELECT cost FROM j)
        WHERE guild_id = %(guild)s
    ), u AS (
        UPDATE user_queues SET vtime = vtime + (SELECT charged_s FROM j), last_claim = %(version)s,
            queued = queued - 1, queued_cost = queued_cost - (SELECT cost FROM j)
        WHERE guild_id = %(guild)s AND user_id = %(user)s
    )
    SELECT {JOB_COLUMNS} FROM j JOIN p ON p.job_id = j.id"""



# One job, claimed in one statement (so in one round trip, as its own transaction) when no
# lease has expired and the first pick finds a job; otherwise it claims nothing and says why.
FAST_CLAIM = f"""WITH expired AS (
        SELECT 1 FROM job_progress WHERE lease_expires_at < %(now)s
        UNION ALL SELECT 1 FROM jobs WHERE not_before <= %(now)s AND state = 'queued' LIMIT 1
    ), g AS (
        SELECT guild_id, vtime FROM guild_queues WHERE queued > 0 AND NOT EXISTS (SELECT 1 FROM expired)
        ORDER BY vtime, last_claim, guild_id LIMIT 1 FOR UPDATE SKIP LOCKED
    ), u AS (
        SELECT q.user_id, q.vtime FROM user_queues q JOIN g ON q.guild_id = g.guild_id WHERE q.queued > 0
        ORDER BY q.vtime, q.last_claim, q.user_id LIMIT 1 FOR UPDATE OF q SKIP LOCKED
    ), pick AS (
        SELECT jobs.id FROM jobs JOIN g ON jobs.guild_id = g.guild_id JOIN u ON jobs.user_id = u.user_id
        WHERE jobs.state = 'queued' AND jobs.not_before IS NULL ORDER BY jobs.priority DESC, jobs.id LIMIT 1
        FOR UPDATE OF jobs SKIP LOCKED
    ), j AS (
        UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = %(worker)s,
            lease_token = %(token)s, started_at = %(now)s, step = COALESCE({CHECKPOINT_STEP}, 0),
            resumed_from_step = {CHECKPOINT_STEP}, steps_per_s = NULL,
            charged_s = cost * {RATE}, version = pg_current_xact_id()::text::bigint
        FROM pick WHERE jobs.id = pick.id RETURNING jobs.*
    ), p AS (
        INSERT INTO job_progress (job_id, lease_token, lease_expires_at, step, steps_per_s, version)
        SELECT id, lease_token, %(expires)s, step, NULL, version FROM j
        ON CONFLICT (job_id) DO UPDATE SET lease_token = excluded.lease_token,
            lease_expires_at = excluded.lease_expires_at, step = excluded.step, steps_per_s = NULL,
            version = excluded.version
        RETURNING *
    ), gq AS (
        UPDATE guild_queues q SET vtime = q.vtime + j.charged_s, user_vtime = u.vtime, claim_vtime = g.vtime,
            last_claim = j.version, queued = q.queued - 1, queued_cost = q.queued_cost - j.cost
        FROM j, g, u WHERE q.guild_id = g.guild_id
    ), uq AS (
        UPDATE user_queues q SET vtime = q.vtime + j.charged_s, last_claim = j.version, queued = q.queued - 1,
            queued_cost = q.queued_cost - j.cost
        FROM j, g, u WHERE q.guild_id = g.guild_id AND q.user_id = u.user_id
    )
    SELECT (SELECT count(*) FROM expired) AS expired, (SELECT count(*) FROM g) AS guilds, {JOB_COLUMNS}
    FROM (SELECT 1) AS one LEFT JOIN (j JOIN p ON p.job_id = j.id) ON true"""


async def fast_claim(tx: Tx, worker: str, *, lease_s: float, now: float) -> list[Claim] | None:
    """Claim one job in a single statement (``tx`` in autocommit mode): the common case.

    Returns None when the full ``claim`` must run instead: a lease expired
    (it must be reclaimed first) or a retry's wait is over (it must be counted
    in again, ``due``), or the least-served guild's counters show
    work that its member or job rows don't (locked by a cancel, or wrong).
    """
    token = secrets.token_hex(16)
    row = await tx.one(FAST_CLAIM, {"worker": worker, "token": token, "now": now, "expires": now + lease_s})
    assert row is not None
    if row["id"] is not None:
        tx.note(row["version"])
        return [Claim(job=job_from_row(row), token=token)]
    if row["expired"] or row["guilds"]:
        return None
    return []


async def claim(
    tx: Tx, worker: str, *, lease_s: float, max_jobs: int, now: float, batch_key: str | None = None
) -> list[Claim]:
    """Reclaim expired leases, then lease up to ``max_jobs`` jobs of one batch key to ``worker``:
    ``batch_key``'s, or the first fairly picked job's."""
    await reclaim_expired(tx, now)
    await due(tx, now)
    claims: list[Claim] = []
    shape = batch_key
    while len(claims) < max_jobs:
        picked = await _pick(tx, shape)
        if picked is None:
            break
        guild, user, job = picked
        token = secrets.token_hex(16)
        row = await tx.one(
            TAKE,
            {
                "worker": worker,
                "token": token,
                "now": now,
                "expires": now + lease_s,
                "version": await tx.version(),
                "id": job["id"],
                "guild": guild["guild_id"],
                "guild_vtime": guild["vtime"],
                "user": user["user_id"],
                "user_vtime": user["vtime"],
            },
        )
        assert row is not None, f"job {job['id']} was locked as queued but could not be taken"
        claims.append(Claim(job=job_from_row(row), token=token))
        shape = job["batch_key"]
    return claims


async def _pick(tx: Tx, shape: str | None) -> tuple[DictRow, DictRow, DictRow] | None:
    """(guild row, user row, job row) of the next job, optionally of one batch key (``shape``), all
    three locked."""
    passed: list[int] = []
    key: tuple[object, ...] = () if shape is None else (shape,)
    for _ in range(PICK_ATTEMPTS):
        guild = await tx.one(CLAIM_GUILD if shape is None else SHAPE_GUILD, (passed, *key))
        if guild is None:
            return None
        guild_id = guild["guild_id"]
        user = await tx.one(CLAIM_USER if shape is None else SHAPE_USER, (guild_id, *key))
        if user is not None:
            job = await tx.one(CLAIM_JOB if shape is None else SHAPE_JOB, (guild_id, *key, user["user_id"]))
            if job is not None:
                return guild, user, job
            if await tx.one(ANY_QUEUED, (guild_id, user["user_id"])):
                passed.append(guild_id)  # its job is locked by a cancel in flight: try the next guild
                continue
        # A counter says work is waiting but no job row agrees: repair this guild and pick again.
        log.error("queue counters disagree with the jobs table (guild %d); rebuilding", guild_id)
        await rebuild_queues(tx, guild_id)
    return None



async def reclaim_expired(tx: Tx, now: float) -> int:
    """Take back jobs whose lease expired (inside the caller's transaction).

    A job with attempts left goes back to the queue; one without fails; one
    whose cancel was requested is cancelled. Jobs another transaction is
    changing right now (a late heartbeat, a finish) are left to it.
    """
    expired = await tx.all(EXPIRED, (now,))
    for row in expired:
        if row["state"] == "cancelling":
            state, error = "cancelled", None
        elif row["attempts"] >= row["max_attempts"]:
            state = "failed"
            error = (
                f"The worker running this job stopped responding on all {row['attempts']} "
                "attempts, so vqbot gave up on it. Try again later, or with fewer steps."
            )
        else:
            state = "queued"
            error = f"Attempt {row['attempts']} lost its worker; the job is waiting to run again."
        await tx.run("DELETE FROM job_progress WHERE job_id = %s", (row["id"],))
        await tx.run(
            "UPDATE jobs SET state = %s, error = %s, lease_owner = NULL, lease_token = NULL, "
            "step = 0, steps_per_s = NULL, charged_s = 0, finished_at = %s, version = %s WHERE id = %s",
            (state, error, None if state == "queued" else now, await tx.version(), row["id"]),
        )
        await settle(tx, row, gpu_seconds=None, leaves=state != "queued", now=now)
        if state == "queued":
            await enter_queue(tx, row["guild_id"], row["user_id"], jobs=1, cost=row["cost"], pending=0)
        log.warning(
            "job %d: lease of %s expired on attempt %d of %d; now %s",
            row["id"],
            row["lease_owner"],
            row["attempts"],
            row["max_attempts"],
            state,
        )
    return len(expired)

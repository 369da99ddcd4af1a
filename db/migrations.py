"""The SQLite schema as an ordered list of migrations, applied at open.

``PRAGMA user_version`` records how many migrations a database has had.
Each migration runs in its own write transaction that re-reads the version
first, so several processes opening the same file at once apply each
migration exactly once, and applying the list twice changes nothing.
Never edit a migration that has shipped: append a new one.

Timestamps are REAL epoch seconds (UTC). The SQL stays close to standard;
the SQLite-only parts are ``AUTOINCREMENT``, ``PRAGMA user_version`` and the
dynamic typing a PostgreSQL schema would spell out.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from db.errors import SchemaTooNew
from jobspec.batch import KEY_NAMES, KEY_NUMBERS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


JOB_QUEUE = Migration(
    1,
    "job queue: jobs, fair-share queues, previews, results, GPU usage",
    (
        """CREATE TABLE store_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version INTEGER NOT NULL,
            vtime REAL NOT NULL,
            seconds_per_cost REAL
        )""",
        "INSERT INTO store_state (id, version, vtime, seconds_per_cost) VALUES (1, 0, 0, NULL)",
        """CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            guild_id INTEGER NOT NULL,
            channel_id INTEGER NOT NULL,
            user_id INTEGER NOT NULL,
            message_id INTEGER,
            result_message_id INTEGER,
            prompt TEXT NOT NULL,
            params TEXT NOT NULL,
            model TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN
                ('queued', 'running', 'cancelling', 'succeeded', 'failed', 'cancelled')),
            priority INTEGER NOT NULL DEFAULT 0,
            cost INTEGER NOT NULL CHECK (cost > 0),
            charged_s REAL NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL CHECK (max_attempts > 0),
            lease_owner TEXT,
            lease_token TEXT,
            lease_expires_at REAL,
            step INTEGER NOT NULL DEFAULT 0,
            total_steps INTEGER NOT NULL CHECK (total_steps > 0),
            steps_per_s REAL,
            gpu_seconds REAL NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            error TEXT,
            parent_id INTEGER REFERENCES jobs (id),
            relation TEXT CHECK (relation IN ('rerun', 'continue', 'variation')),
            seed INTEGER NOT NULL,
            delivered INTEGER NOT NULL DEFAULT 0,
            version INTEGER NOT NULL
        )""",
        # The claim: next job of one user, priority first, then FIFO.
        """CREATE INDEX jobs_queued_fifo ON jobs (guild_id, user_id, priority DESC, id)
            WHERE state = 'queued'""",
        # Batch claims: the same, restricted to one (model, width, height).
        """CREATE INDEX jobs_queued_shape
            ON jobs (guild_id, model, width, height, user_id, priority DESC, id)
            WHERE state = 'queued'""",
        "CREATE INDEX jobs_active ON jobs (guild_id) WHERE state IN ('running', 'cancelling')",
        "CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE lease_expires_at IS NOT NULL",
        "CREATE INDEX jobs_message ON jobs (message_id) WHERE message_id IS NOT NULL",
        """CREATE INDEX jobs_result_message ON jobs (result_message_id)
            WHERE result_message_id IS NOT NULL""",
        "CREATE INDEX jobs_user ON jobs (user_id, id)",
        "CREATE INDEX jobs_version ON jobs (version)",
        """CREATE INDEX jobs_undelivered ON jobs (finished_at)
            WHERE delivered = 0 AND finished_at IS NOT NULL""",
        # Fair share: a guild's (and a member's) virtual time is the GPU seconds
        # charged to it; the one with the least goes first, ties to the one
        # claimed longest ago (last_claim: the change number of its last claim).
        # See docs/queue.md.
        """CREATE TABLE guild_queues (
            guild_id INTEGER PRIMARY KEY,
            vtime REAL NOT NULL DEFAULT 0,
            user_vtime REAL NOT NULL DEFAULT 0,
            last_claim INTEGER NOT NULL DEFAULT 0,
            queued INTEGER NOT NULL DEFAULT 0 CHECK (queued >= 0),
            queued_cost INTEGER NOT NULL DEFAULT 0,
            pending INTEGER NOT NULL DEFAULT 0 CHECK (pending >= 0)
        )""",
        """CREATE INDEX guild_queues_fair ON guild_queues (vtime, last_claim, guild_id)
            WHERE queued > 0""",
        """CREATE TABLE user_queues (
            guild_id INTEGER NOT NULL,
            user_id INTEGER NOT NULL,
            vtime REAL NOT NULL DEFAULT 0,
            last_claim INTEGER NOT NULL DEFAULT 0,
            queued INTEGER NOT NULL DEFAULT 0 CHECK (queued >= 0),
            queued_cost INTEGER NOT NULL DEFAULT 0,
            pending INTEGER NOT NULL DEFAULT 0 CHECK (pending >= 0),
            last_enqueued_at REAL,
            PRIMARY KEY (guild_id, user_id)
        )""",
        """CREATE INDEX user_queues_fair ON user_queues (guild_id, vtime, last_claim, user_id)
            WHERE queued > 0""",
        """CREATE TABLE previews (
            job_id INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            image BLOB NOT NULL,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE results (
            job_id INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
            png BLOB NOT NULL,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE gpu_usage (
            guild_id INTEGER NOT NULL,
            day INTEGER NOT NULL,
            user_id INTEGER NOT NULL,
            gpu_seconds REAL NOT NULL,
            PRIMARY KEY (guild_id, day, user_id)
        )""",
    ),
)

GUILD_CONFIG = Migration(
    2,
    "guild settings, style presets and the admin audit trail",
    (
        """CREATE TABLE guild_settings (
            guild_id INTEGER NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (guild_id, key)
        )""",
        # text NULL hides a default style in this guild.
        """CREATE TABLE guild_styles (
            guild_id INTEGER NOT NULL,
            name TEXT NOT NULL,
            text TEXT,
            PRIMARY KEY (guild_id, name)
        )""",
        """CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            guild_id INTEGER NOT NULL,
            user_id INTEGER NOT NULL,
            at REAL NOT NULL,
            key TEXT NOT NULL,
            old TEXT,
            new TEXT
        )""",
        "CREATE INDEX audit_log_guild ON audit_log (guild_id, id)",
    ),
)

JOB_KINDS = Migration(
    3,
    "job kinds: a kind column on jobs, 'imagine' or 'describe', read from the params",
    (
        # Generated from the params (as model, width and height are derived from them), so every
        # writer of job rows stays as it was; a claim may filter on it.
        """ALTER TABLE jobs ADD COLUMN kind TEXT
            GENERATED ALWAYS AS (COALESCE(json_extract(params, '$.kind'), 'imagine')) VIRTUAL""",
    ),
)

PRESENCE = Migration(
    4,
    "presence: each bot and worker process's last report, for vqbot health and doctor",
    (
        """CREATE TABLE presence (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            host TEXT NOT NULL,
            state TEXT NOT NULL,
            detail TEXT NOT NULL,
            started_at REAL NOT NULL,
            seen_at REAL NOT NULL
        )""",
    ),
)

# Issue 16: a grid's candidates share a group (the first candidate's id), and two more
# relations. SQLite can't change a column's CHECK in place, so the relation column is
# renamed, added again with the wider CHECK, copied, and the old one dropped (3.35+).
JOB_GROUPS = Migration(
    5,
    "job groups (a grid of candidates) and the upscale and blend relations",
    (
        "ALTER TABLE jobs ADD COLUMN group_id INTEGER REFERENCES jobs (id)",
        "CREATE INDEX jobs_group ON jobs (group_id) WHERE group_id IS NOT NULL",
        "ALTER TABLE jobs RENAME COLUMN relation TO relation_before_groups",
        """ALTER TABLE jobs ADD COLUMN relation TEXT CHECK (relation IN
            ('rerun', 'continue', 'variation', 'upscale', 'blend'))""",
        "UPDATE jobs SET relation = relation_before_groups WHERE relation_before_groups IS NOT NULL",
        "ALTER TABLE jobs DROP COLUMN relation_before_groups",
    ),
)

RESUME_AND_RETRY = Migration(
    6,
    "checkpoints of running jobs, retries that wait (not_before), the step a job resumed at",
    (
        # not_before: a retried job waits until then; it is out of the queue counters meanwhile
        # (db/retries.py). deferrals: retries that counted no attempt (the GPU was busy).
        "ALTER TABLE jobs ADD COLUMN not_before REAL",
        "ALTER TABLE jobs ADD COLUMN deferrals INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN resumed_from_step INTEGER",
        "CREATE INDEX jobs_waiting ON jobs (not_before) WHERE not_before IS NOT NULL",
        """CREATE TABLE checkpoints (
            job_id INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            data BLOB NOT NULL,
            saved_at REAL NOT NULL
        )""",
        # A job that ends has nothing to resume: whichever path ends it, its checkpoint goes.
        """CREATE TRIGGER checkpoints_end AFTER UPDATE OF state ON jobs
            WHEN NEW.state IN ('succeeded', 'failed', 'cancelled')
            BEGIN DELETE FROM checkpoints WHERE job_id = NEW.id; END""",
    ),
)



def batch_key_sql(value: Callable[[str], str], length: str) -> str:
    """SQL that computes ``jobspec.batch_key`` from a job's ``params`` column (for rows older than
    the column): ``value(name)`` reads one parameter as text or NULL, ``length`` counts characters."""

    def read(name: str, default: object) -> str:
        text = str(default).replace("'", "''")
        return f"COALESCE({value(name)}, '{text}')"

    width, height, cutn = (read(name, default) for name, default in KEY_NUMBERS)
    names = " || '/' || ".join(
        f"{length}({read(name, default)}) || ':' || {read(name, default)}" for name, default in KEY_NAMES
    )
    return f"{width} || 'x' || {height} || '/' || {cutn} || '/' || {names}"


# Batch claims filter on the whole batch key (models, size, cutouts), written at enqueue.
BATCH_KEY = Migration(
    7,
    "batch key per job",
    (
        "ALTER TABLE jobs ADD COLUMN batch_key TEXT NOT NULL DEFAULT ''",
        "UPDATE jobs SET batch_key = "
        + batch_key_sql(lambda name: f"json_extract(params, '$.{name}')", "length"),
        "DROP INDEX jobs_queued_shape",
        """CREATE INDEX jobs_queued_batch ON jobs (guild_id, batch_key, user_id, priority DESC, id)
            WHERE state = 'queued'""",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (JOB_QUEUE, GUILD_CONFIG, JOB_KINDS, PRESENCE, JOB_GROUPS, RESUME_AND_RETRY, BATCH_KEY)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply the migrations this database lacks; returns the versions applied.

    ``conn`` must be in autocommit mode (``isolation_level=None``).
    Raises SchemaTooNew if the database is ahead of ``migrations``.
    """
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise ValueError(f"migrations must be numbered 1..{len(migrations)}, got {versions}")
    latest = len(migrations)
    if schema_version(conn) == latest:
        return []
    applied = []
    for migration in migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = schema_version(conn)
            if current > latest:
                raise SchemaTooNew(
                    f"This database has schema version {current}, newer than this vqbot "
                    f"understands ({latest}). Upgrade vqbot or open another database file."
                )
            if current >= migration.version:
                conn.execute("ROLLBACK")
                continue
            for statement in migration.statements:
                conn.execute(statement)
            # PRAGMA takes no bound parameters; the version is an int from this module.
            conn.execute(f"PRAGMA user_version = {int(migration.version)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        log.info("applied migration %d: %s", migration.version, migration.name)
        applied.append(migration.version)
    return applied

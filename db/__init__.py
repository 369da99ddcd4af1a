"""vqbot's job store: jobs, fair queueing, guild settings and the audit trail.

Imports neither ``bot`` nor ``engine``. Code outside ``db`` uses the names
re-exported here; ``Store`` is the interface, ``SqliteStore`` and
``PostgresStore`` the backends, ``open_store`` picks one for a path or URL.
"""

from db.clock import Clock, FakeClock, SystemClock
from db.errors import (
    InvalidInput,
    LimitExceeded,
    NotAllowed,
    NotFound,
    SchemaTooNew,
    StoreError,
    StoreUnavailable,
    UnknownSetting,
)
from db.jobs import Claim, Job, NewJob, ProgressAck
from db.open import open_store
from db.postgres import PostgresStore
from db.postgres.from_sqlite import CopyReport, migrate_sqlite_to_postgres
from db.presence import PRESENCE_KINDS, Presence
from db.settings import DEFAULT_STYLES, SETTINGS, AuditEntry, GuildSettings, Setting, SettingKind
from db.sqlite_store import SqliteStore
from db.states import JobKind, JobState, Relation
from db.store import Store
from db.wakeups import WaitsForChanges

__all__ = [
    "DEFAULT_STYLES",
    "PRESENCE_KINDS",
    "SETTINGS",
    "AuditEntry",
    "Claim",
    "Clock",
    "CopyReport",
    "FakeClock",
    "GuildSettings",
    "InvalidInput",
    "Job",
    "JobKind",
    "JobState",
    "LimitExceeded",
    "NewJob",
    "NotAllowed",
    "NotFound",
    "PostgresStore",
    "Presence",
    "ProgressAck",
    "Relation",
    "SchemaTooNew",
    "Setting",
    "SettingKind",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "SystemClock",
    "UnknownSetting",
    "WaitsForChanges",
    "migrate_sqlite_to_postgres",
    "open_store",
]

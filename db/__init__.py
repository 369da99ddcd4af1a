"""vqbot's job store: jobs, fair queueing, guild settings and the audit trail.

Imports neither ``bot`` nor ``engine``. Code outside ``db`` uses the names
re-exported here; ``Store`` is the interface, ``SqliteStore`` the backend.
"""

from db.clock import Clock, FakeClock, SystemClock
from db.custom_ids import CUSTOM_ID_PATTERN, custom_id, parse_custom_id
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
from db.settings import DEFAULT_STYLES, SETTINGS, AuditEntry, GuildSettings, Setting, SettingKind
from db.sqlite_store import SqliteStore
from db.states import JobState, Relation
from db.store import Store

__all__ = [
    "CUSTOM_ID_PATTERN",
    "DEFAULT_STYLES",
    "SETTINGS",
    "AuditEntry",
    "Claim",
    "Clock",
    "FakeClock",
    "GuildSettings",
    "InvalidInput",
    "Job",
    "JobState",
    "LimitExceeded",
    "NewJob",
    "NotAllowed",
    "NotFound",
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
    "custom_id",
    "parse_custom_id",
]

"""Connecting to PostgreSQL the way the store needs it, transactions, and errors as sentences.

Every pooled connection is in autocommit mode with ``statement_timeout``,
``idle_in_transaction_session_timeout`` and ``lock_timeout`` set at connect,
so one stuck session (a frozen worker in the middle of a transaction, a
query that never ends) cannot hold the queue's rows for long: the server
ends it and its locks go with it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from db.errors import InvalidInput, StoreUnavailable

log = logging.getLogger(__name__)

Conn = AsyncConnection[DictRow]
Params = Sequence[Any] | Mapping[str, Any]
Pool = AsyncConnectionPool[Conn]
T = TypeVar("T")

# pg_current_xact_id(), pg_current_snapshot() (the change feed) and DROP DATABASE ... WITH (FORCE).
MIN_SERVER = (13, 0)
# Transactions that lost a race (serialization failure, deadlock) are run again this often.
RETRY_SQLSTATES = frozenset({"40001", "40P01"})
RETRIES = 5
# LISTEN/NOTIFY channel of the change feed (channels are per database).
CHANNEL = "vqbot_changes"
NOTIFY = sql.SQL("BEGIN; SET LOCAL synchronous_commit = off; NOTIFY {}, {}; COMMIT")
# BEGIN for (read_only, synchronous): every transaction says how it commits, whatever the session's default.
BEGIN = {
    (read_only, synchronous): "BEGIN"
    + (" ISOLATION LEVEL REPEATABLE READ, READ ONLY" if read_only else "")
    + f"; SET LOCAL synchronous_commit = {'on' if synchronous else 'off'}"
    for read_only in (False, True)
    for synchronous in (False, True)
}


class Tx:
    """One transaction on one connection, and its change number, taken when first needed.

    A change number is the transaction's id (see ``db/postgres/changes.py``):
    every row a transaction changes carries the same one, so one change is
    never split in the feed.
    """

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self._version: int | None = None

    async def one(self, query: str, params: Params = ()) -> DictRow | None:
        cursor = await self.conn.execute(query, params)
        return await cursor.fetchone()

    async def all(self, query: str, params: Params = ()) -> list[DictRow]:
        cursor = await self.conn.execute(query, params)
        return await cursor.fetchall()

    async def run(self, query: str, params: Params = ()) -> int:
        """Run a statement; returns how many rows it changed."""
        cursor = await self.conn.execute(query, params)
        return cursor.rowcount

    async def version(self) -> int:
        """This transaction's change number (the same for every call)."""
        if self._version is None:
            row = await self.one("SELECT pg_current_xact_id()::text::bigint AS v")
            assert row is not None
            self._version = int(row["v"])
        return self._version

    def note(self, version: int) -> None:
        """Record the change number a statement took itself (``pg_current_xact_id()`` in its SQL)."""
        self._version = version

    @property
    def changed(self) -> int | None:
        """The change number if this transaction changed the feed, else None."""
        return self._version


@dataclass(frozen=True)
class SessionSettings:
    """Session settings of every connection of the store's pool: limits in seconds (0: none),
    and whether a statement outside a transaction waits for its commit to reach the disk."""

    statement_s: float = 30.0
    idle_in_transaction_s: float = 60.0
    lock_s: float = 10.0
    synchronous: bool = True  # statements outside a transaction (a one-statement claim) wait for the disk

    def __post_init__(self) -> None:
        for name in ("statement_s", "idle_in_transaction_s", "lock_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 86_400:
                raise InvalidInput(name, f"{name} must be 0 to 86400 seconds, got {value!r}.")

    def options(self) -> str:
        """The libpq ``options`` string that sets them at connect."""
        ms = {
            "statement_timeout": self.statement_s,
            "idle_in_transaction_session_timeout": self.idle_in_transaction_s,
            "lock_timeout": self.lock_s,
        }
        settings = [f"-c {key}={round(value * 1000)}" for key, value in ms.items()]
        return " ".join([*settings, f"-c synchronous_commit={'on' if self.synchronous else 'off'}"])


def where(url: str) -> str:
    """The server and database of ``url`` for messages: host, port, database, user, no password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the configured PostgreSQL server"
    host = str(info.get("host") or "localhost")
    host = "the local socket" if host.startswith("/") else host
    port = info.get("port") or "5432"
    return f"{host}:{port}, database {info.get('dbname') or info.get('user') or 'postgres'}"


def with_database(url: str, dbname: str) -> str:
    """The postgresql:// URL of database ``dbname`` on the server of ``url`` (a URL or key=value string)."""
    info: dict[str, Any] = conninfo_to_dict(url) | {"dbname": dbname}
    user = quote(str(info.pop("user", "postgres")), safe="")
    password = info.pop("password", None)
    secret = f":{quote(str(password), safe='')}" if password else ""
    host = str(info.pop("host", ""))
    port = info.pop("port", None)
    rest = {k: str(v) for k, v in info.items() if k != "dbname"}
    if host.startswith("/"):
        rest["host"] = host
        host = ""
    netloc = f"{user}{secret}@{host}{':' + str(port) if port and host else ''}"
    if port and not host:
        rest["port"] = str(port)
    return f"postgresql://{netloc}/{quote(dbname)}" + (f"?{urlencode(rest)}" if rest else "")


def conninfo(url: str, session: SessionSettings, application_name: str) -> str:
    """``url`` with the store's session settings added (the caller's own options kept)."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise InvalidInput(
            "database", "The PostgreSQL address is not a valid URL; write it as postgresql://user@host:port/dbname."
        ) from None
    options = " ".join(str(o) for o in (info.get("options"), session.options()) if o)
    info.setdefault("connect_timeout", 10)
    return make_conninfo("", **(info | {"options": options, "application_name": application_name}))


def connect_failure(exc: psycopg.Error, url: str) -> StoreUnavailable:
    """A one-sentence StoreUnavailable for a connection that could not be made.

    libpq reports connection failures as text without an SQLSTATE, so the
    cause is read from its (stable, English) message.
    """
    text = str(exc)
    at = where(url)
    if "password authentication failed" in text or "no password supplied" in text:
        return StoreUnavailable(
            f"PostgreSQL at {at} refused the user name or password; fix them in VQBOT_DATABASE.",
            transient=False,
        )
    if "does not exist" in text and "database" in text:
        return StoreUnavailable(
            f"PostgreSQL at {at} has no such database; create it (createdb) or fix VQBOT_DATABASE.",
            transient=False,
        )
    if "role" in text and "does not exist" in text:
        return StoreUnavailable(
            f"PostgreSQL at {at} has no such user; create it (createuser) or fix VQBOT_DATABASE.",
            transient=False,
        )
    if "could not translate host name" in text:
        return StoreUnavailable(
            f"The PostgreSQL host in VQBOT_DATABASE ({at}) is not a known host name; fix the address.",
            transient=False,
        )
    return StoreUnavailable(
        f"Can't reach the PostgreSQL server at {at}; start it, or fix the address in VQBOT_DATABASE.",
        transient=True,
    )


def check_server(server_version: int, url: str) -> None:
    """Refuse a server older than MIN_SERVER (``server_version`` as libpq gives it, e.g. 150020)."""
    major, minor = divmod(server_version, 10_000)
    if (major, minor) < MIN_SERVER:
        raise StoreUnavailable(
            f"vqbot needs PostgreSQL {MIN_SERVER[0]} or newer, but the server at {where(url)} runs "
            f"{major}.{minor}; upgrade the server.",
            transient=False,
        )


async def connect(url: str, session: SessionSettings, application_name: str) -> Conn:
    """One autocommit connection with the store's settings, or StoreUnavailable."""
    try:
        conn = await AsyncConnection.connect(
            conninfo(url, session, application_name), autocommit=True, row_factory=dict_row
        )
    except psycopg.OperationalError as exc:
        raise connect_failure(exc, url) from None
    try:
        check_server(conn.info.server_version, url)
    except BaseException:
        await conn.close()
        raise
    return conn


async def open_pool(
    url: str, session: SessionSettings, *, application_name: str, min_size: int, max_size: int, timeout_s: float
) -> Pool:
    pool: Pool = AsyncConnectionPool(
        conninfo(url, session, application_name),
        connection_class=AsyncConnection[DictRow],
        kwargs={"autocommit": True, "row_factory": dict_row},
        min_size=min_size,
        max_size=max_size,
        timeout=timeout_s,
        open=False,
        name="vqbot",
    )
    try:
        await pool.open(wait=True, timeout=timeout_s)
    except PoolTimeout:
        await pool.close()
        raise StoreUnavailable(
            f"Can't reach the PostgreSQL server at {where(url)}; start it, or fix the address in VQBOT_DATABASE.",
            transient=True,
        ) from None
    return pool


def query_failure(exc: psycopg.Error, url: str, session: SessionSettings) -> StoreUnavailable | None:
    """The StoreUnavailable for an error of a running store, or None for a bug to raise as is."""
    state = exc.sqlstate or ""
    if state == "57014":  # query_canceled: statement_timeout
        return StoreUnavailable(
            f"The database at {where(url)} took longer than {session.statement_s:g} seconds to answer; "
            "try again, and check the server's load if it keeps happening.",
            transient=True,
        )
    if state == "55P03":  # lock_not_available: lock_timeout
        return StoreUnavailable(
            f"A row of the queue at {where(url)} stayed locked for {session.lock_s:g} seconds; "
            "try again, and look for a stuck session (pg_stat_activity) if it keeps happening.",
            transient=True,
        )
    if state in RETRY_SQLSTATES:
        return StoreUnavailable(
            f"The database at {where(url)} is too busy to settle concurrent changes; try again.",
            transient=True,
        )
    if isinstance(exc, psycopg.OperationalError) or state.startswith(("08", "57P")):
        return StoreUnavailable(
            f"Lost the connection to the PostgreSQL server at {where(url)}; try again once it is back.",
            transient=True,
        )
    return None


async def run_transaction(
    pool: Pool,
    fn: Callable[[Tx], Awaitable[T]],
    *,
    url: str,
    session: SessionSettings,
    synchronous: bool = True,
    read_only: bool = False,
    single_statement: bool = False,
) -> T:
    """``fn(tx)`` inside one transaction on a pooled connection, run again if it lost a race.

    A transaction that took a change number is followed by one NOTIFY on
    ``CHANNEL`` with it as the payload, sent in a transaction of its own that
    does not wait for the disk: NOTIFY serialises the commits of every
    notifying transaction of the server, so the queue's own commits stay out
    of that line. A notification lost in a crash between the two is made up
    for by the listeners' polling.

    ``synchronous=False`` commits without waiting for the WAL to reach disk
    (progress and heartbeats: losing the last second of them in a server
    crash costs nothing). ``read_only`` runs ``fn`` on one snapshot
    (REPEATABLE READ), so its queries agree with each other.
    ``single_statement``: ``fn`` runs one statement, in autocommit mode (its
    own transaction, without the round trips of BEGIN and COMMIT), committed
    as the pool's sessions commit (``SessionSettings.synchronous``).
    """
    for attempt in range(1, RETRIES + 1):
        try:
            async with pool.connection() as conn:
                tx = Tx(conn)
                if single_statement:
                    result = await fn(tx)
                else:
                    # BEGIN and the transaction's settings in one round trip (no parameters: constants).
                    await conn.execute(BEGIN[read_only, synchronous])
                    try:
                        result = await fn(tx)
                    except BaseException:
                        if not conn.closed and conn.info.transaction_status != TransactionStatus.UNKNOWN:
                            with contextlib.suppress(psycopg.Error):
                                await conn.execute("ROLLBACK")
                        raise
                    await conn.execute("COMMIT")
                if tx.changed is not None:
                    await _notify(conn, tx.changed)
                return result
        except PoolTimeout:
            raise StoreUnavailable(
                f"No connection to the PostgreSQL server at {where(url)} came free in time; "
                "try again, and raise the pool size if it keeps happening.",
                transient=True,
            ) from None
        except psycopg.Error as exc:
            if (exc.sqlstate or "") in RETRY_SQLSTATES and attempt < RETRIES:
                log.info("transaction lost a race (%s); running it again (attempt %d)", exc.sqlstate, attempt + 1)
                continue
            failure = query_failure(exc, url, session)
            if failure is None:
                raise
            raise failure from exc
    raise AssertionError("unreachable")


async def _notify(conn: Conn, version: int) -> None:
    try:
        await conn.execute(NOTIFY.format(sql.Identifier(CHANNEL), sql.Literal(str(version))))
    except psycopg.Error as exc:  # the change is committed; pollers will see it
        log.warning("could not notify listeners of change %d: %s", version, exc)

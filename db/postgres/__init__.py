"""PostgreSQL building blocks behind ``db.postgres.PostgresStore``.

Each module holds async functions over one transaction (``connection.Tx``);
``store.PostgresStore`` runs each call as one transaction on a pooled
connection. The queue's policy is SqliteStore's; the modules mirror
``db/sqlite/``: ``scheduler`` (claims, fairness, reclaiming),
``transitions`` (worker reports, cancel), ``admission`` (enqueue),
``listings`` (reads, the change feed), ``guild_config``, ``rows``,
``connection``, plus ``schema`` (its migrations) and ``listener``
(LISTEN/NOTIFY wake-ups).
"""

from db.postgres.store import PostgresStore

__all__ = ["PostgresStore"]

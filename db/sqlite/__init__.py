"""SQLite building blocks behind ``db.sqlite_store.SqliteStore``.

Each module holds plain functions over one ``sqlite3.Connection`` in
autocommit mode; every function that writes opens its own ``BEGIN
IMMEDIATE`` transaction (``connection.write``), so one call is one atomic
change. SqliteStore runs them on its connection's thread.
"""

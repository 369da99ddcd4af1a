"""``vqbot db migrate-to URL``: copy the queue from the SQLite file to a PostgreSQL database."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from vqbot_cli.settings import Settings


def add_db_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("db", help="the job database")
    sub = p.add_subparsers(dest="db_command", required=True)
    m = sub.add_parser(
        "migrate-to",
        help="copy jobs, settings, styles and the audit trail from the SQLite file to an empty PostgreSQL database",
    )
    m.add_argument("url", help="postgresql://user:password@host:port/dbname")
    m.add_argument("--from", dest="source", type=Path, help="the SQLite file (default: $VQBOT_DATABASE)")
    m.set_defaults(func=run_migrate_to)


def run_migrate_to(args: argparse.Namespace, settings: Settings) -> int:
    from db import StoreError, migrate_sqlite_to_postgres
    from db.open import backend_of
    from db.postgres.connection import where

    if backend_of(args.url) != "postgres":
        raise ValueError("The target must be a postgresql:// URL, e.g. postgresql://vqbot@db.example/vqbot.")
    source = args.source or settings.database
    try:
        report = asyncio.run(migrate_sqlite_to_postgres(source, args.url))
    except StoreError as exc:
        print(f"vqbot: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"copied {report.jobs} jobs ({report.queued} queued), {report.results} results not yet posted, "
        f"{report.settings} settings, {report.styles} styles and {report.audit} audit entries from {source} "
        f"to {where(args.url)}"
    )
    print("now set VQBOT_DATABASE to that URL and start vqbot; the SQLite file is left as it was")
    return 0

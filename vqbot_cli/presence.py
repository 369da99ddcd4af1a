"""``vqbot run`` and ``vqbot worker`` say every few seconds that they are alive (``Store.report_presence``);
``vqbot health`` reads it back: the containers' HEALTHCHECK, and a quick look for an operator.

A worker is healthy while it reports (the event loop that runs its heartbeats is alive); a bot is
healthy while it reports and is connected to Discord's gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from vqbot_cli.errors import visible
from vqbot_cli.settings import Settings

if TYPE_CHECKING:
    from db import Presence, Store

log = logging.getLogger(__name__)

REPORT_EVERY_S = 10.0
HEALTHY_AGE_S = 45.0  # three missed reports (and a slow database) before a process counts as gone
EXIT_HEALTHY, EXIT_UNHEALTHY = 0, 1  # what Docker's HEALTHCHECK reads

StateFn = Callable[[], tuple[str, str]]  # () -> (state, detail)


class PresenceReporter:
    """Reports each process part added (a bot, a worker) every ``every_s``; ``stopped`` when it ends."""

    def __init__(self, store: Store, *, host: str | None = None, every_s: float = REPORT_EVERY_S) -> None:
        self.store = store
        self.host = host or socket.gethostname()
        self.every_s = every_s
        self._parts: list[tuple[str, str, StateFn]] = []

    def add(self, name: str, kind: str, state: StateFn) -> None:
        self._parts.append((name, kind, state))

    async def report(self, final: str | None = None) -> None:
        for name, kind, state_fn in self._parts:
            state, detail = (final, "") if final else state_fn()
            try:
                await self.store.report_presence(name[:100], kind=kind, host=self.host[:255],
                                                 state=visible(state)[:40], detail=visible(detail)[:200])
            except Exception as exc:  # noqa: BLE001 - a busy or unreachable database must not stop the bot or worker
                log.warning("could not report presence of %s: %s", name, exc)

    async def run(self) -> None:
        """Report until cancelled, then once more as ``stopped``."""
        try:
            while True:
                await self.report()
                await asyncio.sleep(self.every_s)
        finally:
            await asyncio.shield(self.report(final="stopped"))


def add_health_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("health", help="are this host's bot and workers alive? (exit 0: yes, 1: no)")
    p.add_argument("--all-hosts", action="store_true", help="every host's processes, not only this host's")
    p.add_argument("--max-age", type=float, default=HEALTHY_AGE_S, metavar="SECONDS",
                   help=f"a report older than this counts as gone (default {HEALTHY_AGE_S:g})")
    p.set_defaults(func=health_command)


def judge(presences: list[Presence], now: datetime, *, host: str | None, max_age_s: float) -> tuple[bool, list[str]]:
    """Whether the processes (of ``host``, or all) are healthy, and one line for each."""
    mine = [p for p in presences if (host is None or p.host == host) and p.state != "stopped"]
    if not mine:
        where = f"on {host}" if host else "anywhere"
        return False, [f"no bot or worker has reported {where} (not started yet, or not on this database)"]
    healthy, lines = True, []
    for p in mine:
        age = p.age_s(now)
        problem = ""
        if age > max_age_s:
            problem = f"silent for {age:.0f} s (gone or stuck)"
        elif p.kind == "bot" and p.state != "connected":
            problem = "not connected to Discord"
        healthy &= not problem
        detail = f" ({visible(p.detail)})" if p.detail else ""
        lines.append(f"{'ok  ' if not problem else 'FAIL'} {p.kind} {visible(p.name)} on {visible(p.host)}: "
                     f"{visible(p.state)}{detail}, {age:.0f} s ago{'; ' + problem if problem else ''}")
    return healthy, lines


def health_command(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.max_age <= 86_400:
        raise ValueError("--max-age must be 1 to 86400 seconds.")

    async def read() -> list[Presence]:
        from db import open_store
        from db.errors import StoreUnavailable

        try:
            store = await open_store(settings.database_spec)
        except StoreUnavailable as exc:
            raise ValueError(str(exc)) from None
        try:
            return await store.presences()
        finally:
            await store.close()

    healthy, lines = judge(asyncio.run(read()), datetime.now(UTC),
                           host=None if args.all_hosts else socket.gethostname(), max_age_s=args.max_age)
    print("\n".join(lines))
    return EXIT_HEALTHY if healthy else EXIT_UNHEALTHY

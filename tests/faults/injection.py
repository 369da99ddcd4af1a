"""What a fault-suite worker process carries besides vqbot: a step journal and the points where it kills itself.

Both are installed in the worker process before ``vqbot worker`` starts (``tests.faults.workers``);
vqbot's own code is not changed. The journal is the engine's side of the truth: one line per
``Batch.step`` with every job's steps done after it, written with one ``write`` on an O_APPEND
file, so a SIGKILL loses at most the line of the step it interrupts. A ``KillPoint`` is a real
SIGKILL that the process sends itself at a moment no outside timing could hit: inside a store
transaction (after a chosen statement ran, before the commit), or on the n-th call of a function
(the hook for "during a checkpoint write" once checkpoints exist).
"""

from __future__ import annotations

import importlib
import os
import resource
import signal
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class KillPoint:
    """Where the process SIGKILLs itself: after the ``nth`` SQL statement containing ``sql`` ran
    (at the start of the statement that follows it, so the transaction is open and uncommitted),
    or at the ``nth`` call of ``call`` (``"package.module:Class.method"``), before it runs."""

    sql: str | None = None
    call: str | None = None
    nth: int = 1

    def __post_init__(self) -> None:
        if (self.sql is None) == (self.call is None) or self.nth < 1:
            raise ValueError("a KillPoint names one SQL statement or one call, and an nth from 1")

    def describe(self) -> str:
        return f"statement after the {self.nth}. {self.sql!r}" if self.sql else f"{self.nth}. call of {self.call}"


def die() -> None:
    """What a kill point does: the same signal the suite sends from outside, no cleanup of any kind."""
    os.kill(os.getpid(), signal.SIGKILL)


def journal_steps(path: Path) -> None:
    """Append ``<epoch seconds> <job>:<steps done> ...`` to ``path`` after every engine step."""
    from engine.runner import Batch

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    step = Batch.step

    def journalled(self: Batch) -> Any:
        result = step(self)
        done = " ".join(f"{key}:{steps}" for key, steps in result.done.items())
        os.write(fd, f"{time.time():.6f} {done}\n".encode())
        return result

    Batch.step = journalled  # type: ignore[method-assign]


def arm(point: KillPoint) -> None:
    if point.sql is not None:
        _kill_inside_sql(point.sql, point.nth)
    else:
        assert point.call is not None
        _kill_at_call(point.call, point.nth)


def _kill_inside_sql(fragment: str, nth: int) -> None:
    """Every connection the process opens reports its statements; the one after the nth match dies."""
    connect = sqlite3.connect
    seen = 0

    def traced(statement: str) -> None:
        nonlocal seen
        if seen == nth:
            die()
        if fragment in statement:
            seen += 1

    def connecting(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(traced)
        return conn

    sqlite3.connect = connecting  # type: ignore[assignment]


def _kill_at_call(target: str, nth: int) -> None:
    module_name, _, qualname = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = 0

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == nth:
            die()
        return original(*args, **kwargs)

    setattr(owner, name, counted)


def fill_disk_at_step(step: int, wal: Path) -> None:
    """After the first engine step that takes a job to ``step`` steps, no file of this process may grow
    past the size the database's write-ahead log (``wal``) has then: the next transaction that needs
    room fails as on a full disk. Raising the limit from outside (``prlimit``) frees the disk again."""
    from engine.runner import Batch

    inner = Batch.step
    filled = False

    def stepped(self: Batch) -> Any:
        nonlocal filled
        result = inner(self)
        if not filled and any(done >= step for done in result.done.values()):
            filled = True
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (max(wal.stat().st_size, 1), hard))
        return result

    Batch.step = stepped  # type: ignore[method-assign]

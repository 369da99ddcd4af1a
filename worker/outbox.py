"""What the worker must tell the store about the end of a job's attempt, told until the store has it.

A store write that fails (a write lock held past the busy timeout, a full disk, a server that
is down) is tried again with backoff while the worker runs; the store's own answer (False: the
job is no longer this worker's) is final. A finished picture is also kept on disk from the first
failed try until it is stored, so that a worker that stops or dies meanwhile loses nothing: the
next start stores it (``store_kept``) before it takes any job.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from db import InvalidInput, Store
from worker.waiting import Backoff, Wakeup

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Picture:
    """A finished job's picture and what the store needs with it."""

    job_id: int
    token: str
    png: bytes
    gpu_seconds: float


class Outbox:
    def __init__(self, store: Store, folder: Path | None, backoff: Backoff, stopping: threading.Event) -> None:
        """``folder``: where finished pictures wait while the store can't take them (None: in memory only)."""
        self.store, self.folder, self.backoff = store, folder, backoff
        self._stopping = stopping
        self._wakeup = Wakeup()

    def wake(self) -> None:
        """The worker is stopping: stop waiting to try again."""
        self._wakeup.wake()

    async def write(self, what: str, job_id: int, call: Callable[[], Awaitable[bool]], *,
                    on_failure: Callable[[], str] = lambda: "") -> bool | None:
        """``call()`` (one store write for job ``job_id``, ``what`` it does in words), tried again while it
        raises; the store's answer, or None when the worker stopped first. ``on_failure`` runs before
        each failed try is logged and returns words for the log line."""
        failures = 0
        while True:
            try:
                return await call()
            except InvalidInput:
                raise  # the write itself is wrong: no try will take it
            except Exception as exc:  # noqa: BLE001 - any other failed write: the database is unavailable now
                failures += 1
                kept = on_failure()
                delay = self.backoff.delay(failures)
                log.warning("job %s: could not %s: the database is unavailable (%s); %s%s", job_id, what,
                            exc, "giving up as the worker stops" if self._stopping.is_set()
                            else f"trying again in {delay:.1f} s", kept)
                if self._stopping.is_set():
                    return None
                await self._wakeup.sleep(delay)
                if self._stopping.is_set():
                    return None

    async def finish(self, picture: Picture) -> None:
        """Store a finished picture (the job succeeds), keeping it on disk while the store can't take it."""
        try:
            stored = await self.write("store the finished picture", picture.job_id, lambda: self.store.finish(
                picture.job_id, picture.token, result_png=picture.png, gpu_seconds=picture.gpu_seconds),
                on_failure=lambda: self._keep(picture))
        except InvalidInput as exc:
            log.error("job %s: the store refused its picture (%s); failing the job", picture.job_id, exc)
            self._discard(picture.job_id)
            await self.write("record the failure", picture.job_id, partial(
                self.store.fail, picture.job_id, picture.token, error=str(exc), gpu_seconds=picture.gpu_seconds))
            return
        if stored is None:
            log.warning("job %s: its picture waits %s for the next start", picture.job_id,
                        f"in {self.folder}" if self.folder is not None else "nowhere (no folder for it)")
            return
        self._discard(picture.job_id)
        if not stored:
            log.warning("job %s: picture dropped: the job is no longer this worker's (lease lost)", picture.job_id)

    async def store_kept(self) -> int:
        """Store the pictures an earlier run kept on disk; how many there were."""
        if self.folder is None or not self.folder.is_dir():
            return 0
        kept = sorted(self.folder.glob("*.json"))
        for ticket in kept:
            picture = self._load(ticket)
            if picture is not None:
                log.info("job %s: storing the picture kept in %s", picture.job_id, self.folder)
                await self.finish(picture)
        return len(kept)

    # ---------------------------------------------------------------- on disk
    def _keep(self, picture: Picture) -> str:
        """Write the picture and its ticket (job, lease, GPU time) atomically, once; words for the log."""
        if self.folder is None:
            return "; the picture is kept in memory"
        ticket = self.folder / f"{picture.job_id}.json"
        if ticket.exists():
            return ""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_atomically(self.folder / f"{picture.job_id}.png", picture.png)
            fields = {k: v for k, v in asdict(picture).items() if k != "png"}
            _write_atomically(ticket, json.dumps(fields).encode())  # the ticket last: it says the pair is whole
        except OSError as exc:
            return f"; could not keep it on disk ({exc.strerror or exc}), so it is kept in memory"
        return f"; the picture is kept in {self.folder} meanwhile"

    def _load(self, ticket: Path) -> Picture | None:
        try:
            fields = json.loads(ticket.read_text())
            png = ticket.with_suffix(".png").read_bytes()
            return Picture(job_id=int(fields["job_id"]), token=str(fields["token"]), png=png,
                           gpu_seconds=float(fields["gpu_seconds"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("the kept picture %s can't be read (%s); removing it", ticket.with_suffix(".png"), exc)
            ticket.unlink(missing_ok=True)
            ticket.with_suffix(".png").unlink(missing_ok=True)
            return None

    def _discard(self, job_id: int) -> None:
        if self.folder is not None:
            (self.folder / f"{job_id}.json").unlink(missing_ok=True)
            (self.folder / f"{job_id}.png").unlink(missing_ok=True)


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)

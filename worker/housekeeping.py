"""Housekeeping: what the store and the uploads folder no longer need goes, on a schedule.

``vqbot run`` and ``vqbot worker`` run ``Housekeeping.run_forever`` beside the bot and the worker.
Every ``every_s`` seconds (VQBOT_PRUNE_EVERY_S) one round deletes, through ``Store.prune``:

- previews of jobs that ended more than an hour ago (the card then shows the result, or nothing);
- results that were delivered more than ``keep_results_days`` ago (VQBOT_KEEP_RESULTS_DAYS; 0 keeps
  them for ever): "continue" of such a job then says its picture is no longer stored;
- checkpoints of jobs that ended (the store deletes them when a job ends; this catches any left);
- daily GPU usage older than 35 days (the budgets look back one day, /status a month);

and, in the uploads folder (``BotConfig.attachments_dir``, where the bot keeps init images and image
prompts under their content hash), every picture no job refers to any more: none that is waiting or
running, none that ended less than ``keep_uploads_days`` ago (VQBOT_KEEP_UPLOADS_DAYS, so a rerun
of a recent job still finds its picture). Only files named as the bot names them (64 hex digits and a
picture suffix, or a ``.part`` left by a crash) are ever deleted, and only ones older than
``upload_grace_s``: a picture saved a moment ago may belong to a job being queued right now.

Importing this module imports neither torch nor the engine, so a bot without a worker runs it too.
Several processes may run it against one store at once: each round is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from db.clock import Clock, SystemClock, to_epoch
from db.store import Store

log = logging.getLogger(__name__)

DAY_S = 86_400.0
USAGE_DAYS = 35
PREVIEWS_S = 3600.0
UPLOAD_NAME = re.compile(r"[0-9a-f]{64}\.(png|jpg|webp|gif|bmp|part)")
PAGE = 1000


@dataclass(frozen=True)
class HousekeepingConfig:
    every_s: float = 3600.0
    keep_results_days: float = 30.0
    """0: delivered results are kept for ever."""
    keep_uploads_days: float = 30.0
    uploads_dir: Path | None = None
    upload_grace_s: float = 3600.0
    previews_s: float = PREVIEWS_S
    usage_days: int = USAGE_DAYS


@dataclass
class Round:
    """What one round deleted."""

    previews: int = 0
    results: int = 0
    checkpoints: int = 0
    gpu_usage: int = 0
    uploads: int = 0
    kept_uploads: int = 0

    def __str__(self) -> str:
        return (f"{self.previews} previews, {self.results} results, {self.checkpoints} checkpoints, "
                f"{self.gpu_usage} usage rows, {self.uploads} uploads ({self.kept_uploads} still in use)")


def referenced_names(params: dict[str, object]) -> Iterable[str]:
    """File names of the pictures a job's params name (its init image and image prompts)."""
    init = params.get("init_image")
    if isinstance(init, str) and init:
        yield Path(init).name
    prompts = params.get("image_prompts")
    if isinstance(prompts, list):
        for prompt in prompts:
            text = prompt.get("text") if isinstance(prompt, dict) else None
            if isinstance(text, str) and text:
                yield Path(text).name


@dataclass
class Housekeeping:
    store: Store
    config: HousekeepingConfig
    clock: Clock = field(default_factory=SystemClock)
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
    rounds: int = 0
    failed_rounds: int = 0

    async def run_once(self) -> Round:
        """One round: the store's pruning, then the uploads'."""
        config = self.config
        pruned = await self.store.prune(
            previews_older_than_s=config.previews_s,
            results_older_than_s=config.keep_results_days * DAY_S if config.keep_results_days else None,
            usage_older_than_days=config.usage_days,
        )
        done = Round(previews=pruned.get("previews", 0), results=pruned.get("results", 0),
                     checkpoints=pruned.get("checkpoints", 0), gpu_usage=pruned.get("gpu_usage", 0))
        if config.uploads_dir is not None:
            done.uploads, done.kept_uploads = await self.prune_uploads(config.uploads_dir)
        self.rounds += 1
        level = logging.INFO if any((done.previews, done.results, done.checkpoints, done.uploads)) else logging.DEBUG
        log.log(level, "housekeeping deleted %s", done)
        return done

    async def in_use(self) -> set[str]:
        """Names of the uploads that a pending job, or one ended within the retention, refers to."""
        names: set[str] = set()
        after = 0
        while True:
            page = await self.store.params_in_use(
                ended_within_s=self.config.keep_uploads_days * DAY_S, after_id=after, limit=PAGE)
            for _job_id, params in page:
                names.update(referenced_names(params))
            if len(page) < PAGE:
                return names
            after = page[-1][0]

    async def prune_uploads(self, folder: Path) -> tuple[int, int]:
        """(uploads deleted, uploads kept because a job refers to them)."""
        if not folder.is_dir():
            return 0, 0
        # Listed before the jobs are read: a file saved after the listing is not looked at this round.
        cutoff = to_epoch(self.clock.now()) - self.config.upload_grace_s
        candidates = await asyncio.to_thread(_old_uploads, folder, cutoff)
        if not candidates:
            return 0, 0
        used = await self.in_use()
        deleted = kept = 0
        for path in candidates:
            if path.name in used:
                kept += 1
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                continue  # another process's housekeeping was first
            except OSError as exc:
                log.warning("housekeeping could not delete the upload %s: %s", path, exc)
                continue
            deleted += 1
        return deleted, kept

    async def run_forever(self, stop: asyncio.Event) -> None:
        """A round now and every ``every_s`` seconds until ``stop`` is set; a round that fails (the
        database unavailable, a folder unreadable) is logged and the next one comes on time."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # noqa: BLE001 - housekeeping must never stop the bot or the worker
                self.failed_rounds += 1
                log.warning("housekeeping round failed (%s); next try in %.0f s", exc, self.config.every_s)
            if stop.is_set():
                return
            sleeper = asyncio.ensure_future(self.sleep(self.config.every_s))
            stopped = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait((sleeper, stopped), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                stopped.cancel()


def _old_uploads(folder: Path, cutoff: float) -> list[Path]:
    """Files in ``folder`` named as uploads are, last changed before ``cutoff`` (epoch seconds)."""
    found = []
    for path in folder.iterdir():
        if not UPLOAD_NAME.fullmatch(path.name):
            continue
        try:
            info = path.lstat()
        except OSError:
            continue
        if path.is_file() and not path.is_symlink() and info.st_mtime < cutoff:
            found.append(path)
    return found

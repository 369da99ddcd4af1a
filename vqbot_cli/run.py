"""``vqbot run`` (bot + one in-process worker), ``vqbot worker`` (a worker alone) and ``vqbot sync``.

The composition root for the bot side: settings -> store -> engine -> worker -> bot.
Problems the operator can fix (no token, no weights, a refused token) are
reported as one line each, with what to do, instead of a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vqbot_cli.discord_check import check_discord, explain
from vqbot_cli.errors import UsageError, shown
from vqbot_cli.model_plan import ModelNeed, check_model_files, cpu_warning, fetch_models
from vqbot_cli.presence import PresenceReporter
from vqbot_cli.settings import Settings, number, switch

if TYPE_CHECKING:
    from db import Store
    from engine.runner import Engine
    from worker.housekeeping import HousekeepingConfig
    from worker.worker import WorkerConfig

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 8
"""Jobs a batch holds at most unless VQBOT_MAX_BATCH says otherwise (memory admission may allow fewer).
On an H200 (bench/results/2026-12-02-h200-service-*.log) a batch of 8 made 82 job-steps/s and no more
than batches of 4 did, while uncapped, a stream of jobs grew one batch to 30 and each job's 500 steps
took 209 s instead of 8 s alone: past 8, a job that joins slows every other job as much as it gains."""

STOP_TIMEOUT_S = 60.0
# How long a worker's claim on a job lasts without a heartbeat (beats come every lease/3). 30 s: a killed
# worker's jobs are taken again within half a minute, while two missed beats (each may wait up to the
# database's 10 s busy timeout) are still survived. Below 15 s a single beat stuck behind a write lock
# for the busy timeout would lose a live worker's jobs.
DEFAULT_LEASE_S = 30.0
LEASE_RANGE_S = (15.0, 3600.0)
# Housekeeping (worker/housekeeping.py): a round every hour by default (0: none); delivered results and
# the uploads of ended jobs are kept 30 days (results: 0 keeps them for ever).
DEFAULT_PRUNE_EVERY_S = 3600.0
PRUNE_EVERY_RANGE_S = (60.0, 7 * 86_400.0)
DEFAULT_KEEP_DAYS = 30.0
KEEP_DAYS_RANGE = (0.0, 36_500.0)
# Periodic checkpoints of running jobs (worker/checkpointing.py, where the 30 s default is argued): 0 turns
# them off (a clean stop still takes one); VQBOT_CHECKPOINT_EVERY_STEPS (0: off) adds a step count.
DEFAULT_CHECKPOINT_EVERY_S = 30.0
CHECKPOINT_EVERY_RANGE_S = (5.0, 86_400.0)


class SetupProblem(UsageError):
    """Something missing or wrong in the setup; the message says what to do."""


@dataclass(frozen=True)
class RunOptions:
    """The bot-side settings beyond ``Settings`` (all optional; documented in .env.example)."""

    data_dir: Path
    sync_guild: int | None
    worker_name: str
    max_batch: int | None  # at most this many jobs a batch (memory admission may allow fewer); None: no cap
    models: tuple[str, ...]
    warm_up: bool = True
    auto_download: bool = True
    lease_s: float = DEFAULT_LEASE_S
    prune_every_s: float = DEFAULT_PRUNE_EVERY_S
    """0: no housekeeping in this process."""
    keep_results_days: float = DEFAULT_KEEP_DAYS
    keep_uploads_days: float = DEFAULT_KEEP_DAYS
    checkpoint_every_s: float = DEFAULT_CHECKPOINT_EVERY_S
    checkpoint_every_steps: int = 0

    @classmethod
    def from_env(cls, settings: Settings) -> RunOptions:
        """Read and check the bot's and worker's settings; raise SetupProblem for the first bad one."""
        from engine.catalog import get_model

        get = os.environ.get
        guild = (get("VQBOT_SYNC_GUILD") or "").strip()
        if guild and not (guild.isascii() and guild.isdigit() and len(guild) <= 20):
            raise SetupProblem(f"VQBOT_SYNC_GUILD must be a server id (digits), not {shown(guild)}.")
        names = [m.strip() for m in (get("VQBOT_MODELS") or settings.vqgan).split(",") if m.strip()]
        try:
            models = tuple(dict.fromkeys(get_model(name).name for name in names))
        except ValueError as exc:
            raise SetupProblem(f"VQBOT_MODELS: {exc}") from None
        worker_name = (get("VQBOT_WORKER_NAME") or "").strip() or f"{socket.gethostname()}-{os.getpid()}"
        if len(worker_name) > 100 or not worker_name.isprintable():
            raise SetupProblem(f"VQBOT_WORKER_NAME must be printable and at most 100 characters, not {shown(worker_name)}.")
        try:
            return cls(
                data_dir=Path((get("VQBOT_DATA_DIR") or "").strip() or settings.database.parent).expanduser(),
                sync_guild=int(guild) if guild else None,
                worker_name=worker_name,
                max_batch=int(number("VQBOT_MAX_BATCH", DEFAULT_MAX_BATCH, 1, 64, whole=True)),
                models=models or (settings.vqgan,),
                warm_up=switch("VQBOT_WARM_UP"),
                auto_download=switch("VQBOT_AUTO_DOWNLOAD"),
                lease_s=number("VQBOT_LEASE_S", DEFAULT_LEASE_S, *LEASE_RANGE_S),
                prune_every_s=_prune_every(),
                keep_results_days=number("VQBOT_KEEP_RESULTS_DAYS", DEFAULT_KEEP_DAYS, *KEEP_DAYS_RANGE),
                keep_uploads_days=number("VQBOT_KEEP_UPLOADS_DAYS", DEFAULT_KEEP_DAYS, 1.0, KEEP_DAYS_RANGE[1]),
                checkpoint_every_s=_zero_or("VQBOT_CHECKPOINT_EVERY_S", DEFAULT_CHECKPOINT_EVERY_S,
                                            *CHECKPOINT_EVERY_RANGE_S),
                checkpoint_every_steps=int(number("VQBOT_CHECKPOINT_EVERY_STEPS", 0, 0, 1_000_000, whole=True)),
            )
        except UsageError as exc:
            raise SetupProblem(str(exc)) from None


def _prune_every() -> float:
    """VQBOT_PRUNE_EVERY_S: 0 (no housekeeping here) or 60 s to a week."""
    return _zero_or("VQBOT_PRUNE_EVERY_S", DEFAULT_PRUNE_EVERY_S, *PRUNE_EVERY_RANGE_S)


def _zero_or(key: str, default: float, low: float, high: float) -> float:
    """A number of seconds from ``low`` to ``high``, or 0 for off."""
    value = number(key, default, 0.0, high)
    if 0 < value < low:
        raise UsageError(f"{key} must be 0 (off) or from {low:g} to {high:g} seconds, not {value:g}.")
    return value


def add_run_commands(subparsers: Any) -> None:
    """Register ``run``, ``worker`` and ``sync`` on the ``vqbot`` subparsers."""
    run = subparsers.add_parser("run", help="run the Discord bot and one engine worker (one GPU, one process)")
    run.add_argument("--sync", action="store_true", help="register the slash commands with Discord at start")
    run.add_argument("--no-worker", action="store_true", help="bot only; separate `vqbot worker`s take the jobs")
    run.set_defaults(func=run_command)
    worker = subparsers.add_parser("worker", help="run an engine worker alone against the shared database")
    devices = worker.add_mutually_exclusive_group()
    devices.add_argument("--gpus", metavar="all|N,N", help="one worker process per GPU: all, or GPU numbers (0,1)")
    devices.add_argument("--devices", metavar="DEV,DEV", help="one worker process per device, e.g. cpu,cpu or cuda:0,cuda:1")
    worker.set_defaults(func=worker_command)
    sync = subparsers.add_parser("sync", help="register the slash commands with Discord, then exit")
    sync.add_argument("--guild", type=int, help="a server id: commands appear there at once (for testing)")
    sync.set_defaults(func=sync_command)


# ---------------------------------------------------------------- entry points
def run_command(args: argparse.Namespace, settings: Settings) -> int:
    options = RunOptions.from_env(settings)
    return asyncio.run(_serve(settings, options, with_bot=True, with_worker=not args.no_worker, sync=args.sync))


def worker_command(args: argparse.Namespace, settings: Settings) -> int:
    options = RunOptions.from_env(settings)
    if args.gpus is not None or args.devices is not None:
        from vqbot_cli import gpus

        devices = gpus.listed_devices(args.devices) if args.devices is not None else \
            gpus.gpu_devices(args.gpus, gpus.count_gpus())
        plans = gpus.plan_workers(devices, base_name=gpus.base_name(os.environ), model_dir=settings.model_dir)
        return gpus.run_workers(plans, env_file=args.env_file)
    return asyncio.run(_serve(settings, options, with_bot=False, with_worker=True, sync=False))


def sync_command(args: argparse.Namespace, settings: Settings) -> int:
    options = RunOptions.from_env(settings)
    return asyncio.run(_sync(settings, options, args.guild))


# ---------------------------------------------------------------- checks
def _token(settings: Settings) -> str:
    if not settings.discord_token:
        raise SetupProblem("DISCORD_TOKEN is not set. Put the bot token in .env (see .env.example and "
                           "docs/discord.md for where to find it).")
    return settings.discord_token.get_secret_value()


async def _open_store(settings: Settings) -> Store:
    """Open and check the database that VQBOT_DATABASE names, a SQLite file or a PostgreSQL server (before
    anything slow). The store says each fault (a folder, a file that is no database, no permission, a full
    disk, a newer schema, a server that doesn't answer) as StoreUnavailable: one sentence with what to do."""
    from db import open_store
    from db.errors import StoreUnavailable

    try:
        return await open_store(settings.database_spec)
    except StoreUnavailable as exc:
        raise SetupProblem(str(exc)) from None


async def _load_engine(settings: Settings, options: RunOptions, missing: list[ModelNeed]) -> Engine:
    from engine.clip import clip_source
    from engine.runner import Engine, EngineConfig
    from engine.vqgan import ModelLoadError
    from jobspec import JobParams, Prompt

    models = options.models
    try:
        fetch_models(settings, models, missing)
    except UsageError as exc:
        raise SetupProblem(str(exc)) from None
    try:
        clip_source(settings.clip, settings.clip_pretrained)  # no weights: refused now, not after the VQGAN loaded
    except ModelLoadError as exc:
        raise SetupProblem(f"VQBOT_CLIP: {exc}") from None
    engine = Engine(EngineConfig(model_dir=settings.model_dir, device=settings.device, precision=settings.precision,
                                 compile=settings.compile, fused_kernels=settings.fused_kernels,
                                 vqgan_config=settings.vqgan_config, vqgan_checkpoint=settings.vqgan_checkpoint))
    if (warning := cpu_warning(settings.device, engine.device.type)) is not None:
        print(warning, file=sys.stderr)
    log.info("loading models on %s", engine.device)
    for name in models:
        probe = JobParams(prompts=(Prompt("probe"),), model=name, clip_model=settings.clip,
                          clip_pretrained=settings.clip_pretrained)
        try:
            await asyncio.to_thread(engine.preload, probe)
        except Exception as exc:  # noqa: BLE001 - CLIP weights missing offline, a corrupt file, ...
            raise SetupProblem(f"Could not load the models ({name}, CLIP {settings.clip} {settings.clip_pretrained}): "
                               f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. Fetch VQGAN weights "
                               "with `vqbot models download NAME`; CLIP weights download on first use (needs network, "
                               "or a local-dir: model).") from None
    return engine


def _warm_up_shapes(settings: Settings, options: RunOptions, engine: Any) -> tuple[Any, ...]:
    """The job shapes a compiling worker prepares before taking jobs (VQBOT_WARM_UP=0: none): a grid's
    candidate at the default grid settings (the default /imagine is a grid) and the default full size
    (what an upscale makes, and /imagine where a server chose one picture). A server with other grid or
    size settings compiles its shapes on their first job."""
    from bot.grids import grid_params
    from db import GuildSettings
    from jobspec import JobParams, Prompt

    if engine.config.compile == "none" or options.warm_up is False:
        return ()
    full = JobParams(prompts=(Prompt("warm-up"),), model=options.models[0], clip_model=settings.clip,
                     clip_pretrained=settings.clip_pretrained)
    return grid_params(full, GuildSettings())[0], full


def worker_config(options: RunOptions) -> WorkerConfig:
    """The worker's configuration from the settings (VQBOT_WORKER_NAME, VQBOT_MAX_BATCH, VQBOT_LEASE_S, ...)."""
    from worker.worker import WorkerConfig

    return WorkerConfig(name=options.worker_name, max_batch=options.max_batch, lease_s=options.lease_s,
                        timelapse_dir=options.data_dir / "timelapses", unstored_dir=options.data_dir / "unstored",
                        checkpoint_every_s=options.checkpoint_every_s or None,
                        checkpoint_every_steps=options.checkpoint_every_steps or None)


def housekeeping_config(options: RunOptions) -> HousekeepingConfig:
    """What housekeeping keeps and how often it runs (VQBOT_PRUNE_EVERY_S, VQBOT_KEEP_*_DAYS)."""
    from bot.config import BotConfig
    from worker.housekeeping import HousekeepingConfig

    return HousekeepingConfig(every_s=options.prune_every_s, keep_results_days=options.keep_results_days,
                              keep_uploads_days=options.keep_uploads_days,
                              uploads_dir=BotConfig(data_dir=options.data_dir).attachments_dir)


def start_housekeeping(store: Store, options: RunOptions, stop: asyncio.Event) -> asyncio.Task[None] | None:
    """Housekeeping's rounds as a task until ``stop`` is set (None when VQBOT_PRUNE_EVERY_S is 0)."""
    if not options.prune_every_s:
        return None
    from worker.housekeeping import Housekeeping

    keeper = Housekeeping(store, housekeeping_config(options))
    return asyncio.create_task(keeper.run_forever(stop), name="vqbot-housekeeping")


# ---------------------------------------------------------------- serving
async def _serve(settings: Settings, options: RunOptions, *, with_bot: bool, with_worker: bool, sync: bool) -> int:
    import discord

    from bot.client import VQBot
    from bot.config import BotConfig

    token = _token(settings) if with_bot else ""
    store = await _open_store(settings)  # the database first: its faults show in a second, not after the models
    bot: VQBot | None = None
    worker = None
    tasks: list[asyncio.Task[Any]] = []
    presence = _presence(store, options, with_bot=with_bot, with_worker=with_worker, parts=lambda: (bot, worker))
    reporting = asyncio.create_task(presence.run(), name="vqbot-presence")
    cleaning: asyncio.Task[None] | None = None  # housekeeping: never ends the process, stops with it
    try:
        # then the models' files (present, or allowed to download), then Discord, then downloads and loading
        try:
            missing = check_model_files(settings, options.models, auto_download=options.auto_download) \
                if with_worker else []
        except UsageError as missing_model:
            raise SetupProblem(str(missing_model)) from None
        if with_bot:
            await check_discord(token)
        engine = await _load_engine(settings, options, missing) if with_worker else None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not on this platform: Ctrl-C raises
                loop.add_signal_handler(sig, stop.set)
        if with_worker:
            from worker.worker import Worker

            async def changed() -> None:
                if bot is not None:
                    bot.jobs_changed()

            assert engine is not None
            worker = Worker(store, engine, worker_config(options), on_change=changed,
                            warm_up=_warm_up_shapes(settings, options, engine))
            tasks.append(asyncio.create_task(worker.run_forever(), name="vqbot-worker"))
        cleaning = start_housekeeping(store, options, stop)
        if with_bot:
            bot = VQBot(store, BotConfig(data_dir=options.data_dir, models=options.models, clip_model=settings.clip,
                                         clip_pretrained=settings.clip_pretrained),
                        sync_commands=sync, sync_guild=options.sync_guild,
                        worker_status=worker.status if worker else None,
                        notify_worker=worker.wake if worker else None)
            tasks.append(asyncio.create_task(bot.start(token), name="vqbot-bot"))
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        for task in done:
            exc = None if task is waiter or task.cancelled() else task.exception()
            if exc is not None:
                if (problem := explain(exc)) is not None:
                    raise problem from None
                if isinstance(exc, discord.PrivilegedIntentsRequired):
                    raise SetupProblem("Discord asked for privileged intents, which vqbot does not use.") from None
                raise exc
        log.info("stopping: handing running jobs back to the queue")
        return 0
    finally:
        if cleaning is not None:
            cleaning.cancel()
        if worker is not None:
            worker.stop()
        if bot is not None:
            await bot.close()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
        reporting.cancel()
        await asyncio.wait([reporting])
        await store.close()


def _presence(store: Store, options: RunOptions, *, with_bot: bool, with_worker: bool,
              parts: Callable[[], tuple[Any, Any]]) -> PresenceReporter:
    """What this process reports for ``vqbot health``: the worker's state, and whether the bot is connected."""

    def worker_state() -> tuple[str, str]:
        worker = parts()[1]
        if worker is None:
            return "starting", "loading models"
        status = worker.status()
        return status.state, f"{status.device}, {len(status.jobs)} jobs"

    def bot_state() -> tuple[str, str]:
        bot = parts()[0]
        if bot is None or not bot.is_ready() or bot.is_closed():
            return "connecting", ""
        return "connected", f"{len(bot.guilds)} servers"

    reporter = PresenceReporter(store)
    if with_worker:
        reporter.add(options.worker_name, "worker", worker_state)
    if with_bot:
        reporter.add(f"{options.worker_name}-bot", "bot", bot_state)
    return reporter


async def _sync(settings: Settings, options: RunOptions, guild: int | None) -> int:
    from bot.client import VQBot
    from bot.config import BotConfig

    token = _token(settings)
    store = await _open_store(settings)  # the database's faults show in a second
    try:
        await check_discord(token)  # then the token and the network, each failure one sentence
    except BaseException:
        await store.close()
        raise
    bot = VQBot(store, BotConfig(data_dir=options.data_dir, models=options.models),
                sync_guild=guild if guild is not None else options.sync_guild)
    try:
        try:
            await bot.login(token)
            synced = await bot.sync_tree()
        except Exception as exc:  # the network or Discord failing after the check: one sentence
            if (problem := explain(exc)) is None:
                raise
            raise problem from None
        where = f"server {bot.sync_guild}" if bot.sync_guild else "every server (global commands may take up to an hour)"
        print(f"Registered {len(synced)} commands for {where}: {', '.join('/' + c.name for c in synced)}")
        return 0
    finally:
        await bot.close()
        await store.close()

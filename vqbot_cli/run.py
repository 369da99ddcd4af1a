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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vqbot_cli.errors import UsageError, shown
from vqbot_cli.settings import Settings, number, switch

if TYPE_CHECKING:
    from db import SqliteStore
    from engine.runner import Engine
    from worker.worker import WorkerConfig

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 60.0
# How long a worker's claim on a job lasts without a heartbeat (beats come every lease/3). 30 s: a killed
# worker's jobs are taken again within half a minute, while two missed beats (each may wait up to the
# database's 10 s busy timeout) are still survived. Below 15 s a single beat stuck behind a write lock
# for the busy timeout would lose a live worker's jobs.
DEFAULT_LEASE_S = 30.0
LEASE_RANGE_S = (15.0, 3600.0)


class SetupProblem(UsageError):
    """Something missing or wrong in the setup; the message says what to do."""


@dataclass(frozen=True)
class RunOptions:
    """The bot-side settings beyond ``Settings`` (all optional; documented in .env.example)."""

    data_dir: Path
    sync_guild: int | None
    worker_name: str
    max_batch: int | None  # None: as many jobs a batch as memory admission allows
    models: tuple[str, ...]
    warm_up: bool = True
    auto_download: bool = True
    lease_s: float = DEFAULT_LEASE_S

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
                max_batch=int(number("VQBOT_MAX_BATCH", 0, 1, 64, whole=True)) or None,  # 0: unset
                models=models or (settings.vqgan,),
                warm_up=switch("VQBOT_WARM_UP"),
                auto_download=switch("VQBOT_AUTO_DOWNLOAD"),
                lease_s=number("VQBOT_LEASE_S", DEFAULT_LEASE_S, *LEASE_RANGE_S),
            )
        except UsageError as exc:
            raise SetupProblem(str(exc)) from None


def add_run_commands(subparsers: Any) -> None:
    """Register ``run``, ``worker`` and ``sync`` on the ``vqbot`` subparsers."""
    run = subparsers.add_parser("run", help="run the Discord bot and one engine worker (one GPU, one process)")
    run.add_argument("--sync", action="store_true", help="register the slash commands with Discord at start")
    run.add_argument("--no-worker", action="store_true", help="bot only; separate `vqbot worker`s take the jobs")
    run.set_defaults(func=run_command)
    worker = subparsers.add_parser("worker", help="run an engine worker alone against the shared database")
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


async def _open_store(settings: Settings) -> SqliteStore:
    """Open and check the database (before anything slow). The store says each fault (a folder, a file
    that is no database, no permission, a full disk, a newer schema) as StoreUnavailable: one sentence
    with what to do."""
    from db import SqliteStore
    from db.errors import StoreUnavailable

    try:
        return await SqliteStore.open(settings.database)
    except StoreUnavailable as exc:
        raise SetupProblem(str(exc)) from None


def _check_weights(settings: Settings, options: RunOptions) -> None:
    """Fail before connecting when a model's files are missing."""
    if settings.vqgan_config or settings.vqgan_checkpoint:
        for key, path in (("VQBOT_VQGAN_CONFIG", settings.vqgan_config),
                          ("VQBOT_VQGAN_CHECKPOINT", settings.vqgan_checkpoint)):
            if path is None or not path.is_file():
                raise SetupProblem(f"{key} must name an existing file (both VQBOT_VQGAN_CONFIG and "
                                   f"VQBOT_VQGAN_CHECKPOINT are needed), got {path}.")
        return
    from engine.catalog import model_status
    from engine.download import DownloadError, download_model
    from engine.models import resolve_vqgan
    from engine.vqgan import ModelLoadError

    for name in options.models:
        try:
            if options.auto_download and not model_status(name, settings.model_dir).ready:  # first run: fetch it where the network allows
                print(f"{name} is not in {settings.model_dir} yet; downloading it once…", file=sys.stderr)
                download_model(name, settings.model_dir, progress=True)
            resolve_vqgan(name, settings.model_dir)
        except DownloadError as exc:
            raise SetupProblem(f"{exc} Fetch it later with: vqbot models download {name}") from None
        except (ModelLoadError, KeyError, ValueError) as exc:
            message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            raise SetupProblem(message) from None


async def _load_engine(settings: Settings, options: RunOptions) -> Engine:
    from engine.clip import clip_source
    from engine.runner import Engine, EngineConfig
    from engine.vqgan import ModelLoadError
    from jobspec import JobParams, Prompt

    models = options.models
    _check_weights(settings, options)
    try:
        clip_source(settings.clip, settings.clip_pretrained)  # no weights: refused now, not after the VQGAN loaded
    except ModelLoadError as exc:
        raise SetupProblem(f"VQBOT_CLIP: {exc}") from None
    engine = Engine(EngineConfig(model_dir=settings.model_dir, device=settings.device, precision=settings.precision,
                                 compile=settings.compile, fused_kernels=settings.fused_kernels,
                                 vqgan_config=settings.vqgan_config, vqgan_checkpoint=settings.vqgan_checkpoint))
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


def _warm_up_shape(settings: Settings, options: RunOptions, engine: Any) -> Any:
    """The job shape a compiling worker prepares before taking jobs: the default one (VQBOT_WARM_UP=0: none)."""
    from jobspec import JobParams, Prompt

    if engine.config.compile == "none" or options.warm_up is False:
        return None
    return JobParams(prompts=(Prompt("warm-up"),), model=options.models[0], clip_model=settings.clip,
                     clip_pretrained=settings.clip_pretrained)


def worker_config(options: RunOptions) -> WorkerConfig:
    """The worker's configuration from the settings (VQBOT_WORKER_NAME, VQBOT_MAX_BATCH, VQBOT_LEASE_S, ...)."""
    from worker.worker import WorkerConfig

    return WorkerConfig(name=options.worker_name, max_batch=options.max_batch, lease_s=options.lease_s,
                        timelapse_dir=options.data_dir / "timelapses", unstored_dir=options.data_dir / "unstored")


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
    try:
        engine = await _load_engine(settings, options) if with_worker else None
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
                            warm_up=_warm_up_shape(settings, options, engine))
            tasks.append(asyncio.create_task(worker.run_forever(), name="vqbot-worker"))
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
                if isinstance(exc, discord.LoginFailure):
                    raise SetupProblem("Discord refused the token in DISCORD_TOKEN; reset it in the Developer "
                                       "Portal (Bot -> Reset Token) and update .env.") from None
                if isinstance(exc, discord.PrivilegedIntentsRequired):
                    raise SetupProblem("Discord asked for privileged intents, which vqbot does not use.") from None
                raise exc
        log.info("stopping: handing running jobs back to the queue")
        return 0
    finally:
        if worker is not None:
            worker.stop()
        if bot is not None:
            await bot.close()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
        await store.close()


async def _sync(settings: Settings, options: RunOptions, guild: int | None) -> int:
    from bot.client import VQBot
    from bot.config import BotConfig

    token = _token(settings)
    store = await _open_store(settings)
    bot = VQBot(store, BotConfig(data_dir=options.data_dir, models=options.models),
                sync_guild=guild if guild is not None else options.sync_guild)
    try:
        import discord

        try:
            await bot.login(token)
        except discord.LoginFailure:
            raise SetupProblem("Discord refused the token in DISCORD_TOKEN; reset it in the Developer Portal "
                               "(Bot -> Reset Token) and update .env.") from None
        synced = await bot.sync_tree()
        where = f"server {bot.sync_guild}" if bot.sync_guild else "every server (global commands may take up to an hour)"
        print(f"Registered {len(synced)} commands for {where}: {', '.join('/' + c.name for c in synced)}")
        return 0
    finally:
        await bot.close()
        await store.close()

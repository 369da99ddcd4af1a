"""Real ``vqbot worker`` processes on a shared SQLite queue, started fast enough to be killed 20 times a run.

Each worker is ``vqbot_cli.main.main(["worker"])`` in a process of its own, with its own
environment, working folder, log file, step journal (``tests.faults.injection``) and optional
kill point. It is forked from a server process that imported torch, open_clip and vqbot once
(multiprocessing's forkserver, preloaded), so a restart costs the model load (well under a
second with the tiny models) instead of torch's import (8 to 15 s on a busy 2-core machine).
Nothing else differs from ``python -m vqbot_cli.main worker``: signals, the SQLite file, the
outbox folder and the logs are the real ones. The forkserver holds no threads and has run no
torch work, so forking it is safe. (multiprocessing imports the main module in each child, as it
does for any start method but fork: ``python -m pytest`` and ``pytest`` are fine; a script that runs
``pytest.main()`` must guard it with ``if __name__ == "__main__":``.)
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
from dataclasses import dataclass, field
from multiprocessing.context import ForkServerContext
from pathlib import Path

from tests.faults.injection import KillPoint, arm, fill_disk_at_step, journal_steps
from tests.worker.engine_fixtures import TinyModels

LEASE_S = 15  # VQBOT_LEASE_S at its minimum
MAX_BATCH = 2
CHECKPOINT_EVERY_STEPS = 5  # VQBOT_CHECKPOINT_EVERY_STEPS: four checkpoints a 20-step job, 30 s would be none
PRELOAD = ["torch", "open_clip", "discord", "PIL.Image", "safetensors.torch", "vqbot_cli.main", "vqbot_cli.run",
           "engine.runner", "engine.clip", "engine.optimiser", "engine.vqgan", "worker.worker", "db", "bot.client",
           "tests.faults.injection", "tests.faults.workers"]
STOP_TIMEOUT_S = 120.0  # a hang guard for a clean stop, not a measurement

_context: ForkServerContext | None = None


def forkserver() -> ForkServerContext:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def worker_env(root: Path, models: TinyModels, name: str, **extra: str) -> dict[str, str]:
    """The settings of a worker on the queue in ``root/data``: CPU, tiny models, the shortest lease."""
    env = {"VQBOT_DATABASE": str(root / "data" / "vqbot.sqlite3"), "VQBOT_MODEL_DIR": str(root / "models"),
           "VQBOT_VQGAN_CONFIG": str(models.vqgan_config), "VQBOT_VQGAN_CHECKPOINT": str(models.vqgan_checkpoint),
           "VQBOT_CLIP": models.clip_model, "VQBOT_DEVICE": "cpu", "VQBOT_PRECISION": "fp32",
           "VQBOT_COMPILE": "none", "VQBOT_WARM_UP": "0", "VQBOT_AUTO_DOWNLOAD": "0", "HF_HUB_OFFLINE": "1",
           "VQBOT_LEASE_S": str(LEASE_S), "VQBOT_MAX_BATCH": str(MAX_BATCH), "VQBOT_WORKER_NAME": name,
           "VQBOT_CHECKPOINT_EVERY_STEPS": str(CHECKPOINT_EVERY_STEPS), "VQBOT_LOG_LEVEL": "INFO"}
    env.update(extra)
    return env


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    folder: Path  # working folder; its logs/ and journals/ hold this worker's files
    env: dict[str, str]
    kill_point: KillPoint | None = None
    threads: int = 1  # two workers share two cores
    disk_full_at_step: int | None = None  # the disk fills once a job has made this many steps

    @property
    def log(self) -> Path:
        return self.folder / "logs" / f"{self.name}.log"

    @property
    def journal(self) -> Path:
        return self.folder / "journals" / f"{self.name}.steps"


def _run_worker(spec: WorkerSpec) -> None:  # pragma: no cover - runs in the worker process
    log = os.open(spec.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    for key in [k for k in os.environ if k.startswith(("VQBOT_", "DISCORD_"))]:
        del os.environ[key]
    os.environ.update(spec.env)
    os.chdir(spec.folder)
    # A full disk answers a write with an error; RLIMIT_FSIZE, which stands in for one, would also send SIGXFSZ.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    import torch

    torch.set_num_threads(spec.threads)
    journal_steps(spec.journal)
    if spec.kill_point is not None:
        arm(spec.kill_point)
    if spec.disk_full_at_step is not None:
        fill_disk_at_step(spec.disk_full_at_step, Path(f"{spec.env['VQBOT_DATABASE']}-wal"))
    from vqbot_cli.main import main

    sys.exit(main(["worker"]))


@dataclass
class WorkerProcess:
    spec: WorkerSpec
    process: multiprocessing.process.BaseProcess = field(init=False)
    how_it_ended: str = "running"  # "killed" (by the suite), "died" (at its kill point), "stopped" (SIGTERM)

    def __post_init__(self) -> None:
        for folder in (self.spec.log.parent, self.spec.journal.parent):
            folder.mkdir(parents=True, exist_ok=True)
        self.process = forkserver().Process(target=_run_worker, args=(self.spec,), name=self.spec.name, daemon=True)
        self.process.start()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def alive(self) -> bool:
        return self.process.exitcode is None

    def log_text(self) -> str:
        return self.spec.log.read_text(errors="backslashreplace") if self.spec.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL, now: no handler runs, nothing is handed back."""
        if self.alive:
            assert self.process.pid is not None
            os.kill(self.process.pid, signal.SIGKILL)
            self.how_it_ended = "killed"
        self.process.join()

    async def stop(self) -> int:
        """SIGTERM, as a deploy or Ctrl-C does, and its exit status once it has stopped."""
        assert self.process.pid is not None
        os.kill(self.process.pid, signal.SIGTERM)
        await asyncio.to_thread(self.process.join, STOP_TIMEOUT_S)
        assert not self.alive, f"{self.name} did not stop within {STOP_TIMEOUT_S:.0f} s:\n{self.log_text()[-3000:]}"
        self.how_it_ended = "stopped"
        assert self.process.exitcode is not None
        return self.process.exitcode

    def reap(self) -> None:
        """The process ended by itself (its kill point): wait for the forkserver to say so."""
        self.process.join()
        if self.how_it_ended == "running":
            self.how_it_ended = "died"

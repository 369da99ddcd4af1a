"""The `vqbot worker` process the service benchmark drives: its model files, environment, log and readiness.

The worker is a black box: a real ``python -m vqbot_cli.main worker`` process of any checkout, configured
only through environment variables (the ones .env.example documents), its log written to a file that the
benchmark reads to learn when the worker says it is ready.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The worker's own words (worker/worker.py): "worker NAME: ready after N s" once a compiling worker has
# prepared its graphs; "worker NAME started on DEVICE" when its loop begins (the moment a worker that
# doesn't warm up, e.g. on the CPU, takes jobs).
READY_PATTERN = r"\bready\b"
STARTED_PATTERN = r"\bworker \S+ started on\b"
DONE_MARKER = ".written"


class WorkerDied(RuntimeError):
    """The worker process ended while the benchmark needed it; the message holds its log's last lines."""


@dataclass(frozen=True)
class ModelFiles:
    """A VQGAN in the taming format (model.yaml + last.ckpt) and an open_clip ``local-dir:`` folder."""

    vqgan_config: Path
    vqgan_checkpoint: Path
    clip_dir: Path

    @property
    def clip_model(self) -> str:
        return f"local-dir:{self.clip_dir}"


def write_models(folder: Path, *, tiny: bool) -> ModelFiles:
    """Random-weight models in the real file formats: the test models (``tiny``) or VQGAN f16 16384 and
    CLIP ViT-B/32 (the architectures the bot serves). A folder written before is used as it is."""
    folder.mkdir(parents=True, exist_ok=True)
    files = ModelFiles(folder / "model.yaml", folder / "last.ckpt", folder / "clip")
    if (folder / DONE_MARKER).is_file():
        return files
    shutil.rmtree(files.clip_dir, ignore_errors=True)  # a write cut short before
    if tiny:
        from tests.tiny_models import write_tiny_clip, write_tiny_vqgan

        write_tiny_vqgan(folder)
        write_tiny_clip(files.clip_dir)
    else:
        from bench.gpu_smoke import write_real_architectures

        write_real_architectures(folder)
    (folder / DONE_MARKER).write_text("tiny\n" if tiny else "f16_16384 + ViT-B-32-quickgelu\n")
    return files


@dataclass(frozen=True)
class WorkerLaunch:
    """How to start the worker: which checkout and interpreter, and every setting it gets."""

    repo: Path
    python: str
    database: str
    models: ModelFiles
    device: str
    compile: str
    cache_dir: Path
    model_dir: Path
    log_path: Path
    name: str = "bench-worker"
    extra_env: tuple[tuple[str, str], ...] = ()

    def command(self) -> list[str]:
        # An empty --env-file: a .env in the checkout must not change the settings.
        empty = self.log_path.parent / "empty.env"
        empty.write_text("")
        return [self.python, "-m", "vqbot_cli.main", "--env-file", str(empty), "worker"]

    def env(self) -> dict[str, str]:
        """The caller's environment without any VQBOT_ setting or compile cache of its own, plus ours."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("VQBOT_") and k not in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
        env.update({
            # the checkout first, then whatever the caller had (packages carried to a GPU machine)
            "PYTHONPATH": os.pathsep.join(p for p in (str(self.repo), os.environ.get("PYTHONPATH", "")) if p),
            "PYTHONUNBUFFERED": "1",
            "VQBOT_DATABASE": self.database,
            "VQBOT_DEVICE": self.device,
            "VQBOT_COMPILE": self.compile,
            "VQBOT_VQGAN_CONFIG": str(self.models.vqgan_config),
            "VQBOT_VQGAN_CHECKPOINT": str(self.models.vqgan_checkpoint),
            "VQBOT_CLIP": self.models.clip_model,
            "VQBOT_CLIP_PRETRAINED": "",
            "VQBOT_MODEL_DIR": str(self.model_dir),
            "VQBOT_DATA_DIR": str(self.model_dir.parent / "data"),
            "VQBOT_AUTO_DOWNLOAD": "0",
            "VQBOT_WORKER_NAME": self.name,
            "VQBOT_LOG_LEVEL": "INFO",
            "TORCHINDUCTOR_CACHE_DIR": str(self.cache_dir),
            "TRITON_CACHE_DIR": str(self.cache_dir / "triton"),
        })
        env.update(dict(self.extra_env))
        return env


def cache_is_empty(folder: Path) -> bool:
    return not folder.is_dir() or not any(folder.iterdir())


@dataclass
class WorkerProcess:
    """One run of the worker, from start to stop; its log is appended to ``launch.log_path``."""

    launch: WorkerLaunch
    label: str
    expects_warm_up: bool
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # time.monotonic() at the start
    _offset: int = 0
    _pending: str = ""
    lines: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time first seen, line)

    def start(self) -> None:
        self.launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.launch.log_path.open("a", encoding="utf-8") as log:
            log.write(f"=== bench_service: worker start '{self.label}': {' '.join(self.launch.command())} "
                      f"(cwd {self.launch.repo})\n")
        self._offset = self.launch.log_path.stat().st_size
        with self.launch.log_path.open("ab") as log:
            self.started_at = time.monotonic()
            self.process = subprocess.Popen(self.launch.command(), cwd=self.launch.repo, env=self.launch.env(),
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def read_log(self) -> list[tuple[float, str]]:
        """Lines the worker wrote since the last call, each with the time the benchmark first saw it."""
        with self.launch.log_path.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        self._offset += len(chunk)
        now = time.monotonic()
        text = self._pending + chunk.decode("utf-8", errors="replace")
        *complete, self._pending = text.split("\n")
        new = [(now, line) for line in complete]
        self.lines.extend(new)
        return new

    def tail(self, count: int = 30) -> str:
        self.read_log()
        return "\n".join(line for _, line in self.lines[-count:])

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise WorkerDied(f"the worker exited (status {self.process.returncode if self.process else None}); "
                             f"its log ends:\n{self.tail()}")

    async def wait_ready(self, *, ready_pattern: str, timeout_s: float, poll_s: float) -> float:
        """Seconds from the start to the worker's ready line (its "started" line when it doesn't warm up)."""
        ready = re.compile(ready_pattern)
        started = re.compile(STARTED_PATTERN)
        deadline = self.started_at + timeout_s
        while True:
            for seen, line in self.read_log():
                if ready.search(line) or (not self.expects_warm_up and started.search(line)):
                    return seen - self.started_at
            self.check_alive()
            if time.monotonic() > deadline:
                raise WorkerDied(f"the worker was not ready after {timeout_s:.0f} s; its log ends:\n{self.tail()}")
            await asyncio.sleep(poll_s)

    def stop(self, timeout_s: float) -> tuple[int | None, float]:
        """SIGTERM (the worker hands running jobs back and exits), SIGKILL after ``timeout_s``:
        (exit status, seconds it took)."""
        if self.process is None:
            return None, 0.0
        begun = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                print(f"worker '{self.label}' did not stop within {timeout_s:.0f} s; killing it", file=sys.stderr)
                self.process.kill()
                self.process.wait()
        self.read_log()
        return self.process.returncode, time.monotonic() - begun

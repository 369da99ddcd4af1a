"""``vqbot worker --gpus all|0,1`` (or ``--devices cpu,cpu``): one worker process per device, one store.

Each child is a plain ``vqbot worker`` with its own name (``<host>-cuda0``), device (``cuda:0``)
and compile cache folder (``<model dir>/compile-cache/cuda0``: Inductor's cache is per process
tree and GPUs of one host may differ). The parent only starts, watches and stops them: SIGTERM or
Ctrl-C stops every child (each hands its running jobs back); a child that exits with an error
stops the others, and the parent exits with that child's status, so a supervisor (Docker,
systemd) restarts the set.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vqbot_cli.errors import UsageError, shown
from vqbot_cli.settings import check_device

MAX_WORKERS = 64


@dataclass(frozen=True)
class WorkerPlan:
    """One child worker: what makes it different from its siblings."""

    name: str
    device: str
    compile_cache: Path

    def env(self) -> dict[str, str]:
        return {"VQBOT_DEVICE": self.device, "VQBOT_WORKER_NAME": self.name,
                "TORCHINDUCTOR_CACHE_DIR": str(self.compile_cache)}


def gpu_devices(spec: str, gpu_count: int) -> list[str]:
    """``--gpus``: ``all`` or a list of GPU numbers, as ``cuda:N`` devices; UsageError for anything else."""
    text = spec.strip().lower()
    if gpu_count <= 0:
        raise UsageError(f"--gpus {shown(spec)}: torch sees no CUDA GPU on this machine; run `vqbot worker` alone "
                         "for one CPU worker, or see `vqbot doctor` for why no GPU shows.")
    if text == "all":
        return [f"cuda:{n}" for n in range(gpu_count)]
    numbers = []
    for item in text.split(","):
        item = item.strip()
        if not (item.isascii() and item.isdigit() and len(item) <= 3):
            raise UsageError(f"--gpus takes all or GPU numbers separated by commas (e.g. 0,1), not {shown(spec)}.")
        if int(item) >= gpu_count:
            raise UsageError(f"--gpus {shown(spec)}: this machine has {gpu_count} GPU(s), numbered 0 to {gpu_count - 1}.")
        numbers.append(int(item))
    if len(set(numbers)) != len(numbers):
        raise UsageError(f"--gpus {shown(spec)} names a GPU twice; one worker per GPU batches its jobs itself.")
    return [f"cuda:{n}" for n in numbers]


def listed_devices(spec: str) -> list[str]:
    """``--devices``: devices separated by commas (``cpu,cpu``, ``cuda:0,cuda:1``); a device may repeat."""
    devices = [check_device(item, what="each of --devices") for item in spec.split(",")]
    if "auto" in devices:
        raise UsageError("--devices names devices (cpu, cuda:N, mps), not auto.")
    return devices


def plan_workers(devices: Sequence[str], *, base_name: str, model_dir: Path) -> list[WorkerPlan]:
    """One plan per device: ``<base>-cuda0``...; devices given more than once are told apart by a number."""
    if not devices:
        raise UsageError("No device to start a worker on.")
    if len(devices) > MAX_WORKERS:
        raise UsageError(f"At most {MAX_WORKERS} workers at once, not {len(devices)}.")
    plans = []
    for index, device in enumerate(devices):
        label = device.replace(":", "")
        if devices.count(device) > 1:
            label = f"{label}-{devices[:index].count(device)}"
        plans.append(WorkerPlan(f"{base_name}-{label}", device, model_dir / "compile-cache" / label))
    return plans


def base_name(environ: Mapping[str, str]) -> str:
    return (environ.get("VQBOT_WORKER_NAME") or "").strip() or socket.gethostname()


def count_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_workers(plans: Sequence[WorkerPlan], *, env_file: str | None) -> int:
    """Start one ``vqbot worker`` per plan and wait for them; the first failing child's status."""
    command = [sys.executable, "-m", "vqbot_cli.main", *(["--env-file", env_file] if env_file else []), "worker"]
    alive: dict[int, WorkerPlan] = {}
    stopping = False

    def stop_all(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(alive):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        for plan in plans:
            child = subprocess.Popen(command, env={**os.environ, **plan.env()})
            alive[child.pid] = plan
            print(f"started worker {plan.name} on {plan.device} (pid {child.pid})", file=sys.stderr)
        while alive:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:
                break
            plan_done = alive.pop(pid, None)
            code = os.waitstatus_to_exitcode(wait_status)
            code = 128 - code if code < 0 else code  # killed by a signal: the shell's 128+N
            if plan_done is not None and code != 0 and not stopping:
                print(f"vqbot: worker {plan_done.name} on {plan_done.device} exited with status {code}; "
                      "stopping the others", file=sys.stderr)
                stop_all()
            if code != 0 and status == 0:
                status = code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status

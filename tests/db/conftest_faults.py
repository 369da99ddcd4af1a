"""Faults a test can't make inside its own process, made in a child Python.

``in_child(code)`` runs ``code`` (the body of ``async def main()``, which returns a JSON
value) in a fresh interpreter on this checkout and returns what it returned. The child has
``attempt(awaitable)``: ``{"ok": repr}`` or ``{"error": class name, "transient", "message"}``
for a StoreError, ``{"raw": ...}`` for anything else; and ``limit_file_size(bytes)``: from
then on no file may grow past that size, as on a full disk (RLIMIT_FSIZE, SIGXFSZ ignored).

``obey_permissions=True`` runs the child without the capabilities that let root ignore file
permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a read-only folder is read-only to it.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2

PRELUDE = """
import asyncio, json, resource, signal, sys
from pathlib import Path
from db import NewJob, SqliteStore, StoreError

def limit_file_size(size):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

def unlimit_file_size():
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))

async def attempt(awaitable):
    try:
        return {"ok": repr(await awaitable)}
    except StoreError as exc:
        return {"error": type(exc).__name__, "transient": getattr(exc, "transient", None),
                "message": str(exc)}
    except BaseException as exc:
        return {"raw": f"{type(exc).__name__}: {exc}"}

def job(prompt="a wooden banana temple", user=100):
    return NewJob(1, 10, user, prompt, {"steps": 100, "width": 256, "height": 256, "cutn": 16,
                                       "model": "vqgan_imagenet_f16_16384"}, seed=7)

async def main():
"""


def _without_permission_override() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "could not drop a capability for the child")


def in_child(code: str, *, obey_permissions: bool = False) -> Any:
    script = PRELUDE + textwrap.indent(textwrap.dedent(code), "    ")
    script += "\nprint(json.dumps(asyncio.run(main())))\n"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"},
        preexec_fn=_without_permission_override if obey_permissions and os.geteuid() == 0 else None,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])

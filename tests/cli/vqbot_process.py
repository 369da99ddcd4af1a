"""Running ``vqbot`` as a user does: a real process, a clean environment, a folder of its own."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300  # a hang fails the test instead of blocking the suite

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def clean_env(cwd: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment without any vqbot setting of the machine, models and database under ``cwd``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VQBOT_", "DISCORD_"))}
    env.update({"VQBOT_MODEL_DIR": str(cwd / "models"), "VQBOT_DATABASE": str(cwd / "data" / "vqbot.sqlite3"),
                "PYTHONPATH": str(REPO), "VQBOT_AUTO_DOWNLOAD": "0", "HF_HUB_OFFLINE": "1"})
    env.update(extra or {})
    return env


def _without_root_file_powers() -> None:  # pragma: no cover - runs in the child, before exec
    """Drop root's power to ignore file permissions, so a read-only folder is read-only to the child too."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed; run the tests as a normal user")


def vqbot(*args: str | bytes, cwd: Path, env: Mapping[str, str] | None = None,
          permissions_apply: bool = False) -> subprocess.CompletedProcess[str]:
    """``python -m vqbot_cli.main ARGS`` in ``cwd``; ``permissions_apply`` makes file modes bind even as root."""
    preexec: Callable[[], None] | None = _without_root_file_powers if permissions_apply and os.geteuid() == 0 else None
    return subprocess.run([sys.executable, "-m", "vqbot_cli.main", *args], cwd=cwd, env=clean_env(cwd, env),
                          capture_output=True, text=True, errors="backslashreplace", timeout=TIMEOUT_S,
                          preexec_fn=preexec)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refusal prints (``vqbot: error: ...``, exit status 2); fails on a traceback or more output."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vqbot: error: "), result.stderr
    assert result.returncode == 2, result.returncode
    assert "\x1b" not in result.stderr and "\u202e" not in result.stderr, result.stderr  # nothing steers the terminal
    return lines[0]

"""The bot never imports torch or the engine (it runs where no GPU stack is installed)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_bot_loads_neither_torch_nor_the_engine():
    code = ("import importlib, pkgutil, sys, bot; "
            "[importlib.import_module(m.name) for m in pkgutil.walk_packages(bot.__path__, 'bot.')]; "
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'engine'))); "
            "print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr

"""``engine`` offers the names a caller needs at its top, and importing it brings no torch."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import engine

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_engine_and_its_checks_loads_no_torch() -> None:
    code = (
        "import sys, engine; "
        "from engine import DownloadError, ImageInputError, ModelNotDownloaded, UnknownModelError, get_model; "
        "import engine.catalog, engine.model_files, engine.images; "
        "get_model('vqgan_imagenet_f16_16384'); "
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')); "
        "assert not loaded, loaded"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def test_every_name_of_the_front_door_is_the_engine_modules_own() -> None:
    namespace: dict[str, object] = {}
    exec("from engine import *", namespace)
    for name in engine.__all__:
        value = namespace[name]
        home = sys.modules[value.__module__]
        assert home.__name__.startswith("engine.") and getattr(home, name) is value, name
    assert {"Engine", "EngineConfig", "Result", "Step", "load_vqgan", "load_clip"} <= set(engine.__all__)
    assert set(engine.__all__) <= set(dir(engine))


def test_the_engine_modules_still_import_from_the_package() -> None:
    from engine import catalog, memory

    assert isinstance(catalog, types.ModuleType) and isinstance(memory, types.ModuleType)
    assert not hasattr(engine, "no_such_name")

"""vqbot's engine: VQGAN+CLIP pictures from job parameters (``jobspec.JobParams``), with torch.

The names a caller needs, as open_clip's package offers its own::

    from engine import Engine, EngineConfig
    engine = Engine(EngineConfig(model_dir=Path("models")))
    for result in engine.run([(1, params)], callback=on_step):  # on_step(step: Step)
        Path(f"{result.key}.png").write_bytes(result.png)

- running jobs: ``Engine``, ``EngineConfig``, ``Result``, ``Step`` (what the step callback gets);
- loading models: ``get_model`` (the catalogue), ``download_model``, ``resolve_vqgan``,
  ``load_vqgan``, ``clip_source``, ``load_clip``;
- the errors a caller tells users about: ``ModelLoadError``, ``UnknownModelError``,
  ``ModelNotDownloaded``, ``DownloadError``, ``ImageInputError``, ``InsufficientMemoryError``.

``import engine`` imports no torch: each name is imported from its module when it is first
used (a module ``__getattr__``), so the CLI can check its arguments and files with
``engine.catalog``, ``engine.model_files`` or ``engine.images.read_picture`` before torch
loads. Everything else is in the modules themselves (``engine.runner``, ``engine.optimiser``, ...).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_HOMES = {
    "Engine": "engine.runner",
    "EngineConfig": "engine.runner",
    "Result": "engine.runner",
    "InsufficientMemoryError": "engine.runner",
    "Step": "engine.optimiser",
    "get_model": "engine.catalog",
    "UnknownModelError": "engine.catalog",
    "ModelNotDownloaded": "engine.catalog",
    "download_model": "engine.download",
    "DownloadError": "engine.model_files",
    "resolve_vqgan": "engine.models",
    "load_vqgan": "engine.vqgan",
    "ModelLoadError": "engine.vqgan",
    "clip_source": "engine.clip",
    "load_clip": "engine.clip",
    "ImageInputError": "engine.images",
}
"""Each exported name and the module that defines it."""

__all__ = [
    "DownloadError",
    "Engine",
    "EngineConfig",
    "ImageInputError",
    "InsufficientMemoryError",
    "ModelLoadError",
    "ModelNotDownloaded",
    "Result",
    "Step",
    "UnknownModelError",
    "clip_source",
    "download_model",
    "get_model",
    "load_clip",
    "load_vqgan",
    "resolve_vqgan",
]

if TYPE_CHECKING:
    from engine.catalog import ModelNotDownloaded, UnknownModelError, get_model
    from engine.clip import clip_source, load_clip
    from engine.download import download_model
    from engine.images import ImageInputError
    from engine.model_files import DownloadError
    from engine.models import resolve_vqgan
    from engine.optimiser import Step
    from engine.runner import Engine, EngineConfig, InsufficientMemoryError, Result
    from engine.vqgan import ModelLoadError, load_vqgan
else:

    def __getattr__(name: str) -> object:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module 'engine' has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value  # imported once; later lookups don't come here
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})

"""Which models a start needs, which are on disk, and what a first start downloads.

Split in two so that ``vqbot run`` checks cheaply first (files present, or allowed to download),
then asks Discord, and only then downloads (about 1 GB the first time) and loads.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from vqbot_cli.errors import UsageError
from vqbot_cli.settings import Settings


@dataclass(frozen=True)
class ModelNeed:
    """One catalogue model a start uses: whether it is ready on disk and how much a download is."""

    name: str
    ready: bool
    download_bytes: int  # 0 when ready; the catalogue's size (exact or approximate) otherwise


def gigabytes(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 100e6 else f"{size / 1e6:.0f} MB"


def model_needs(settings: Settings, models: tuple[str, ...]) -> list[ModelNeed]:
    """The catalogue models ``models`` names, each with its state in ``settings.model_dir``
    (empty when the VQGAN is given as files: VQBOT_VQGAN_CONFIG and VQBOT_VQGAN_CHECKPOINT)."""
    if settings.vqgan_config or settings.vqgan_checkpoint:
        return []
    from engine.catalog import get_model, model_status

    needs = []
    for name in models:
        spec = get_model(name)
        ready = model_status(spec, settings.model_dir).ready
        size = 0 if ready else sum(f.display_size or 0 for f in (spec.config, spec.checkpoint))
        needs.append(ModelNeed(spec.name, ready, size))
    return needs


def check_model_files(settings: Settings, models: tuple[str, ...], *, auto_download: bool) -> list[ModelNeed]:
    """Fail at once when a model can't be had (its files missing and downloads off); the missing ones."""
    if settings.vqgan_config or settings.vqgan_checkpoint:
        for key, path in (("VQBOT_VQGAN_CONFIG", settings.vqgan_config),
                          ("VQBOT_VQGAN_CHECKPOINT", settings.vqgan_checkpoint)):
            if path is None or not path.is_file():
                raise UsageError(f"{key} must name an existing file (both VQBOT_VQGAN_CONFIG and "
                                 f"VQBOT_VQGAN_CHECKPOINT are needed), got {path}.")
        return []
    missing = [need for need in model_needs(settings, models) if not need.ready]
    if missing and not auto_download:
        need = missing[0]
        raise UsageError(f"{need.name} is not in {settings.model_dir}; fetch it ({gigabytes(need.download_bytes)}) "
                         f"with: vqbot models download {need.name} (or set VQBOT_AUTO_DOWNLOAD=1).")
    return missing


def fetch_models(settings: Settings, models: tuple[str, ...], missing: list[ModelNeed]) -> None:
    """Download what is missing (saying first what and how much), then check every model's files."""
    if settings.vqgan_config or settings.vqgan_checkpoint:
        return
    from engine.download import DownloadError, download_model
    from engine.models import resolve_vqgan
    from engine.vqgan import ModelLoadError

    if missing:
        total = sum(need.download_bytes for need in missing)
        print(f"First start: downloading {', '.join(n.name for n in missing)} (about {gigabytes(total)}) into "
              f"{settings.model_dir}; later starts use these files.", file=sys.stderr)
    for need in missing:
        try:
            download_model(need.name, settings.model_dir, progress=True)
        except DownloadError as exc:
            raise UsageError(f"{exc} Fetch it later with: vqbot models download {need.name}") from None
    for name in models:
        try:
            resolve_vqgan(name, settings.model_dir)
        except (ModelLoadError, KeyError, ValueError) as exc:
            message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            raise UsageError(message) from None


def cpu_warning(asked: str, used: str) -> str | None:
    """The warning a worker that looked for a GPU (``VQBOT_DEVICE=auto``) and found none prints: every
    picture takes minutes on the CPU. Asked for the CPU by name, it says nothing."""
    if asked != "auto" or used != "cpu":
        return None
    return ("warning: no GPU in use (the worker runs on the CPU): a 512x512 picture takes many minutes instead "
            "of seconds. `vqbot doctor` says what torch sees; VQBOT_DEVICE=cuda picks a CUDA GPU.")


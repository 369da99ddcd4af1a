"""Finding and keeping models resident: VQGAN by catalogue name or files, CLIP by name."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.clip import Clip, load_clip
from engine.metadata import FileDigests
from engine.vqgan import VQGAN, ModelLoadError, load_vqgan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VQGANSource:
    """Where a VQGAN comes from: a catalogue name in a model folder, or explicit files."""

    name: str
    config: Path
    checkpoint: Path
    catalogue: bool = False  # True: ``name`` is the catalogue model these files are; False: files given by path


def resolve_vqgan(name: str, model_dir: Path) -> VQGANSource:
    """Find a catalogue model's files, preferring the converted safetensors file."""
    from engine.catalog import ModelNotDownloaded, downloaded_files, get_model

    try:
        config, weights = downloaded_files(name, model_dir)  # an unknown name raises listing the valid ones
    except ModelNotDownloaded as exc:
        raise ModelLoadError(str(exc)) from None
    return VQGANSource(name=get_model(name).name, config=config, checkpoint=weights, catalogue=True)


def pick_device(name: str | None = None) -> torch.device:
    """``auto`` (or None): CUDA when present, else CPU."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"device {name!r}; valid choices are 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"Device {name} was asked for but CUDA is not available; use --device cpu.")
    return device


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def pick_precision(device: torch.device, precision: str = "auto") -> tuple[torch.dtype, torch.dtype | None]:
    """(weights dtype, autocast dtype) for the networks.

    ``auto``: bf16 weights on CUDA (measured faster and smaller than fp32
    weights under bf16 autocast), float32 on the CPU. ``fp16``: float32 weights
    under fp16 autocast. Codebook distances and the loss stay in float32 always.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; valid choices are {', '.join(map(repr, PRECISIONS))}")
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "bf16":
        return torch.bfloat16, None
    if precision == "fp16":
        return torch.float32, torch.float16
    return torch.float32, None


class ModelCache:
    """Loads each model once and keeps it on the device."""

    def __init__(self, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        self.device, self.dtype = device, dtype
        self._vqgans: dict[tuple[Path, Path], VQGAN] = {}
        self._clips: dict[tuple[str, str | None], Clip] = {}
        self._lock = threading.Lock()
        self.digests = FileDigests()  # SHA-256 of model and picture files, for the pictures' metadata

    def vqgan(self, source: VQGANSource) -> VQGAN:
        key = (source.config, source.checkpoint)
        with self._lock:
            if key not in self._vqgans:
                log.info("loading VQGAN %s", source.name if source.catalogue else source.checkpoint)
                self._vqgans[key] = load_vqgan(source.config, source.checkpoint, device=self.device, dtype=self.dtype)
            return self._vqgans[key]

    def clip(self, name: str, pretrained: str | None) -> Clip:
        key = (name, pretrained)
        with self._lock:
            if key not in self._clips:
                log.info("loading CLIP %s (%s)", name, pretrained or "local")
                self._clips[key] = load_clip(name, pretrained, device=self.device, dtype=self.dtype)
            return self._clips[key]

"""Finding and keeping models resident: VQGAN by catalogue name or files, CLIP by name."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.clip import Clip, load_clip
from engine.vqgan import VQGAN, ModelLoadError, load_vqgan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VQGANSource:
    """Where a VQGAN comes from: a catalogue name in a model folder, or explicit files."""

    name: str
    config: Path
    checkpoint: Path


def resolve_vqgan(name: str, model_dir: Path) -> VQGANSource:
    """Find a catalogue model's files, preferring the converted safetensors file."""
    from engine.catalog import get_model, model_paths

    get_model(name)  # raises with the list of valid names
    config, checkpoint, converted = model_paths(name, model_dir)
    if not config.is_file() or not (converted.is_file() or checkpoint.is_file()):
        raise ModelLoadError(f"The VQGAN model {name} is not in {model_dir}; fetch it with: vqbot models download {name}")
    return VQGANSource(name=name, config=config, checkpoint=converted if converted.is_file() else checkpoint)


def pick_device(name: str | None = None) -> torch.device:
    """``auto`` (or None): CUDA when present, else CPU."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"Device {name} was asked for but CUDA is not available; use --device cpu.")
    return device


def pick_autocast(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """Autocast dtype for the networks: bf16 on CUDA by default, none (float32) on the CPU."""
    choices = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision not in choices:
        raise ValueError(f"precision {precision!r}; valid choices are 'auto', {', '.join(map(repr, choices))}")
    return choices[precision]


class ModelCache:
    """Loads each model once and keeps it on the device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._vqgans: dict[tuple[Path, Path], VQGAN] = {}
        self._clips: dict[tuple[str, str | None], Clip] = {}
        self._lock = threading.Lock()

    def vqgan(self, source: VQGANSource) -> VQGAN:
        key = (source.config, source.checkpoint)
        with self._lock:
            if key not in self._vqgans:
                log.info("loading VQGAN %s from %s", source.name, source.checkpoint)
                self._vqgans[key] = load_vqgan(source.config, source.checkpoint, device=self.device)
            return self._vqgans[key]

    def clip(self, name: str, pretrained: str | None) -> Clip:
        key = (name, pretrained)
        with self._lock:
            if key not in self._clips:
                log.info("loading CLIP %s (%s)", name, pretrained or "local")
                self._clips[key] = load_clip(name, pretrained, device=self.device)
            return self._clips[key]

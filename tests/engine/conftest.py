"""Tiny real models, written to disk once per test session and loaded through the real loaders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.clip import Clip, load_clip
from engine.vqgan import VQGAN, load_vqgan
from tests.tiny_models import COMPILE_DDCONFIG, write_tiny_clip, write_tiny_vqgan

CPU = torch.device("cpu")


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def vqgan_files(model_root: Path) -> tuple[Path, Path]:
    return write_tiny_vqgan(model_root / "vqgan")


@pytest.fixture(scope="session")
def clip_dir(model_root: Path) -> Path:
    return write_tiny_clip(model_root / "clip")


@pytest.fixture(scope="session")
def vqgan(vqgan_files: tuple[Path, Path]) -> VQGAN:
    return load_vqgan(*vqgan_files, device=CPU)


@pytest.fixture(scope="session")
def compile_vqgan(model_root: Path) -> VQGAN:
    """The smaller VQGAN of the torch.compile tests (tests/tiny_models.py, COMPILE_DDCONFIG)."""
    return load_vqgan(*write_tiny_vqgan(model_root / "compile-vqgan", ddconfig=COMPILE_DDCONFIG), device=CPU)


@pytest.fixture(scope="session")
def clip(clip_dir: Path) -> Clip:
    return load_clip(f"local-dir:{clip_dir}", None, device=CPU)

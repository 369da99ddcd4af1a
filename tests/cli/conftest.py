"""Tiny real models for the CLI tests, written once per module."""

from __future__ import annotations

import pytest

from tests.tiny_models import write_tiny_clip, write_tiny_vqgan


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """``vqbot imagine`` arguments that select the tiny VQGAN (factor 16) and CLIP from their files."""
    root = tmp_path_factory.mktemp("cli-models")
    config, checkpoint = write_tiny_vqgan(root / "vqgan")
    clip = write_tiny_clip(root / "clip")
    return ["--vqgan-config", str(config), "--vqgan-checkpoint", str(checkpoint), "--clip", f"local-dir:{clip}"]

"""A real engine on CPU with the tiny test models, shared by the worker and bot tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.tiny_models import write_tiny_clip, write_tiny_vqgan

TINY_MODEL = "tiny-vqgan"


@dataclass(frozen=True)
class TinyModels:
    folder: Path
    vqgan_config: Path
    vqgan_checkpoint: Path
    clip_dir: Path

    @property
    def clip_model(self) -> str:
        return f"local-dir:{self.clip_dir}"


def write_tiny_models(folder: Path) -> TinyModels:
    """The tiny VQGAN and CLIP written into ``folder`` (also used by docs/render_pictures.py)."""
    config, checkpoint = write_tiny_vqgan(folder / "vqgan")
    clip = write_tiny_clip(folder / "clip")
    return TinyModels(folder, config, checkpoint, clip)


def tiny_cpu_engine(tiny_models: TinyModels, *, threads: int | None = None):
    """A real engine on the CPU with the tiny models, fp32; ``threads``: torch's intra-op threads for the
    process from now on (None: as they are; the tests run one, tests/conftest.py)."""
    import torch

    from engine.runner import Engine, EngineConfig

    if threads is not None:
        torch.set_num_threads(threads)
    return Engine(EngineConfig(model_dir=tiny_models.folder, device="cpu", precision="fp32",
                               vqgan_config=tiny_models.vqgan_config, vqgan_checkpoint=tiny_models.vqgan_checkpoint))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return write_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_engine(tiny_models: TinyModels):
    return tiny_cpu_engine(tiny_models)


def tiny_params(tiny_models: TinyModels, prompt: str = "a red apple", **changes: object) -> dict:
    """Job parameters (JSON form) for a 64x64, 8-cutout, 20-step job on the tiny models."""
    from jobspec import JobParams, parse_prompts

    params = JobParams(prompts=parse_prompts(prompt), width=64, height=64, steps=20, cutn=8, seed=7,
                       model=TINY_MODEL, clip_model=tiny_models.clip_model, clip_pretrained="")
    return params.with_changes(**changes).to_json()

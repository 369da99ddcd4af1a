"""Tiny VQGAN and CLIP models written to disk in the real formats, for the tests.

The files go through the same loaders as real weights: a taming-format
``model.yaml`` plus a ``.ckpt`` (a Lightning-style dict with ``state_dict``,
training-only ``loss.*`` keys and other training state), and an open_clip
``local-dir:`` folder with ``open_clip_config.json`` and safetensors weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

TINY_DDCONFIG = {
    "double_z": False,
    "z_channels": 32,
    "resolution": 64,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 32,
    "ch_mult": [1, 1, 1, 1, 1],  # factor 16, like the real f16 models
    "num_res_blocks": 1,
    "attn_resolutions": [4],
    "dropout": 0.0,
}

# The torch.compile tests' VQGAN (tests/engine/test_fast_path.py): a third of the decoder's blocks (factor 4, one
# ResnetBlock a level, the attention at the lowest level), as a compiled step's minutes and the fused kernels'
# time in Triton's interpreter grow with the blocks; what those tests check does not depend on the size.
COMPILE_DDCONFIG = {**TINY_DDCONFIG, "ch_mult": [1, 1, 1], "num_res_blocks": 0, "resolution": 16}

TINY_CLIP_CONFIG = {
    "model_cfg": {
        "embed_dim": 64,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    },
    "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
}


def tiny_vqgan_config(kind: str = "vq", n_embed: int = 64, ddconfig: dict | None = None) -> dict:
    target = "taming.models.vqgan.GumbelVQ" if kind == "gumbel" else "taming.models.vqgan.VQModel"
    params: dict = {"embed_dim": 32, "n_embed": n_embed, "ddconfig": dict(ddconfig or TINY_DDCONFIG),
                    "lossconfig": {"target": "taming.modules.losses.vqperceptual.DummyLoss"}}
    if kind == "gumbel":
        params["temperature_scheduler_config"] = {"target": "taming.lr_scheduler.LambdaWarmUpCosineScheduler"}
    return {"model": {"base_learning_rate": 4.5e-6, "target": target, "params": params}}


def write_tiny_vqgan(folder: Path, *, kind: str = "vq", seed: int = 0, n_embed: int = 64,
                     ddconfig: dict | None = None) -> tuple[Path, Path]:
    """Write model.yaml and last.ckpt of a randomly initialised tiny VQGAN (``ddconfig``: its encoder and
    decoder, TINY_DDCONFIG by default); returns their paths."""
    from engine.vqgan import VQGAN, read_config

    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "model.yaml"
    config_path.write_text(yaml.safe_dump(tiny_vqgan_config(kind, n_embed, ddconfig)))
    torch.manual_seed(seed)
    model = VQGAN(read_config(config_path))
    with torch.no_grad():  # a spread-out codebook, like a trained one
        model.codebook.normal_()
    state = dict(model.state_dict())
    state["loss.discriminator.main.0.weight"] = torch.randn(4, 3, 4, 4)  # training-only, skipped on load
    checkpoint = {"state_dict": state, "epoch": 3, "global_step": 1234, "optimizer_states": []}
    checkpoint_path = folder / "last.ckpt"
    torch.save(checkpoint, checkpoint_path)
    return config_path, checkpoint_path


def write_tiny_clip(folder: Path, *, seed: int = 0) -> Path:
    """Write an open_clip local-dir model; returns the folder (use ``local-dir:<folder>``)."""
    import open_clip
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{folder}", load_weights=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder

"""VQGAN models in the taming-transformers format, built from taming's modules.

Only ``taming.modules`` is imported: ``taming.models`` needs pytorch-lightning
APIs that no longer exist and builds an LPIPS loss that downloads VGG weights.

Checkpoints load without pickle (``weights_only=True``) or from a converted
``.safetensors`` file; keys are checked strictly against the config.
"""

from __future__ import annotations

import contextlib
import io
import logging
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from taming.modules.diffusionmodules.model import Decoder, Encoder
from taming.modules.vqvae.quantize import GumbelQuantize, VectorQuantizer2
from torch import nn

from engine.layers import use_fast_layers
from engine.model_files import FileCheckError, check_checkpoint_file, downsampling_factor

log = logging.getLogger(__name__)

# Prefixes of the weights inference needs; anything else (loss.*, ...) is training state.
INFERENCE_PREFIXES = ("encoder.", "decoder.", "quantize.", "quant_conv.", "post_quant_conv.")
KNOWN_TARGETS = {
    "taming.models.vqgan.VQModel": "vq",
    "taming.models.vqgan.GumbelVQ": "gumbel",
}


class ModelLoadError(RuntimeError):
    """A model file or config can't be used; the message says which and what to do."""


@dataclass(frozen=True)
class VQGANConfig:
    """The parts of a taming config that shape the network."""

    kind: str  # "vq" or "gumbel"
    embed_dim: int
    n_embed: int
    ddconfig: dict[str, Any]

    @property
    def factor(self) -> int:
        """Downsampling factor: pixels per latent cell along one side."""
        return downsampling_factor(self.ddconfig["ch_mult"])


def read_config(path: Path) -> VQGANConfig:
    """Parse a taming ``model.yaml``. Raises ModelLoadError naming the problem."""
    if Path(path).is_dir():
        raise ModelLoadError(f"VQGAN config {path} is a folder; give the model's .yaml file.")
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"VQGAN config {path} does not exist.") from None
    except OSError as exc:
        raise ModelLoadError(f"VQGAN config {path} can't be read ({exc.strerror or exc}).") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"VQGAN config {path} is not valid YAML: {exc}") from None
    try:
        model = raw["model"]
        target = model["target"]
        params = model["params"]
        ddconfig = dict(params["ddconfig"])
        embed_dim = int(params["embed_dim"])
        n_embed = int(params["n_embed"])
    except (TypeError, KeyError, ValueError) as exc:
        raise ModelLoadError(
            f"VQGAN config {path} is not a taming-transformers model config "
            f"(missing or bad model.params field {exc}); expected model.target, "
            "model.params.embed_dim, n_embed and ddconfig."
        ) from None
    if target not in KNOWN_TARGETS:
        raise ModelLoadError(
            f"VQGAN config {path} has target {target!r}; supported targets are {sorted(KNOWN_TARGETS)}."
        )
    for key in ("ch", "out_ch", "ch_mult", "num_res_blocks", "attn_resolutions", "in_channels", "resolution", "z_channels"):
        if key not in ddconfig:
            raise ModelLoadError(f"VQGAN config {path} lacks model.params.ddconfig.{key}.")
    return VQGANConfig(kind=KNOWN_TARGETS[target], embed_dim=embed_dim, n_embed=n_embed, ddconfig=ddconfig)


class VQGAN(nn.Module):
    """Encoder, quantizer and decoder of a taming VQGAN, inference only."""

    def __init__(self, config: VQGANConfig) -> None:
        super().__init__()
        self.config = config
        dd = dict(config.ddconfig)
        dd["double_z"] = False
        with contextlib.redirect_stdout(io.StringIO()):  # taming prints the z shape
            self.encoder = Encoder(**dd)
            self.decoder = Decoder(**dd)
        z_channels = dd["z_channels"]
        if config.kind == "gumbel":
            self.quantize: GumbelQuantize | VectorQuantizer2 = GumbelQuantize(z_channels, config.embed_dim, n_embed=config.n_embed)
        else:
            self.quantize = VectorQuantizer2(config.n_embed, config.embed_dim, beta=0.25)
        self.quant_conv = nn.Conv2d(z_channels, config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, z_channels, 1)
        use_fast_layers(self)

    @property
    def codebook(self) -> torch.Tensor:
        """The codebook, shape (n_embed, embed_dim)."""
        if self.config.kind == "gumbel":
            return self.quantize.embed.weight
        return self.quantize.embedding.weight

    @property
    def factor(self) -> int:
        return self.config.factor

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1], (B, 3, H, W) -> quantized latent (B, embed_dim, H/f, W/f)."""
        h = self.quant_conv(self.encoder(image))
        if self.config.kind == "gumbel":
            # Deterministic: the most likely code instead of a Gumbel sample.
            indices = self.quantize.proj(h).argmax(dim=1)
            return self.codebook[indices].permute(0, 3, 1, 2)
        return h

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Quantized latent (B, embed_dim, h, w) -> pixels in about [-1, 1], (B, 3, h*f, w*f)."""
        return self.decoder(self.post_quant_conv(z_q))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint, without unpickling arbitrary objects."""
    if not path.exists():
        raise ModelLoadError(f"VQGAN checkpoint {path} does not exist; `vqbot models download NAME` fetches the known models.")
    if not path.is_file():
        raise ModelLoadError(f"VQGAN checkpoint {path} is a folder, not a file; give the .ckpt or .safetensors file.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(f"VQGAN checkpoint {path} is not a readable safetensors file ({exc}).") from None
    try:
        check_checkpoint_file(path)  # cheap: not a torch archive at all is said as such, not as "pickled objects"
    except FileCheckError as exc:
        raise ModelLoadError(f"VQGAN checkpoint {path} can't be used: {exc}. Give the model's .ckpt or .safetensors "
                             "file (a damaged download: delete it and download it again).") from None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "Weights only load failed" in message or "weights_only" in message:
            raise ModelLoadError(
                f"VQGAN checkpoint {path} contains pickled Python objects besides the weights, so it is not "
                f"loaded blindly. If you trust the file, convert it once with: "
                f"vqbot models convert {path} --trust-pickle"
            ) from None
        raise ModelLoadError(f"VQGAN checkpoint {path} is not a PyTorch checkpoint ({exc}).") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelLoadError(
            f"VQGAN checkpoint {path} is truncated or corrupt ({str(exc).splitlines()[0]}); delete it and download it again."
        ) from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelLoadError(f"VQGAN checkpoint {path} holds no state_dict of tensors; is it a VQGAN checkpoint?")
    return data


def load_state_strict(model: VQGAN, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load the inference weights, refusing missing, unexpected or misshapen keys."""
    wanted = model.state_dict()
    weights = {k: v for k, v in state.items() if k.startswith(INFERENCE_PREFIXES)}
    skipped = len(state) - len(weights)
    missing = sorted(set(wanted) - set(weights))
    unexpected = sorted(set(weights) - set(wanted))
    misshapen = sorted(k for k in set(wanted) & set(weights) if wanted[k].shape != weights[k].shape)
    if missing or unexpected or misshapen:
        details = []
        if missing:
            details.append(f"missing {len(missing)} keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            details.append(f"unexpected {len(unexpected)} keys (e.g. {', '.join(unexpected[:3])})")
        if misshapen:
            k = misshapen[0]
            details.append(
                f"{len(misshapen)} keys of the wrong shape (e.g. {k}: file {tuple(weights[k].shape)}, config {tuple(wanted[k].shape)})"
            )
        raise ModelLoadError(
            f"VQGAN checkpoint {source} does not match its config: {'; '.join(details)}. Check that the .yaml and the checkpoint belong together."
        )
    model.load_state_dict(weights, strict=True)
    if skipped:
        log.debug("skipped %d training-only keys in %s", skipped, source)


def load_vqgan(config_path: Path, checkpoint_path: Path, *, device: torch.device, dtype: torch.dtype = torch.float32) -> VQGAN:
    """Build a VQGAN from a taming config and load its weights, in eval mode without gradients on weights."""
    config = read_config(Path(config_path))
    try:
        model = VQGAN(config)
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError) as exc:
        raise ModelLoadError(f"VQGAN config {config_path} does not describe a network that can be built "
                             f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}).") from None
    load_state_strict(model, _read_state_dict(Path(checkpoint_path)), Path(checkpoint_path))
    model.eval().requires_grad_(False)
    return model.to(device=device, dtype=dtype)

"""CLIP through open_clip: model by name + pretrained tag, a weights file, or ``local-dir:``."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.clip_layers import use_fast_clip_layers
from engine.vqgan import ModelLoadError

log = logging.getLogger(__name__)


@dataclass
class Clip:
    """A loaded CLIP model with what the optimiser needs to feed it."""

    model: nn.Module
    tokenize: Callable[[list[str]], torch.Tensor]
    input_size: int
    mean: torch.Tensor  # (1, 3, 1, 1) on the model's device
    std: torch.Tensor  # (1, 3, 1, 1)
    name: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Texts -> embeddings (N, D), float32."""
        tokens = self.tokenize(texts).to(self.device)
        with torch.no_grad():
            return self.model.encode_text(tokens).float()

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels (N, 3, S, S) -> embeddings (N, D)."""
        return self.model.encode_image(pixels)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] -> CLIP's input statistics."""
        return (pixels - self.mean.to(pixels.dtype)) / self.std.to(pixels.dtype)


def load_clip(name: str, pretrained: str | None, *, device: torch.device, dtype: torch.dtype = torch.float32) -> Clip:
    """Load an open_clip model.

    ``name`` is an open_clip model name (``ViT-B-32-quickgelu``) with ``pretrained``
    a tag (``openai``) or a weights file, or ``local-dir:PATH`` holding
    ``open_clip_config.json`` and weights. Tags download through open_clip's
    cache (``HF_HOME``); with no network, weights must already be cached.
    """
    import open_clip

    kwargs: dict[str, Any] = {}
    if name.startswith("local-dir:"):
        folder = Path(name[len("local-dir:"):])
        if not (folder / "open_clip_config.json").is_file():
            raise ModelLoadError(f"CLIP folder {folder} has no open_clip_config.json; `local-dir:` needs a config and weights there.")
        pretrained = None
    else:
        if name not in open_clip.list_models():
            close = [m for m in open_clip.list_models() if name.lower().split("-")[0] in m.lower()][:6]
            raise ModelLoadError(f"Unknown CLIP model {name!r}; try one of {close or open_clip.list_models()[:6]} (see open_clip.list_models()).")
        if pretrained and not os.path.isfile(pretrained):
            tags = open_clip.list_pretrained_tags_by_model(name)
            if pretrained not in tags:
                raise ModelLoadError(f"CLIP model {name} has no pretrained tag {pretrained!r}; known tags are {tags}.")
        kwargs["pretrained"] = pretrained or None
        if pretrained == "openai" and "quickgelu" not in name.lower():
            log.warning("OpenAI CLIP weights were trained with QuickGELU; use %s-quickgelu for the right activation", name)
    try:
        model, _, _preprocess = open_clip.create_model_and_transforms(name, device=device, **kwargs)
    except (RuntimeError, OSError) as exc:
        first = (str(exc).splitlines()[0] if str(exc) else type(exc).__name__).split(". ")[0].rstrip(".")
        raise ModelLoadError(
            f"CLIP {name} ({pretrained or 'no pretrained tag'}) could not be loaded: {first}. "
            "Without network access the weights must already be in open_clip's cache (HF_HOME) or given as a file."
        ) from None
    return wrap_clip(model, open_clip.get_tokenizer(name), name, device=device, dtype=dtype)


def wrap_clip(model: nn.Module, tokenize: Callable[[list[str]], torch.Tensor], name: str, *,
              device: torch.device, dtype: torch.dtype = torch.float32, fast_layers: bool = True) -> Clip:
    """An open_clip model, frozen on ``device`` in ``dtype``, with its input size and statistics
    (image-tower layers swapped for engine/clip_layers.py's unless ``fast_layers`` is off: same weights,
    same results)."""
    model = model.eval().requires_grad_(False).to(device=device, dtype=dtype)
    if fast_layers:
        use_fast_clip_layers(model)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    mean = getattr(model.visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
    std = getattr(model.visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)
    return Clip(
        model=model,
        tokenize=tokenize,
        input_size=int(size),
        mean=torch.tensor(mean, device=device).view(1, 3, 1, 1),
        std=torch.tensor(std, device=device).view(1, 3, 1, 1),
        name=name,
    )

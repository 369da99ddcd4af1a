"""CLIP is refused when it would run without trained weights (open_clip would only log a warning)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from engine.clip import ClipSource, clip_source, load_clip
from engine.vqgan import ModelLoadError

CPU = torch.device("cpu")


def test_a_local_dir_without_weights_is_refused_naming_the_files_expected(clip_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "clip"
    empty.mkdir()
    shutil.copy(clip_dir / "open_clip_config.json", empty)
    with pytest.raises(ModelLoadError, match="has no weights; put open_clip_model.safetensors "
                                             r"\(or open_clip_pytorch_model.bin\) beside its open_clip_config.json"):
        load_clip(f"local-dir:{empty}", None, device=CPU)


def test_a_local_dir_loads_the_weights_it_names(clip_dir: Path, tmp_path: Path) -> None:
    source = clip_source(f"local-dir:{clip_dir}", "openai")  # a tag does not apply to a folder
    assert source.tag is None and source.local
    assert dict(source.files) == {"config": clip_dir / "open_clip_config.json",
                                  "weights": clip_dir / "open_clip_model.safetensors"}
    from safetensors.torch import load_file

    clip = load_clip(f"local-dir:{clip_dir}", None, device=CPU)
    saved = load_file(str(clip_dir / "open_clip_model.safetensors"))
    assert torch.equal(clip.model.token_embedding.weight, saved["token_embedding.weight"])
    assert clip.source == source


def test_a_local_dir_with_weights_that_do_not_fit_its_config_is_refused(clip_dir: Path, tmp_path: Path) -> None:
    odd = tmp_path / "clip"
    odd.mkdir()
    shutil.copy(clip_dir / "open_clip_config.json", odd)
    from safetensors.torch import save_file

    save_file({"something.else": torch.zeros(2)}, str(odd / "open_clip_model.safetensors"))
    with pytest.raises(ModelLoadError, match="could not be loaded"):
        load_clip(f"local-dir:{odd}", None, device=CPU)


def test_a_local_dir_with_two_unnamed_weight_files_is_refused_as_ambiguous(clip_dir: Path, tmp_path: Path) -> None:
    two = tmp_path / "clip"
    two.mkdir()
    shutil.copy(clip_dir / "open_clip_config.json", two)
    for name in ("a.safetensors", "b.safetensors"):
        shutil.copy(clip_dir / "open_clip_model.safetensors", two / name)
    with pytest.raises(ModelLoadError, match=r"several weights files \(a.safetensors, b.safetensors\)"):
        clip_source(f"local-dir:{two}", None)


def test_a_local_dir_that_is_missing_or_lacks_its_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        clip_source(f"local-dir:{tmp_path / 'absent'}", None)
    with pytest.raises(ModelLoadError, match=r"has no open_clip_config\.json"):
        clip_source(f"local-dir:{tmp_path}", None)


def test_a_named_clip_without_a_tag_or_file_is_refused_instead_of_running_untrained() -> None:
    with pytest.raises(ModelLoadError, match=r"needs weights: give a pretrained tag .*openai"):
        clip_source("ViT-B-32-quickgelu", "")
    with pytest.raises(ModelLoadError, match="no pretrained tag 'nope' and no such weights file"):
        clip_source("ViT-B-32-quickgelu", "nope")


def test_a_named_clip_with_a_tag_or_a_weights_file_is_accepted(tmp_path: Path) -> None:
    assert clip_source("ViT-B-32-quickgelu", "openai") == ClipSource("ViT-B-32-quickgelu", tag="openai")
    weights = tmp_path / "vit.pt"
    weights.write_bytes(b"weights")
    assert clip_source("ViT-B-32", str(weights)).files == (("weights", weights),)

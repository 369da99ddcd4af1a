"""engine.convert: taming .ckpt -> inference-only .safetensors, every fixture built here."""

from __future__ import annotations

import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from engine.convert import (
    ConversionReport,
    ConvertError,
    UntrustedCheckpointError,
    convert_checkpoint,
    inference_state_dict,
)


class TrainingState:
    """Stands in for pytorch-lightning objects: weights_only loading refuses it."""

    def __init__(self) -> None:
        self.best_score = 0.5
        self.callbacks = ["ModelCheckpoint"]


def _weights(*, gumbel: bool = False) -> OrderedDict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if gumbel:
        codebook = {
            "quantize.embed.weight": torch.randn(32, 4, generator=g),
            "quantize.proj.weight": torch.randn(32, 8, 1, 1, generator=g),
        }
    else:
        codebook = {"quantize.embedding.weight": torch.randn(32, 4, generator=g)}
    return OrderedDict(
        {
            "encoder.conv_in.weight": torch.randn(8, 3, 3, 3, generator=g),
            "encoder.conv_in.bias": torch.randn(8, generator=g),
            "decoder.conv_out.weight": torch.randn(3, 8, 3, 3, generator=g),
            "decoder.norm_out.weight": torch.ones(8),
            **codebook,
            "quant_conv.weight": torch.randn(4, 8, 1, 1, generator=g),
            "post_quant_conv.weight": torch.randn(8, 4, 1, 1, generator=g),
        }
    )


def _lightning_checkpoint(
    weights: OrderedDict[str, torch.Tensor], *, python_objects: bool
) -> dict[str, object]:
    state = OrderedDict(weights)
    state["loss.discriminator.main.0.weight"] = torch.randn(4, 3, 4, 4)
    state["loss.discriminator.main.0.bias"] = torch.randn(4)
    state["loss.perceptual_loss.net.slice1.0.weight"] = torch.randn(4, 3, 3, 3)
    state["loss.logvar"] = torch.zeros(())
    checkpoint: dict[str, object] = {
        "epoch": 4,
        "global_step": 1234,
        "pytorch-lightning_version": "1.0.8",
        "state_dict": state,
        "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 4.5e-6}]}],
        "lr_schedulers": [],
    }
    if python_objects:
        checkpoint["callbacks"] = {"ModelCheckpoint": TrainingState()}
    return checkpoint


@pytest.fixture
def weights() -> OrderedDict[str, torch.Tensor]:
    return _weights()


@pytest.fixture
def pickled_ckpt(tmp_path: Path, weights: OrderedDict[str, torch.Tensor]) -> Path:
    """A lightning-style checkpoint with a Python object that weights_only loading refuses."""
    path = tmp_path / "last.ckpt"
    torch.save(_lightning_checkpoint(weights, python_objects=True), path)
    return path


def _assert_same_tensors(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert sorted(actual) == sorted(expected)
    for key, tensor in expected.items():
        assert actual[key].dtype == tensor.dtype, key
        assert torch.equal(actual[key], tensor), key


# ---------------------------------------------------------------- trust


def test_checkpoint_with_python_objects_is_refused_without_trust(pickled_ckpt: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out.safetensors"

    with pytest.raises(UntrustedCheckpointError) as caught:
        convert_checkpoint(pickled_ckpt, dst, trust_pickle=False)

    assert f"vqbot models convert {pickled_ckpt} --trust-pickle" in str(caught.value)
    assert caught.value.command == f"vqbot models convert {pickled_ckpt} --trust-pickle"
    assert "\n" not in str(caught.value)
    assert not dst.exists()


def test_command_in_the_refusal_quotes_a_path_with_spaces(
    tmp_path: Path, weights: OrderedDict[str, torch.Tensor]
) -> None:
    src = tmp_path / "my models" / "last.ckpt"
    src.parent.mkdir()
    torch.save(_lightning_checkpoint(weights, python_objects=True), src)

    with pytest.raises(UntrustedCheckpointError, match="--trust-pickle") as caught:
        convert_checkpoint(src, tmp_path / "out.safetensors", trust_pickle=False)

    assert f"vqbot models convert '{src}' --trust-pickle" in str(caught.value)


def test_checkpoint_with_python_objects_converts_with_trust(
    pickled_ckpt: Path, tmp_path: Path, weights: OrderedDict[str, torch.Tensor]
) -> None:
    dst = tmp_path / "out.safetensors"

    result = convert_checkpoint(pickled_ckpt, dst, trust_pickle=True)

    assert result == dst
    _assert_same_tensors(load_file(dst), weights)


def test_loss_and_training_state_are_dropped_and_reported_by_prefix(
    pickled_ckpt: Path, tmp_path: Path
) -> None:
    reports: list[ConversionReport] = []

    dst = tmp_path / "out.safetensors"
    convert_checkpoint(pickled_ckpt, dst, trust_pickle=True, on_report=reports.append)

    (report,) = reports
    assert report.dropped == {"loss": 4}
    assert set(report.dropped_top_level) == {
        "epoch", "global_step", "pytorch-lightning_version", "optimizer_states", "lr_schedulers", "callbacks"
    }
    assert report.kept == 7 and report.used_pickle
    assert report.parameters == sum(t.numel() for t in _weights().values())
    assert not any(k.startswith("loss.") for k in load_file(tmp_path / "out.safetensors"))


def test_converted_file_has_the_source_name_in_its_metadata(pickled_ckpt: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out.safetensors"

    convert_checkpoint(pickled_ckpt, dst, trust_pickle=True)

    with safe_open(dst, framework="pt") as f:
        assert f.metadata() == {"format": "pt", "source": "last.ckpt"}


def test_tensor_only_checkpoint_converts_without_trust(
    tmp_path: Path, weights: OrderedDict[str, torch.Tensor]
) -> None:
    src = tmp_path / "last.ckpt"
    torch.save(_lightning_checkpoint(weights, python_objects=False), src)
    reports: list[ConversionReport] = []

    convert_checkpoint(src, tmp_path / "out.safetensors", trust_pickle=False, on_report=reports.append)

    _assert_same_tensors(load_file(tmp_path / "out.safetensors"), weights)
    assert not reports[0].used_pickle


def test_legacy_format_checkpoint_converts(tmp_path: Path, weights: OrderedDict[str, torch.Tensor]) -> None:
    src = tmp_path / "last.ckpt"
    torch.save(_lightning_checkpoint(weights, python_objects=True), src, _use_new_zipfile_serialization=False)

    with pytest.raises(UntrustedCheckpointError):
        convert_checkpoint(src, tmp_path / "out.safetensors", trust_pickle=False)
    convert_checkpoint(src, tmp_path / "out.safetensors", trust_pickle=True)

    _assert_same_tensors(load_file(tmp_path / "out.safetensors"), weights)


def test_flat_tensor_dict_converts_and_drops_foreign_keys(
    tmp_path: Path, weights: OrderedDict[str, torch.Tensor]
) -> None:
    src = tmp_path / "flat.pt"
    torch.save({**weights, "loss.logvar": torch.zeros(()), "ema.decay": torch.tensor(0.99)}, src)
    reports: list[ConversionReport] = []

    convert_checkpoint(src, tmp_path / "out.safetensors", trust_pickle=False, on_report=reports.append)

    _assert_same_tensors(load_file(tmp_path / "out.safetensors"), weights)
    assert reports[0].dropped == {"ema": 1, "loss": 1}
    assert reports[0].dropped_top_level == ()


def test_gumbel_quantizer_weights_are_kept(tmp_path: Path) -> None:
    weights = _weights(gumbel=True)
    src = tmp_path / "gumbel.ckpt"
    torch.save(_lightning_checkpoint(weights, python_objects=False), src)

    convert_checkpoint(src, tmp_path / "out.safetensors", trust_pickle=False)

    _assert_same_tensors(load_file(tmp_path / "out.safetensors"), weights)


def test_checkpoint_referring_to_a_module_that_is_not_installed_converts_with_trust(
    tmp_path: Path, weights: OrderedDict[str, torch.Tensor], caplog: pytest.LogCaptureFixture
) -> None:
    module = types.ModuleType("vqbot_test_gone_lightning")

    class ModelCheckpoint(dict):  # like pytorch_lightning's callbacks, a dict-ish object
        pass

    ModelCheckpoint.__module__ = module.__name__
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    module.ModelCheckpoint = ModelCheckpoint  # type: ignore[attr-defined]
    checkpoint = _lightning_checkpoint(weights, python_objects=False)
    callback = ModelCheckpoint(monitor="val/rec_loss")
    callback.best = torch.tensor(0.1)  # type: ignore[attr-defined]
    checkpoint["callbacks"] = {ModelCheckpoint: callback}
    src = tmp_path / "last.ckpt"
    sys.modules[module.__name__] = module
    try:
        torch.save(checkpoint, src)
    finally:
        del sys.modules[module.__name__]

    with caplog.at_level("WARNING", logger="engine.convert"):
        convert_checkpoint(src, tmp_path / "out.safetensors", trust_pickle=True)

    _assert_same_tensors(load_file(tmp_path / "out.safetensors"), weights)
    assert "vqbot_test_gone_lightning.ModelCheckpoint, which is not installed" in caplog.text


def test_tensors_sharing_memory_are_written_as_separate_copies(
    tmp_path: Path, weights: OrderedDict[str, torch.Tensor]
) -> None:
    flat = dict(weights)
    flat["quant_conv.bias"] = flat["encoder.conv_in.bias"]  # the same tensor twice
    flat["post_quant_conv.bias"] = flat["decoder.norm_out.weight"][:4]  # a view into another
    src = tmp_path / "shared.pt"
    torch.save(flat, src)

    convert_checkpoint(src, tmp_path / "out.safetensors", trust_pickle=False)

    _assert_same_tensors(load_file(tmp_path / "out.safetensors"), flat)


# ---------------------------------------------------------------- bad files


@pytest.mark.parametrize("trust", [False, True])
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_truncated_checkpoint_gives_a_clear_error_naming_the_file(
    tmp_path: Path, weights: OrderedDict[str, torch.Tensor], trust: bool, legacy: bool
) -> None:
    whole = tmp_path / "whole.ckpt"
    checkpoint = _lightning_checkpoint(weights, python_objects=False)
    torch.save(checkpoint, whole, _use_new_zipfile_serialization=not legacy)
    data = whole.read_bytes()
    src = tmp_path / "cut.ckpt"
    src.write_bytes(data[: len(data) * 2 // 3])
    dst = tmp_path / "out.safetensors"

    with pytest.raises(ConvertError) as caught:
        convert_checkpoint(src, dst, trust_pickle=trust)

    message = str(caught.value)
    assert str(src) in message and "truncated" in message and "download it again" in message
    assert not isinstance(caught.value, UntrustedCheckpointError)
    assert not dst.exists()


def test_pickled_list_saved_by_torch_is_not_a_checkpoint(tmp_path: Path) -> None:
    src = tmp_path / "list.ckpt"
    torch.save([1, 2, 3], src)

    with pytest.raises(ConvertError, match="holds a list, not a checkpoint"):
        convert_checkpoint(src, tmp_path / "out.safetensors", trust_pickle=True)


@pytest.mark.parametrize("trust", [False, True])
def test_plain_pickle_of_a_list_is_not_a_checkpoint(tmp_path: Path, trust: bool) -> None:
    src = tmp_path / "list.pkl"
    src.write_bytes(pickle.dumps([1, 2, 3]))

    with pytest.raises(ConvertError, match=f"{src} is not a readable PyTorch checkpoint"):
        convert_checkpoint(src, tmp_path / "out.safetensors", trust_pickle=trust)


def test_checkpoint_without_vqgan_weights_is_rejected(tmp_path: Path) -> None:
    src = tmp_path / "clip.pt"
    torch.save({"state_dict": {"visual.proj": torch.zeros(2), "loss.x": torch.zeros(1)}}, src)

    with pytest.raises(ConvertError, match=r"no VQGAN decoder or quantize weights.*loss, visual"):
        convert_checkpoint(src, tmp_path / "out.safetensors", trust_pickle=False)


def test_dict_without_state_dict_or_tensors_is_rejected(tmp_path: Path) -> None:
    src = tmp_path / "odd.pt"
    torch.save({"epoch": 3, "note": "hello"}, src)

    with pytest.raises(ConvertError, match=r"has no state_dict.*epoch, note"):
        convert_checkpoint(src, tmp_path / "out.safetensors", trust_pickle=False)


def test_missing_source_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConvertError, match="does not exist"):
        convert_checkpoint(tmp_path / "nope.ckpt", tmp_path / "out.safetensors", trust_pickle=False)


def test_failed_conversion_leaves_no_temporary_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "last.ckpt"
    torch.save(_lightning_checkpoint(_weights(), python_objects=False), src)
    out_dir = tmp_path / "out"

    def broken_save(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("engine.convert.save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        convert_checkpoint(src, out_dir / "out.safetensors", trust_pickle=False)

    assert list(out_dir.iterdir()) == []


def test_inference_state_dict_counts_non_tensor_entries_under_kept_prefixes() -> None:
    state = {**_weights(), "decoder.note": "not a tensor"}

    kept, dropped, top = inference_state_dict({"state_dict": state, "epoch": 1})

    assert "decoder.note" not in kept
    assert dropped == {"decoder (not a tensor)": 1}
    assert top == ("epoch",)

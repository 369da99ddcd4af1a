import pickle
from pathlib import Path

import pytest
import torch
import yaml

from engine.vqgan import ModelLoadError, load_vqgan, read_config
from tests.tiny_models import tiny_vqgan_config, write_tiny_vqgan

CPU = torch.device("cpu")


def test_a_taming_checkpoint_loads_with_its_training_keys_skipped(vqgan_files: tuple[Path, Path]) -> None:
    model = load_vqgan(*vqgan_files, device=CPU)
    saved = torch.load(vqgan_files[1], weights_only=True)["state_dict"]
    assert torch.equal(model.codebook, saved["quantize.embedding.weight"])
    assert model.factor == 16
    assert not any(p.requires_grad for p in model.parameters())


def test_a_gumbel_checkpoint_loads_and_encodes_to_codebook_entries(tmp_path: Path) -> None:
    config, checkpoint = write_tiny_vqgan(tmp_path, kind="gumbel")
    model = load_vqgan(config, checkpoint, device=CPU)
    z = model.encode(torch.rand(1, 3, 32, 32) * 2 - 1)
    entries = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    assert all((model.codebook == e).all(1).any() for e in entries)


def test_missing_keys_are_named(tmp_path: Path) -> None:
    config, checkpoint = write_tiny_vqgan(tmp_path)
    data = torch.load(checkpoint, weights_only=True)
    del data["state_dict"]["decoder.conv_out.weight"]
    torch.save(data, checkpoint)
    with pytest.raises(ModelLoadError, match=r"missing 1 keys \(e.g. decoder.conv_out.weight\)"):
        load_vqgan(config, checkpoint, device=CPU)


def test_a_config_that_does_not_match_the_checkpoint_is_refused(tmp_path: Path) -> None:
    config, checkpoint = write_tiny_vqgan(tmp_path)
    wrong = tiny_vqgan_config(n_embed=128)
    config.write_text(yaml.safe_dump(wrong))
    with pytest.raises(ModelLoadError, match=r"wrong shape.*quantize.embedding.weight"):
        load_vqgan(config, checkpoint, device=CPU)


def test_a_truncated_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    config, checkpoint = write_tiny_vqgan(tmp_path)
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        load_vqgan(config, checkpoint, device=CPU)


def test_a_pickle_that_is_not_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    config, _ = write_tiny_vqgan(tmp_path)
    bogus = tmp_path / "list.ckpt"
    bogus.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ModelLoadError, match=r"list.ckpt"):
        load_vqgan(config, bogus, device=CPU)
    tensors_only = tmp_path / "tensors.ckpt"
    torch.save([torch.zeros(2)], tensors_only)
    with pytest.raises(ModelLoadError, match="no state_dict"):
        load_vqgan(config, tensors_only, device=CPU)


class TrainerState:
    """Stands in for the Lightning callback objects real checkpoints pickle."""


def test_a_checkpoint_that_needs_pickle_is_refused_with_the_convert_command(tmp_path: Path) -> None:
    config, checkpoint = write_tiny_vqgan(tmp_path)
    data = torch.load(checkpoint, weights_only=True)
    data["callbacks"] = TrainerState()
    torch.save(data, checkpoint)
    with pytest.raises(ModelLoadError, match=f"vqbot models convert {checkpoint} --trust-pickle"):
        load_vqgan(config, checkpoint, device=CPU)


def test_configs_that_are_not_taming_configs_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    path.write_text("model: {target: something.Else, params: {embed_dim: 1, n_embed: 2, ddconfig: {}}}")
    with pytest.raises(ModelLoadError, match="supported targets"):
        read_config(path)
    path.write_text("just: [a, list")
    with pytest.raises(ModelLoadError, match="not valid YAML"):
        read_config(path)
    path.write_text("model: {target: taming.models.vqgan.VQModel}")
    with pytest.raises(ModelLoadError, match="not a taming-transformers model config"):
        read_config(path)
    with pytest.raises(ModelLoadError, match="does not exist"):
        read_config(tmp_path / "absent.yaml")


def test_folders_given_as_model_files_are_refused_as_folders(tmp_path: Path) -> None:
    config, checkpoint = write_tiny_vqgan(tmp_path / "m")
    with pytest.raises(ModelLoadError, match="is a folder"):
        load_vqgan(tmp_path, checkpoint, device=CPU)
    with pytest.raises(ModelLoadError, match="is a folder"):
        load_vqgan(config, tmp_path, device=CPU)


@pytest.mark.parametrize("content, what", [
    (b"model weights, honest\n", "not a PyTorch checkpoint"),
    (b"", "not a PyTorch checkpoint"),
])
def test_a_file_that_is_no_checkpoint_at_all_is_said_so_not_blamed_on_pickle(tmp_path: Path, content: bytes,
                                                                               what: str) -> None:
    config, _ = write_tiny_vqgan(tmp_path)
    notes = tmp_path / "notes.ckpt"
    notes.write_bytes(content)
    with pytest.raises(ModelLoadError, match=what) as refused:
        load_vqgan(config, notes, device=CPU)
    assert "--trust-pickle" not in str(refused.value)


def test_a_zip_of_something_else_is_not_taken_for_a_checkpoint(tmp_path: Path) -> None:
    import zipfile

    config, _ = write_tiny_vqgan(tmp_path)
    archive = tmp_path / "photos.ckpt"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("holiday.txt", "not weights")
    with pytest.raises(ModelLoadError, match="zip archive of something else"):
        load_vqgan(config, archive, device=CPU)


def test_a_config_whose_network_cannot_be_built_is_refused(tmp_path: Path) -> None:
    config, checkpoint = write_tiny_vqgan(tmp_path)
    broken = tiny_vqgan_config()
    broken["model"]["params"]["ddconfig"]["ch_mult"] = "abc"
    config.write_text(yaml.safe_dump(broken))
    with pytest.raises(ModelLoadError, match="can be built"):
        load_vqgan(config, checkpoint, device=CPU)

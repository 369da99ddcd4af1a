"""engine.catalog: the known models, their local paths and what is on disk."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from engine.catalog import (
    DEFAULT_MODEL,
    MODELS,
    FileState,
    ModelKind,
    UnknownModelError,
    all_model_status,
    checksum_path,
    default_model_dir,
    file_sha256,
    get_model,
    model_names,
    model_paths,
    model_status,
    part_path,
)

EXPECTED = {
    # name: (kind, factor, codebook size)
    "vqgan_imagenet_f16_16384": (ModelKind.VQ, 16, 16384),
    "vqgan_imagenet_f16_1024": (ModelKind.VQ, 16, 1024),
    "wikiart_16384": (ModelKind.VQ, 16, 16384),
    "vqgan_gumbel_f8_8192": (ModelKind.GUMBEL, 8, 8192),
}


def test_catalogue_holds_the_four_known_models_with_the_default_first() -> None:
    assert DEFAULT_MODEL == "vqgan_imagenet_f16_16384"
    assert model_names()[0] == DEFAULT_MODEL
    assert set(model_names()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_model_has_its_kind_factor_and_codebook_size(name: str) -> None:
    model = get_model(name)

    assert (model.kind, model.factor, model.codebook_size) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_model_has_a_config_and_a_checkpoint_with_download_sources(name: str) -> None:
    model = get_model(name)

    assert model.config.filename == f"{name}.yaml"
    assert model.checkpoint.filename == f"{name}.ckpt"
    for file in (model.config, model.checkpoint):
        assert file.urls, file
        for url in file.urls:
            parts = urlsplit(url)
            assert parts.scheme in ("https", "http") and parts.netloc, url
    assert model.checkpoint.display_size is not None and model.checkpoint.display_size > 300_000_000


def test_default_model_has_a_mirror_for_both_files() -> None:
    model = get_model(DEFAULT_MODEL)

    assert len(model.config.urls) >= 2 and len(model.checkpoint.urls) >= 2
    assert "heibox.uni-heidelberg.de" in model.checkpoint.urls[0]
    assert "%2Fckpts%2Flast.ckpt&dl=1" in model.checkpoint.urls[0]
    assert model.config.urls[1].endswith("/vqgan_imagenet_f16_16384.yaml")


def test_exact_sizes_are_set_only_where_they_were_published() -> None:
    exact = {name: m.checkpoint.size for name, m in MODELS.items() if m.checkpoint.size is not None}

    assert exact == {"vqgan_imagenet_f16_1024": 957_954_257}
    assert all(m.config.size is None for m in MODELS.values())


def test_catalogue_entries_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_model(DEFAULT_MODEL).factor = 8  # type: ignore[misc]
    with pytest.raises(TypeError):
        MODELS["mine"] = get_model(DEFAULT_MODEL)  # type: ignore[index]


@pytest.mark.parametrize("alias", ["gumbel_f8_8192", "openimages_f16_8192", " vqgan_gumbel_f8_8192 "])
def test_gumbel_model_is_found_by_its_other_names(alias: str) -> None:
    assert get_model(alias).name == "vqgan_gumbel_f8_8192"


def test_unknown_model_error_lists_the_valid_names() -> None:
    with pytest.raises(UnknownModelError) as caught:
        get_model("vqgan_imagenet_f16_9999")

    message = str(caught.value)
    assert "'vqgan_imagenet_f16_9999'" in message
    assert all(name in message for name in EXPECTED)
    assert isinstance(caught.value, ValueError)


def test_model_dir_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VQBOT_MODEL_DIR", str(tmp_path / "weights"))

    assert default_model_dir() == tmp_path / "weights"


def test_model_dir_defaults_to_the_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VQBOT_MODEL_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))

    assert default_model_dir() == tmp_path / ".cache" / "vqbot" / "models"


def test_model_paths_name_the_config_checkpoint_and_converted_weights(tmp_path: Path) -> None:
    config, checkpoint, converted = model_paths("vqgan_imagenet_f16_1024", tmp_path)

    assert config == tmp_path / "vqgan_imagenet_f16_1024.yaml"
    assert checkpoint == tmp_path / "vqgan_imagenet_f16_1024.ckpt"
    assert converted == tmp_path / "vqgan_imagenet_f16_1024.safetensors"
    assert list(tmp_path.iterdir()) == []


def test_model_paths_use_the_default_model_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VQBOT_MODEL_DIR", str(tmp_path))

    assert model_paths(DEFAULT_MODEL).checkpoint.parent == tmp_path


def test_status_of_an_empty_model_dir_says_everything_is_missing(tmp_path: Path) -> None:
    statuses = all_model_status(tmp_path)

    assert [s.model.name for s in statuses] == list(model_names())
    for status in statuses:
        assert {status.config.state, status.checkpoint.state, status.safetensors.state} == {FileState.MISSING}
        assert not status.ready


def test_status_tells_present_partial_verified_and_corrupt_files_apart(tmp_path: Path) -> None:
    paths = model_paths(DEFAULT_MODEL, tmp_path)
    paths.config.write_text("model: {}\n")
    checksum_path(paths.config).write_text(f"{file_sha256(paths.config)}  {paths.config.name}\n")
    part_path(paths.checkpoint).write_bytes(b"x" * 1000)

    quick = model_status(DEFAULT_MODEL, tmp_path)

    assert quick.config.state is FileState.PRESENT and quick.config.recorded_sha256
    assert quick.checkpoint.state is FileState.PARTIAL and quick.checkpoint.size == 1000
    assert not quick.ready

    assert model_status(DEFAULT_MODEL, tmp_path, verify=True).config.state is FileState.VERIFIED
    paths.config.write_text("model: {changed: 1}\n")
    corrupt = model_status(DEFAULT_MODEL, tmp_path, verify=True).config
    assert corrupt.state is FileState.CORRUPT and "SHA-256" in corrupt.detail
    assert paths.config.exists(), "status must never delete files"


def test_status_flags_a_checkpoint_of_the_wrong_exact_size(tmp_path: Path) -> None:
    paths = model_paths("vqgan_imagenet_f16_1024", tmp_path)
    paths.checkpoint.write_bytes(b"x" * 10)

    status = model_status("vqgan_imagenet_f16_1024", tmp_path).checkpoint

    assert status.state is FileState.CORRUPT
    assert "expected 957954257" in status.detail


def test_model_is_ready_with_its_config_and_converted_weights_alone(tmp_path: Path) -> None:
    paths = model_paths("wikiart_16384", tmp_path)
    paths.config.write_text("model: {}\n")
    paths.safetensors.write_bytes(b"{}")

    status = model_status("wikiart_16384", tmp_path)

    assert status.checkpoint.state is FileState.MISSING
    assert status.ready


def test_file_without_a_recorded_hash_is_present_but_not_verified(tmp_path: Path) -> None:
    paths = model_paths(DEFAULT_MODEL, tmp_path)
    paths.checkpoint.write_bytes(b"weights")

    status = model_status(DEFAULT_MODEL, tmp_path, verify=True).checkpoint

    assert status.state is FileState.PRESENT and "no SHA-256 recorded" in status.detail


def test_malformed_checksum_file_counts_as_no_record(tmp_path: Path) -> None:
    paths = model_paths(DEFAULT_MODEL, tmp_path)
    paths.checkpoint.write_bytes(b"weights")
    checksum_path(paths.checkpoint).write_text("not a hash\n")

    assert model_status(DEFAULT_MODEL, tmp_path).checkpoint.recorded_sha256 is None

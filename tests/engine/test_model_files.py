"""engine.model_files structure checks of checkpoints and configs, alone and inside a download."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.download import (
    DownloadError,
    FileCheckError,
    check_checkpoint_file,
    check_config_file,
    checkpoint_format,
    download_file,
)
from tests.engine.conftest_download import (  # noqa: F401 - file_server is a fixture
    FileServer,
    checkpoint_bytes,
    config_bytes,
    file_server,
    folder_listing,
)

# ---------------------------------------------------------------- structure checks


def test_checkpoint_check_accepts_zip_and_legacy_torch_files(tmp_path: Path) -> None:
    zipped, legacy = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    zipped.write_bytes(checkpoint_bytes())
    legacy.write_bytes(checkpoint_bytes(legacy=True))

    check_checkpoint_file(zipped)
    check_checkpoint_file(legacy)

    assert checkpoint_format(zipped) == "zip"
    assert checkpoint_format(legacy) == "legacy"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<!DOCTYPE html><html><body>Seafile</body></html>", "web page"),
        (b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02e.", "not a PyTorch checkpoint"),
        (b"PK\x03\x04 truncated zip", "not a PyTorch checkpoint"),
        (b"", "not a PyTorch checkpoint"),
    ],
    ids=["html", "plain-pickle", "broken-zip", "empty"],
)
def test_checkpoint_check_rejects_files_that_are_not_torch_archives(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "x.ckpt"
    path.write_bytes(content)

    with pytest.raises(FileCheckError, match=message):
        check_checkpoint_file(path)


def test_truncated_zip_checkpoint_fails_the_structure_check(tmp_path: Path) -> None:
    data = checkpoint_bytes()
    path = tmp_path / "x.ckpt"
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(FileCheckError):
        check_checkpoint_file(path)


def test_config_check_accepts_a_taming_config(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(config_bytes(n_embed=1024))

    config = check_config_file(path, codebook_size=1024)

    assert config["model"]["params"]["ddconfig"]["ch"] == 128  # type: ignore[index]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (config_bytes(ddconfig=False), "no model.params.ddconfig"),
        (b"model: [unclosed", "not valid YAML"),
        (b"<html><body>404</body></html>", "web page"),
        (b"just a string", "no model.params.ddconfig"),
        (config_bytes(n_embed=1024), "n_embed=1024, expected 16384"),
    ],
    ids=["no-ddconfig", "bad-yaml", "html", "scalar", "wrong-codebook"],
)
def test_config_check_rejects_files_that_are_not_the_model_config(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(content)

    with pytest.raises(FileCheckError, match=message):
        check_config_file(path, codebook_size=16384)


def test_html_page_instead_of_a_checkpoint_is_rejected_and_the_next_mirror_used(
    file_server: FileServer, tmp_path: Path
) -> None:
    ckpt = checkpoint_bytes()
    page = file_server.add("/page", b"<!DOCTYPE html><html>Share link expired</html>")
    good = file_server.add("/last.ckpt", ckpt)
    dest = tmp_path / "m.ckpt"

    download_file([page, good], dest, check=check_checkpoint_file)

    assert dest.read_bytes() == ckpt


def test_config_without_ddconfig_is_rejected_and_not_kept(file_server: FileServer, tmp_path: Path) -> None:
    url = file_server.add("/model.yaml", config_bytes(ddconfig=False))
    dest = tmp_path / "m.yaml"

    with pytest.raises(DownloadError, match=r"no model.params.ddconfig"):
        download_file([url], dest, check=check_config_file)

    assert folder_listing(dest) == []

"""engine.download against an HTTP server on 127.0.0.1 (no other network)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from engine import download as dl
from engine.catalog import ModelFile, ModelKind, VQGANModel, checksum_path, file_sha256, part_path
from engine.download import (
    ChecksumMismatchError,
    DownloadError,
    download_file,
    download_model,
    verify_file,
    verify_model,
)
from tests.engine.conftest_download import (  # noqa: F401 - file_server is a fixture
    FileServer,
    MiB,
    checkpoint_bytes,
    config_bytes,
    file_server,
    folder_listing,
    random_bytes,
    refused_url,
)

# ---------------------------------------------------------------- the happy path


def test_download_writes_the_file_and_records_its_sha256(file_server: FileServer, tmp_path: Path) -> None:
    data = random_bytes(3 * MiB + 17)
    url = file_server.add("/model.ckpt", data)
    dest = tmp_path / "models" / "model.ckpt"

    result = download_file([url], dest, expected_size=len(data))

    assert result == dest
    assert dest.read_bytes() == data
    assert not part_path(dest).exists()
    sidecar = checksum_path(dest).read_text()
    assert sidecar == f"{file_sha256(dest)}  model.ckpt\n"


def test_progress_callback_receives_increasing_byte_counts(file_server: FileServer, tmp_path: Path) -> None:
    data = random_bytes(3 * MiB + 5)
    url = file_server.add("/f.bin", data)
    calls: list[tuple[int, int | None]] = []

    download_file([url], tmp_path / "f.bin", progress=lambda done, total: calls.append((done, total)))

    counts = [done for done, _ in calls]
    assert len(counts) >= 4
    assert counts == sorted(set(counts)), "byte counts must strictly increase"
    assert counts[-1] == len(data)
    assert all(total == len(data) for _, total in calls)


def test_progress_bar_is_drawn_on_stderr_when_progress_is_true(
    file_server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = file_server.add("/f.bin", random_bytes(2 * MiB))

    download_file([url], tmp_path / "f.bin", progress=True)

    assert "f.bin" in capsys.readouterr().err


def test_progress_total_uses_the_approximate_size_until_the_server_says(
    file_server: FileServer, tmp_path: Path
) -> None:
    data = random_bytes(1000)
    url = file_server.add("/f.bin", data)
    totals: list[int | None] = []

    download_file([url], tmp_path / "f.bin", approx_size=999_999, progress=lambda d, t: totals.append(t))

    assert totals[-1] == len(data)


# ---------------------------------------------------------------- mirrors


@pytest.mark.parametrize("status", [404, 500, 403])
def test_http_error_falls_back_to_the_next_mirror(
    file_server: FileServer, tmp_path: Path, status: int
) -> None:
    data = random_bytes(2000)
    bad = file_server.add("/bad.bin", b"", status=status)
    good = file_server.add("/good.bin", data)

    download_file([bad, good], tmp_path / "f.bin", expected_size=len(data))

    assert (tmp_path / "f.bin").read_bytes() == data
    assert [r.path for r in file_server.requests] == ["/bad.bin", "/good.bin"]


def test_refused_connection_falls_back_to_the_next_mirror(file_server: FileServer, tmp_path: Path) -> None:
    data = random_bytes(2000)
    good = file_server.add("/good.bin", data)

    download_file([refused_url(), good], tmp_path / "f.bin")

    assert (tmp_path / "f.bin").read_bytes() == data


def test_stalled_server_times_out_and_the_next_mirror_is_used(
    file_server: FileServer, tmp_path: Path
) -> None:
    data = random_bytes(2000)
    slow = file_server.add("/slow.bin", data, stall=3.0)
    good = file_server.add("/good.bin", data)

    download_file([slow, good], tmp_path / "f.bin", timeout=0.3)

    assert (tmp_path / "f.bin").read_bytes() == data


def test_all_sources_failing_raises_one_line_error_naming_each_source(
    file_server: FileServer, tmp_path: Path
) -> None:
    missing = file_server.url("/missing.bin")
    refused = refused_url()
    dest = tmp_path / "f.bin"

    with pytest.raises(DownloadError) as caught:
        download_file([missing, refused], dest)

    message = str(caught.value)
    assert "\n" not in message
    assert "f.bin" in message and "HTTP 404" in message and "connection refused" in message
    assert "2 source(s)" in message
    assert folder_listing(dest) == []


# ---------------------------------------------------------------- size checks


def test_wrong_size_is_rejected_and_nothing_is_kept(file_server: FileServer, tmp_path: Path) -> None:
    url = file_server.add("/f.bin", random_bytes(2010))
    dest = tmp_path / "f.bin"

    with pytest.raises(DownloadError, match="expected 2000"):
        download_file([url], dest, expected_size=2000)

    assert folder_listing(dest) == []


def test_wrong_size_from_the_first_mirror_falls_back_to_the_next(
    file_server: FileServer, tmp_path: Path
) -> None:
    data = random_bytes(2000)
    short = file_server.add("/short.bin", data[:1500])
    good = file_server.add("/good.bin", data)

    download_file([short, good], tmp_path / "f.bin", expected_size=len(data))

    assert (tmp_path / "f.bin").read_bytes() == data


def test_not_enough_disk_space_stops_the_download_with_advice(
    file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = file_server.add("/f.bin", random_bytes(5000))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda path: usage(10_000, 9_000, 1_000))

    with pytest.raises(DownloadError, match=r"Not enough disk space.*VQBOT_MODEL_DIR"):
        download_file([url], tmp_path / "f.bin")


def test_a_disk_error_while_writing_is_reported_as_a_download_error(
    file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = file_server.add("/f.bin", random_bytes(5000))
    real_open = Path.open

    def full_disk_open(self: Path, mode: str = "r", *args: object, **kwargs: object) -> object:
        handle = real_open(self, mode, *args, **kwargs)  # type: ignore[call-overload]
        if self.name.endswith(".part") and "b" in mode and ("w" in mode or "a" in mode):
            handle.close()
            raise OSError(28, "No space left on device")
        return handle

    monkeypatch.setattr(Path, "open", full_disk_open)
    with pytest.raises(DownloadError, match=r"Could not write .*f\.bin\.part \(No space left on device\)"):
        download_file([url], tmp_path / "f.bin")

    assert len(file_server.requests) == 1, "a local disk error must not be blamed on the mirror"


def test_a_model_dir_that_cannot_be_created_is_reported_as_a_download_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the folder should be")

    with pytest.raises(DownloadError, match=r"Could not write .*VQBOT_MODEL_DIR"):
        download_file(["http://127.0.0.1:9/x"], blocker / "models" / "f.bin")


# ---------------------------------------------------------------- SHA-256 record


def test_checksum_mismatch_on_a_later_download_is_rejected_and_the_file_deleted(
    file_server: FileServer, tmp_path: Path
) -> None:
    first = random_bytes(3000, seed=1)
    other = random_bytes(3000, seed=2)
    dest = tmp_path / "f.bin"
    download_file([file_server.add("/first.bin", first)], dest, expected_size=3000)
    recorded = checksum_path(dest).read_text()
    dest.unlink()

    with pytest.raises(ChecksumMismatchError) as caught:
        download_file([file_server.add("/other.bin", other)], dest, expected_size=3000)

    message = str(caught.value)
    assert "SHA-256" in message and "deleted" in message and checksum_path(dest).name in message
    assert not dest.exists() and not part_path(dest).exists()
    assert checksum_path(dest).read_text() == recorded


def test_checksum_mismatch_from_one_mirror_falls_back_to_a_good_one(
    file_server: FileServer, tmp_path: Path
) -> None:
    good = random_bytes(3000, seed=1)
    dest = tmp_path / "f.bin"
    download_file([file_server.add("/first.bin", good)], dest)
    dest.unlink()
    evil = file_server.add("/evil.bin", random_bytes(3000, seed=9))

    download_file([evil, file_server.url("/first.bin")], dest)

    assert dest.read_bytes() == good


def test_existing_file_that_matches_its_record_is_not_downloaded_again(
    file_server: FileServer, tmp_path: Path
) -> None:
    data = random_bytes(3000)
    url = file_server.add("/f.bin", data)
    dest = tmp_path / "f.bin"
    download_file([url], dest)

    download_file([url], dest)

    assert len(file_server.requests) == 1


def test_corrupted_existing_file_is_deleted_and_downloaded_again(
    file_server: FileServer, tmp_path: Path
) -> None:
    data = random_bytes(3000)
    url = file_server.add("/f.bin", data)
    dest = tmp_path / "f.bin"
    download_file([url], dest)
    dest.write_bytes(b"\0" * 3000)

    download_file([url], dest)

    assert dest.read_bytes() == data
    assert len(file_server.requests) == 2


def test_verify_file_deletes_a_file_that_differs_from_its_record(
    file_server: FileServer, tmp_path: Path
) -> None:
    dest = tmp_path / "f.bin"
    download_file([file_server.add("/f.bin", random_bytes(3000))], dest)
    dest.write_bytes(random_bytes(3000, seed=5))

    with pytest.raises(ChecksumMismatchError, match=r"f.bin was bad and has been deleted"):
        verify_file(dest)

    assert not dest.exists()


def test_verify_file_records_a_hash_for_a_file_put_there_by_hand(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"hello")

    digest = verify_file(dest, expected_size=5)

    assert checksum_path(dest).read_text().split()[0] == digest == file_sha256(dest)


# ---------------------------------------------------------------- whole models


def _local_model(file_server: FileServer, *, ckpt: bytes, config: bytes, size: int | None) -> VQGANModel:
    return VQGANModel(
        name="tiny_f16_16384",
        kind=ModelKind.VQ,
        factor=16,
        codebook_size=16384,
        config=ModelFile("tiny_f16_16384.yaml", (refused_url(), file_server.add("/model.yaml", config))),
        checkpoint=ModelFile(
            "tiny_f16_16384.ckpt", (file_server.add("/last.ckpt", ckpt),), size=size, approx_size=size
        ),
    )


def test_download_model_fetches_and_checks_config_and_checkpoint(
    file_server: FileServer, tmp_path: Path
) -> None:
    ckpt = checkpoint_bytes(padding=MiB)
    model = _local_model(file_server, ckpt=ckpt, config=config_bytes(), size=len(ckpt))

    paths = download_model(model, tmp_path / "models", progress=False)

    assert paths.checkpoint.read_bytes() == ckpt
    assert paths.config.read_bytes() == config_bytes()
    assert checksum_path(paths.checkpoint).exists() and checksum_path(paths.config).exists()
    assert verify_model(model, tmp_path / "models") == paths


def test_download_model_rejects_a_config_for_another_codebook(
    file_server: FileServer, tmp_path: Path
) -> None:
    model = _local_model(file_server, ckpt=checkpoint_bytes(), config=config_bytes(n_embed=1024), size=None)

    with pytest.raises(DownloadError, match=r"tiny_f16_16384.yaml.*n_embed=1024"):
        download_model(model, tmp_path, progress=False)


def test_download_file_refuses_a_single_string_instead_of_a_list(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="list of URLs"):
        download_file("http://127.0.0.1/x", tmp_path / "x")  # a str is a Sequence[str] to the type checker


def test_importing_the_engine_modules_downloads_nothing(tmp_path: Path) -> None:
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise SystemExit('network used at import')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "import engine.catalog, engine.download, engine.convert\n"
    )
    env = {**os.environ, "VQBOT_MODEL_DIR": str(tmp_path / "models")}
    root = Path(__file__).resolve().parents[2]

    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "models").exists()

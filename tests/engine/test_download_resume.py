"""engine.download resuming cut transfers (engine/http_fetch.py) against an HTTP server on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

from engine.catalog import part_path
from engine.download import download_file
from tests.engine.conftest_download import (  # noqa: F401 - file_server is a fixture
    FileServer,
    MiB,
    file_server,
    random_bytes,
)

# ---------------------------------------------------------------- resuming


def test_cut_connection_is_resumed_with_a_range_request(file_server: FileServer, tmp_path: Path) -> None:
    data = random_bytes(3 * MiB + 123)
    cut = MiB + 7
    url = file_server.add("/f.bin", data, cut_after=cut, cuts=1)
    dest = tmp_path / "f.bin"

    download_file([url], dest, expected_size=len(data))

    served = file_server.requests_for("/f.bin")
    assert [(r.range, r.status) for r in served] == [(None, 200), (f"bytes={cut}-", 206)]
    assert dest.read_bytes() == data


def test_cut_connection_is_resumed_even_without_a_known_size(file_server: FileServer, tmp_path: Path) -> None:
    data = random_bytes(2 * MiB)
    url = file_server.add("/f.bin", data, cut_after=1000, cuts=2)
    dest = tmp_path / "f.bin"

    download_file([url], dest)

    assert [r.range for r in file_server.requests_for("/f.bin")] == [None, "bytes=1000-", "bytes=2000-"]
    assert dest.read_bytes() == data


def test_partial_download_from_an_earlier_run_is_resumed(file_server: FileServer, tmp_path: Path) -> None:
    data = random_bytes(MiB + 999)
    url = file_server.add("/f.bin", data)
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(data[:5000])

    download_file([url], dest, expected_size=len(data))

    assert [r.range for r in file_server.requests] == ["bytes=5000-"]
    assert dest.read_bytes() == data


def test_server_that_ignores_range_makes_the_download_start_again(
    file_server: FileServer, tmp_path: Path
) -> None:
    data = random_bytes(MiB + 1)
    url = file_server.add("/f.bin", data, ranges=False)
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(b"x" * 5000)  # not even the right bytes: must not be kept
    counts: list[int] = []

    download_file([url], dest, expected_size=len(data), progress=lambda done, total: counts.append(done))

    assert [(r.range, r.status) for r in file_server.requests] == [("bytes=5000-", 200)]
    assert dest.read_bytes() == data
    assert counts[0] == 0 and counts[-1] == len(data)


def test_complete_part_file_is_finished_without_downloading_again(
    file_server: FileServer, tmp_path: Path
) -> None:
    data = random_bytes(4000)
    url = file_server.add("/f.bin", data)
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(data)

    download_file([url], dest, expected_size=len(data))

    assert file_server.requests == []
    assert dest.read_bytes() == data


def test_complete_part_file_of_unknown_size_is_finished_after_a_416(
    file_server: FileServer, tmp_path: Path
) -> None:
    data = random_bytes(4000)
    url = file_server.add("/f.bin", data)
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(data)

    download_file([url], dest)

    assert [(r.range, r.status) for r in file_server.requests] == [("bytes=4000-", 416)]
    assert dest.read_bytes() == data

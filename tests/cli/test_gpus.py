"""`vqbot worker --gpus all|0,1` / `--devices cpu,cpu`: one worker process per device against one store."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.cli.vqbot_process import vqbot
from vqbot_cli import gpus
from vqbot_cli.errors import UsageError
from vqbot_cli.main import main


def test_all_gpus_get_a_worker_each_with_its_own_name_device_and_compile_cache() -> None:
    plans = gpus.plan_workers(gpus.gpu_devices("all", gpu_count=4), base_name="gpu-host", model_dir=Path("/models"))
    assert [(p.name, p.device) for p in plans] == [(f"gpu-host-cuda{n}", f"cuda:{n}") for n in range(4)]
    assert len({p.compile_cache for p in plans}) == 4
    assert plans[2].env() == {"VQBOT_DEVICE": "cuda:2", "VQBOT_WORKER_NAME": "gpu-host-cuda2",
                              "TORCHINDUCTOR_CACHE_DIR": "/models/compile-cache/cuda2"}


def test_a_list_of_gpus_picks_those() -> None:
    assert gpus.gpu_devices(" 0, 2 ", gpu_count=4) == ["cuda:0", "cuda:2"]


def test_the_same_device_twice_is_told_apart() -> None:
    plans = gpus.plan_workers(gpus.listed_devices("cpu,CPU"), base_name="laptop", model_dir=Path("m"))
    assert [(p.name, p.device) for p in plans] == [("laptop-cpu-0", "cpu"), ("laptop-cpu-1", "cpu")]
    assert plans[0].compile_cache != plans[1].compile_cache


@pytest.mark.parametrize("spec, count, words", [
    ("all", 0, "torch sees no CUDA GPU"),
    ("0", 0, "torch sees no CUDA GPU"),
    ("2", 2, "numbered 0 to 1"),
    ("0,0", 2, "names a GPU twice"),
    ("one", 2, "GPU numbers separated by commas"),
    ("-1", 2, "GPU numbers separated by commas"),
    ("0,", 2, "GPU numbers separated by commas"),
    ("\x1b[2J", 2, "\\x1b"),
])
def test_gpus_that_are_not_there_are_refused(spec, count, words) -> None:
    with pytest.raises(UsageError) as refused:
        gpus.gpu_devices(spec, gpu_count=count)
    assert words in str(refused.value) or words in repr(str(refused.value))


@pytest.mark.parametrize("spec", ["auto", "gpu0", "cpu,,cpu", ""])
def test_devices_must_be_devices(spec) -> None:
    with pytest.raises(UsageError):
        gpus.listed_devices(spec)


def empty_env(tmp_path: Path) -> str:
    path = tmp_path / "empty.env"
    path.write_text("")
    return str(path)


def test_gpus_all_on_a_machine_without_gpus_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(gpus, "count_gpus", lambda: 0)  # this machine's GPUs, as torch would count them
    assert main(["--env-file", empty_env(tmp_path), "worker", "--gpus", "all"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vqbot: error: --gpus “all”: torch sees no CUDA GPU") and "\n" not in err


def test_gpus_and_devices_together_are_refused(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--env-file", empty_env(tmp_path), "worker", "--gpus", "all", "--devices", "cpu"])
    assert done.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_each_device_gets_a_real_worker_process_and_one_failing_stops_the_set(tmp_path) -> None:
    # no models and no downloads: each child refuses at start, as a lone `vqbot worker` would
    result = vqbot("worker", "--devices", "cpu,cpu", cwd=tmp_path, env={"VQBOT_WORKER_NAME": "box"})
    assert result.returncode == 2, result.stderr
    err = result.stderr
    assert "started worker box-cpu-0 on cpu" in err and "started worker box-cpu-1 on cpu" in err
    errors = [line for line in err.splitlines() if line.startswith("vqbot: error: ")]
    # the first to refuse stops its sibling, which may or may not have said the same by then
    assert errors and all("vqbot models download" in line for line in errors), err
    assert "Traceback" not in err and (tmp_path / "data" / "vqbot.sqlite3").exists()


def test_the_default_base_name_is_the_host() -> None:
    assert gpus.base_name({}) == socket.gethostname() and gpus.base_name({"VQBOT_WORKER_NAME": " w "}) == "w"

"""Every setting is checked when a command starts: a bad value is one sentence naming its valid choices."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.vqbot_process import error_line, vqbot
from vqbot_cli.run import DEFAULT_LEASE_S, RunOptions, SetupProblem, worker_config
from vqbot_cli.settings import COMPILE_MODES, PRECISIONS, Settings


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    import os

    for key in [k for k in os.environ if k.startswith("VQBOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("VQBOT_MODEL_DIR", str(tmp_path / "models"))
    return monkeypatch


@pytest.mark.parametrize("key, value, message", [
    ("VQBOT_DEVICE", "gpu", "VQBOT_DEVICE must be auto, cpu, cuda, cuda:N (N a GPU number) or mps, not “gpu”"),
    ("VQBOT_DEVICE", "cuda:x", "VQBOT_DEVICE must be auto, cpu, cuda, cuda:N"),
    ("VQBOT_LOG_LEVEL", "verbose", "VQBOT_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not “verbose”"),
    ("VQBOT_PRECISION", "fp8", "VQBOT_PRECISION must be one of auto, fp32, bf16, fp16"),
    ("VQBOT_COMPILE", "max-autotune", "VQBOT_COMPILE must be one of auto, none, default, reduce-overhead"),
    ("VQBOT_FUSED_KERNELS", "maybe", "VQBOT_FUSED_KERNELS must be 1 or 0"),
    ("VQBOT_VQGAN", "vqgan_nope", "VQBOT_VQGAN: Unknown VQGAN model 'vqgan_nope'; valid names are: vqgan_imagenet_f16_16384"),
    ("VQBOT_VQGAN_CONFIG", "model.yaml", "VQBOT_VQGAN_CONFIG and VQBOT_VQGAN_CHECKPOINT go together"),
])
def test_a_bad_setting_is_refused_naming_the_valid_choices(env: pytest.MonkeyPatch, key: str, value: str,
                                                           message: str) -> None:
    env.setenv(key, value)
    with pytest.raises(ValueError) as refused:
        Settings.from_env(None)
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize("key, value, message", [
    ("VQBOT_LEASE_S", "5", "VQBOT_LEASE_S must be a number from 15 to 3600, not “5”"),
    ("VQBOT_LEASE_S", "nan", "VQBOT_LEASE_S must be a number from 15 to 3600"),
    ("VQBOT_LEASE_S", "two minutes", "VQBOT_LEASE_S must be a number from 15 to 3600"),
    ("VQBOT_MAX_BATCH", "0", "VQBOT_MAX_BATCH must be a whole number from 1 to 64, not “0”"),
    ("VQBOT_MAX_BATCH", "4.5", "VQBOT_MAX_BATCH must be a whole number from 1 to 64"),
    ("VQBOT_WARM_UP", "sometimes", "VQBOT_WARM_UP must be 1 or 0"),
    ("VQBOT_AUTO_DOWNLOAD", "2", "VQBOT_AUTO_DOWNLOAD must be 1 or 0"),
    ("VQBOT_SYNC_GUILD", "my server", "VQBOT_SYNC_GUILD must be a server id (digits)"),
    ("VQBOT_MODELS", "wikiart_16384,nope", "VQBOT_MODELS: Unknown VQGAN model 'nope'"),
])
def test_a_bad_bot_or_worker_setting_is_refused(env: pytest.MonkeyPatch, key: str, value: str, message: str) -> None:
    env.setenv(key, value)
    with pytest.raises(SetupProblem) as refused:
        RunOptions.from_env(Settings.from_env(None))
    assert str(refused.value).startswith(message)


def test_the_settings_offer_exactly_the_engines_choices() -> None:
    from engine import compiling, models

    assert PRECISIONS == models.PRECISIONS
    assert ("auto", *compiling.COMPILE_MODES) == COMPILE_MODES


def test_the_lease_is_a_setting_that_reaches_the_worker(env: pytest.MonkeyPatch) -> None:
    assert worker_config(RunOptions.from_env(Settings.from_env(None))).lease_s == DEFAULT_LEASE_S == 30.0
    env.setenv("VQBOT_LEASE_S", "45")
    assert worker_config(RunOptions.from_env(Settings.from_env(None))).lease_s == 45.0


def test_a_local_dir_clip_is_not_recorded_with_the_default_tag(env: pytest.MonkeyPatch) -> None:
    env.setenv("VQBOT_CLIP", "local-dir:/models/clip")
    assert Settings.from_env(None).clip_pretrained == ""


def test_a_missing_env_file_named_on_the_command_line_is_an_error(tmp_path: Path) -> None:
    line = error_line(vqbot("--env-file", "prod.env", "models", "list", cwd=tmp_path))
    assert line == "vqbot: error: The settings file “prod.env” does not exist; check --env-file."


def test_without_a_dot_env_the_defaults_apply(tmp_path: Path) -> None:
    result = vqbot("models", "list", cwd=tmp_path)
    assert result.returncode == 0 and "vqgan_imagenet_f16_16384" in result.stdout, result.stderr


def test_settings_in_the_env_file_are_read_and_real_environment_variables_win(tmp_path: Path) -> None:
    (tmp_path / "my.env").write_text("VQBOT_VQGAN=wikiart_16384\nVQBOT_LOG_LEVEL=verbose\n")
    listing = vqbot("--env-file", "my.env", "models", "list", cwd=tmp_path, env={"VQBOT_LOG_LEVEL": "INFO"})
    (wikiart,) = [line for line in listing.stdout.splitlines() if "wikiart_16384" in line]
    assert "(default)" in wikiart, listing.stderr
    assert "VQBOT_LOG_LEVEL must be one of" in error_line(vqbot("--env-file", "my.env", "models", "list", cwd=tmp_path))


def test_a_line_of_the_env_file_that_is_not_key_value_is_refused_with_its_number(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DISCORD_TOKEN=abc\nthis is not a setting\n")
    line = error_line(vqbot("models", "list", cwd=tmp_path))
    assert "Line 2 of the settings file “.env” is not KEY=value" in line

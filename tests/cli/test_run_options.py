"""What a starting worker prepares before it takes jobs (VQBOT_WARM_UP, VQBOT_COMPILE), and VQBOT_FUSED_KERNELS."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bot.grids import grid_params
from db import GuildSettings
from jobspec import JobParams, Prompt, batch_key
from vqbot_cli.run import RunOptions, _warm_up_shapes
from vqbot_cli.settings import Settings


def options_and_settings(monkeypatch, tmp_path, **env: str):
    monkeypatch.setenv("VQBOT_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("VQBOT_DATABASE", str(tmp_path / "vqbot.sqlite3"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env(None)
    return RunOptions.from_env(settings), settings


def test_a_compiling_worker_warms_up_a_default_grid_and_its_upscale(monkeypatch, tmp_path) -> None:
    options, settings = options_and_settings(monkeypatch, tmp_path, VQBOT_MODELS="wikiart_16384,vqgan_imagenet_f16_1024")
    shapes = _warm_up_shapes(settings, options, SimpleNamespace(config=SimpleNamespace(compile="reduce-overhead")))
    assert all(s.model == "wikiart_16384" and s.clip_model == settings.clip for s in shapes)
    # what a plain /imagine asks for: four candidates at the default grid settings, then full-size upscales
    default = JobParams(prompts=(Prompt("x"),), model="wikiart_16384", clip_model=settings.clip,
                        clip_pretrained=settings.clip_pretrained)
    candidate = grid_params(default, GuildSettings())[0]
    assert [batch_key(s) for s in shapes] == [batch_key(candidate), batch_key(default)]
    assert (shapes[0].width, shapes[0].height) != (shapes[1].width, shapes[1].height)


@pytest.mark.parametrize("env, compile_mode", [({"VQBOT_WARM_UP": "0"}, "reduce-overhead"), ({}, "none")])
def test_no_warm_up_when_turned_off_or_not_compiling(monkeypatch, tmp_path, env, compile_mode) -> None:
    options, settings = options_and_settings(monkeypatch, tmp_path, **env)
    assert _warm_up_shapes(settings, options, SimpleNamespace(config=SimpleNamespace(compile=compile_mode))) == ()


@pytest.mark.parametrize("value, cap", [(None, 8), ("", 8), ("16", 16), ("1", 1)])
def test_vqbot_max_batch_caps_the_batch_at_8_unless_set(monkeypatch, tmp_path, value,
                                                                               cap) -> None:
    from vqbot_cli.run import worker_config

    options, _ = options_and_settings(monkeypatch, tmp_path, **({} if value is None else {"VQBOT_MAX_BATCH": value}))
    config = worker_config(options)
    assert options.max_batch == cap and config.max_batch == cap


@pytest.mark.parametrize("value, fused", [(None, True), ("0", False), ("off", False), ("1", True)])
def test_vqbot_fused_kernels_turns_the_triton_kernels_off(monkeypatch, tmp_path, value, fused) -> None:
    from engine import layers
    from engine.runner import Engine, EngineConfig

    monkeypatch.delenv("VQBOT_FUSED_KERNELS", raising=False)
    _, settings = options_and_settings(monkeypatch, tmp_path, **({} if value is None else {"VQBOT_FUSED_KERNELS": value}))
    assert settings.fused_kernels is fused
    # an engine told so stops using them on its device (the CPU stands in for CUDA here)
    with layers.switched(fused_norm_devices={"cpu"}):
        engine = Engine(EngineConfig(model_dir=tmp_path / "models", device="cpu", fused_kernels=settings.fused_kernels))
        with engine.settings():
            assert ("cpu" in layers.switches().fused_norm_devices) is fused


def test_housekeeping_settings_default_to_hourly_rounds_and_thirty_days(monkeypatch, tmp_path) -> None:
    from vqbot_cli.run import housekeeping_config

    options, _ = options_and_settings(monkeypatch, tmp_path)
    config = housekeeping_config(options)
    assert (config.every_s, config.keep_results_days, config.keep_uploads_days) == (3600, 30, 30)
    assert config.uploads_dir == options.data_dir / "attachments"  # where the bot keeps uploads
    options, _ = options_and_settings(monkeypatch, tmp_path, VQBOT_PRUNE_EVERY_S="0", VQBOT_KEEP_RESULTS_DAYS="0",
                                      VQBOT_KEEP_UPLOADS_DAYS="7")
    assert (options.prune_every_s, options.keep_results_days, options.keep_uploads_days) == (0, 0, 7)


@pytest.mark.parametrize("key, value", [("VQBOT_PRUNE_EVERY_S", "5"), ("VQBOT_PRUNE_EVERY_S", "-1"),
                                        ("VQBOT_PRUNE_EVERY_S", "nan"), ("VQBOT_KEEP_RESULTS_DAYS", "forever"),
                                        ("VQBOT_KEEP_UPLOADS_DAYS", "0"), ("VQBOT_KEEP_RESULTS_DAYS", "1e9")])
def test_bad_housekeeping_settings_are_refused_at_start_naming_the_setting(monkeypatch, tmp_path, key, value) -> None:
    from vqbot_cli.run import SetupProblem

    with pytest.raises(SetupProblem, match=key):
        options_and_settings(monkeypatch, tmp_path, **{key: value})


async def test_vqbot_run_and_worker_start_housekeeping_unless_turned_off(monkeypatch, tmp_path) -> None:
    import asyncio

    from db import SqliteStore
    from tests.db.factories import PNG, new_job
    from vqbot_cli.run import start_housekeeping

    store = await SqliteStore.open(tmp_path / "vqbot.sqlite3")
    try:
        job = await store.enqueue(new_job())
        (claim,) = await store.claim("gpu-0", lease_seconds=30)
        assert await store.finish(job.id, claim.token, result_png=PNG, gpu_seconds=1)
        assert await store.mark_delivered(job.id)
        stop = asyncio.Event()
        off, _ = options_and_settings(monkeypatch, tmp_path, VQBOT_PRUNE_EVERY_S="0")
        assert start_housekeeping(store, off, stop) is None
        # A retention this short deletes the result at the first round, which comes at start.
        on, _ = options_and_settings(monkeypatch, tmp_path, VQBOT_PRUNE_EVERY_S="60", VQBOT_KEEP_RESULTS_DAYS="1e-9")
        task = start_housekeeping(store, on, stop)
        assert task is not None

        async def result_gone() -> None:
            while await store.result(job.id) is not None:  # each read yields to the housekeeping task
                pass

        await asyncio.wait_for(result_gone(), timeout=60)  # a hang fails, not a slow machine
        stop.set()
        await asyncio.wait_for(task, timeout=30)  # ends at once when told, without waiting out its 60 s
    finally:
        await store.close()


def test_a_worker_that_finds_no_gpu_warns_and_one_asked_to_use_the_cpu_does_not() -> None:
    from vqbot_cli.model_plan import cpu_warning

    assert "no GPU in use" in (cpu_warning("auto", "cpu") or "")
    assert cpu_warning("cpu", "cpu") is None
    assert cpu_warning("auto", "cuda") is None


def test_checkpoints_default_to_every_30_seconds_and_a_step_count_can_be_added(monkeypatch, tmp_path) -> None:
    from vqbot_cli.run import worker_config

    options, _ = options_and_settings(monkeypatch, tmp_path)
    config = worker_config(options)
    assert (config.checkpoint_every_s, config.checkpoint_every_steps) == (30, None)
    options, _ = options_and_settings(monkeypatch, tmp_path, VQBOT_CHECKPOINT_EVERY_S="0",
                                      VQBOT_CHECKPOINT_EVERY_STEPS="5")
    config = worker_config(options)
    assert (config.checkpoint_every_s, config.checkpoint_every_steps) == (None, 5)


@pytest.mark.parametrize("key, value", [("VQBOT_CHECKPOINT_EVERY_S", "1"), ("VQBOT_CHECKPOINT_EVERY_S", "inf"),
                                        ("VQBOT_CHECKPOINT_EVERY_S", "soon"), ("VQBOT_CHECKPOINT_EVERY_STEPS", "2.5"),
                                        ("VQBOT_CHECKPOINT_EVERY_STEPS", "-5")])
def test_bad_checkpoint_settings_are_refused_at_start_naming_the_setting(monkeypatch, tmp_path, key, value) -> None:
    from vqbot_cli.run import SetupProblem

    with pytest.raises(SetupProblem, match=key):
        options_and_settings(monkeypatch, tmp_path, **{key: value})

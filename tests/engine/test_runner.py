"""The engine service: admission splits batches that don't fit, and refuses what never fits."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from engine import layers
from engine.images import preview_bytes
from engine.runner import Engine, EngineConfig, InsufficientMemoryError
from jobspec import JobParams, parse_prompts


def pixels(png: bytes) -> torch.Tensor:
    with Image.open(io.BytesIO(png)) as image:
        return torch.tensor(list(image.convert("RGB").getdata()), dtype=torch.int16)


class TightEngine(Engine):
    """An engine whose GPU has room for ``room`` jobs at a time (the admission estimate, pinned)."""

    room = 1

    def max_batch(self, params: JobParams, limit: int) -> int:
        return min(limit, self.room)


def engine(kind: type[Engine], vqgan_files: tuple[Path, Path], clip_dir: Path) -> Engine:
    return kind(EngineConfig(model_dir=clip_dir.parent, device="cpu", precision="fp32",
                             vqgan_config=vqgan_files[0], vqgan_checkpoint=vqgan_files[1]))


def jobs(clip_dir: Path, n: int) -> list[tuple[int, JobParams]]:
    base = JobParams(prompts=parse_prompts("a lighthouse"), width=32, height=32, steps=4, cutn=2,
                     clip_model=f"local-dir:{clip_dir}", clip_pretrained="")
    return [(i, base.with_changes(seed=i)) for i in range(n)]


def test_jobs_that_do_not_fit_together_run_in_turns_and_all_finish(vqgan_files, clip_dir) -> None:
    tight = engine(TightEngine, vqgan_files, clip_dir)
    TightEngine.room = 2
    seen_batches: list[int] = []
    results = list(tight.run(jobs(clip_dir, 5), lambda step: seen_batches.extend(step.keys)))
    assert sorted(r.key for r in results) == [0, 1, 2, 3, 4]
    assert all(r.steps_done == 4 for r in results)
    # Turns of at most two: jobs 0-1, then 2-3, then 4.
    assert seen_batches[:2] == [0, 1] and seen_batches[8:10] == [2, 3] and seen_batches[-1] == 4
    plain = {r.key: pixels(r.png) for r in engine(Engine, vqgan_files, clip_dir).run(jobs(clip_dir, 5))}
    for r in results:  # the same pictures as all five at once, up to float rounding
        assert (pixels(r.png) - plain[r.key]).abs().max() <= 2


def test_a_job_that_never_fits_is_refused_with_a_reason(vqgan_files, clip_dir) -> None:
    tight = engine(TightEngine, vqgan_files, clip_dir)
    TightEngine.room = 0
    with pytest.raises(InsufficientMemoryError, match="does not fit in the GPU's free memory"):
        list(tight.run(jobs(clip_dir, 1)))


def test_the_step_callback_decides_which_jobs_get_a_preview_and_the_pictures_still_come(vqgan_files,
                                                                                       clip_dir) -> None:
    """The worker's time gate: a job that doesn't want a report gets none (no preview is made for it)."""
    plain = engine(Engine, vqgan_files, clip_dir)
    reports = []
    calls = {0: 0, 1: 0}

    def first_two_for_job_0(key) -> bool:  # job 1 never wants one; job 0 its first two
        calls[key] += 1
        return key == 0 and reports.count(0) < 2

    def callback(step) -> None:
        for key in step.keys:
            if first_two_for_job_0(key):
                preview = preview_bytes(step.pictures()[key])
                assert preview[:4] == b"RIFF"  # a WebP preview
                reports.append(key)

    results = list(plain.run(jobs(clip_dir, 2), callback))
    assert reports == [0, 0]
    assert calls[1] > 0  # asked, and refused
    assert sorted(r.key for r in results) == [0, 1] and all(r.steps_done == 4 and r.png for r in results)


def test_an_engine_changes_process_settings_only_while_it_works(vqgan_files, clip_dir, monkeypatch) -> None:
    """Deterministic kernels, the fused kernels left out, the compile cache: in force inside the engine's
    calls, as they were outside them."""
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    cpu = torch.device("cpu")
    with layers.switched(fused_norm_devices={"cpu"}):  # the CPU stands in for CUDA
        careful = Engine(EngineConfig(model_dir=clip_dir.parent, device="cpu", precision="fp32", compile="default",
                                      fused_kernels=False, deterministic=True, vqgan_config=vqgan_files[0],
                                      vqgan_checkpoint=vqgan_files[1]))
        with careful.settings():
            assert torch.are_deterministic_algorithms_enabled()
            assert cpu.type not in layers.switches().fused_norm_devices
            assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(clip_dir.parent / "compile-cache")
        assert not torch.are_deterministic_algorithms_enabled()
        assert layers.switches().fused_norm_devices == {"cpu"}
        assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ
        eager = Engine(EngineConfig(model_dir=clip_dir.parent, device="cpu", precision="fp32", deterministic=True,
                                    vqgan_config=vqgan_files[0], vqgan_checkpoint=vqgan_files[1]))
        (result,) = eager.run(jobs(clip_dir, 1))
        assert result.steps_done == 4
        assert not torch.are_deterministic_algorithms_enabled()
    assert layers.switches() == layers.DEFAULT_SWITCHES


def test_warming_up_grows_one_batch_from_one_job_to_the_most_a_batch_holds(vqgan_files, clip_dir,
                                                                            monkeypatch) -> None:
    """A compiling engine has one graph for a job alone and one for batches of two or more, and each batch
    size records its own CUDA graph and tunes its kernels on first use; a worker that says it is ready must
    have stepped every size it will run (the real step runs, its batch sizes recorded), growing one batch
    a job at a time as continuous batching does, decoded a picture, encoded an init image of the size (an
    upscale's or a variation's start) and let every job leave with its picture (the first job's model
    digests for the picture's metadata are taken then, not while a user waits)."""
    from engine.optimiser import BatchOptimiser
    from engine.runner import WARM_UP_STEPS

    sizes: list[int] = []
    decoded: list[int] = []
    encoded: list[tuple[int, ...]] = []
    finished: list[object] = []
    step, pictures = BatchOptimiser.step, BatchOptimiser.pictures
    start_latent, finish = BatchOptimiser.start_latent, BatchOptimiser.finish

    def recorded_start(self: BatchOptimiser, params, init_image):
        if init_image is not None:
            encoded.append(tuple(init_image.shape))
        return start_latent(self, params, init_image)

    def recorded_finish(self: BatchOptimiser, key):
        finished.append(key)
        return finish(self, key)

    def recorded(self: BatchOptimiser):
        sizes.append(len(self))
        return step(self)

    def recorded_pictures(self: BatchOptimiser, keys=None):
        decoded.append(len(self))
        return pictures(self, keys)

    monkeypatch.setattr(BatchOptimiser, "step", recorded)
    monkeypatch.setattr(BatchOptimiser, "pictures", recorded_pictures)
    monkeypatch.setattr(BatchOptimiser, "start_latent", recorded_start)
    monkeypatch.setattr(BatchOptimiser, "finish", recorded_finish)
    warm = engine(Engine, vqgan_files, clip_dir)
    shape = jobs(clip_dir, 1)[0][1]
    assert warm.warm_up(shape) > 0
    assert sizes == [1] * WARM_UP_STEPS + [2] * WARM_UP_STEPS  # on the CPU: the two compiled steps
    assert decoded[0] == 1  # a picture while the job was alone
    assert encoded == [(1, 3, shape.height, shape.width)]
    assert finished == ["warm-up-1", "warm-up-2"]
    sizes.clear()
    assert warm.warm_up(jobs(clip_dir, 1)[0][1], jobs=4) > 0
    assert sizes == [1] * WARM_UP_STEPS + [2] * WARM_UP_STEPS + [3] * WARM_UP_STEPS + [4] * WARM_UP_STEPS
    sizes.clear()
    assert warm.warm_up(jobs(clip_dir, 1)[0][1], should_stop=lambda: True) >= 0  # a stopping worker skips it
    assert sizes == []

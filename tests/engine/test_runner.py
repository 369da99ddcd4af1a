"""The engine service: admission splits batches that don't fit, and refuses what never fits."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image

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
    results = list(tight.run(jobs(clip_dir, 5), progress_every=1,
                             on_progress=lambda p: seen_batches.append(p.key)))
    assert sorted(r.key for r in results) == [0, 1, 2, 3, 4]
    assert all(r.steps_done == 4 and not r.cancelled for r in results)
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


def test_progress_goes_only_to_jobs_that_want_it_now_and_the_pictures_still_come(vqgan_files, clip_dir) -> None:
    """The worker's time gate: a job that doesn't want a report gets none (no preview is made for it)."""
    plain = engine(Engine, vqgan_files, clip_dir)
    reports = []
    calls = {0: 0, 1: 0}

    def first_two_for_job_0(key) -> bool:  # job 1 never wants one; job 0 its first two
        calls[key] += 1
        return key == 0 and reports.count(0) < 2

    def on_progress(p) -> None:
        assert p.preview and p.preview[:4] == b"RIFF"  # a WebP preview came with it
        reports.append(p.key)

    results = list(plain.run(jobs(clip_dir, 2), progress_every=1, on_progress=on_progress,
                             progress_filter=first_two_for_job_0))
    assert reports == [0, 0]
    assert calls[1] > 0  # asked, and refused
    assert sorted(r.key for r in results) == [0, 1] and all(r.steps_done == 4 and r.png for r in results)

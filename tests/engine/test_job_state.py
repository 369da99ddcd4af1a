"""A job's picture is its own: the same alone, after joining a running batch late, and after being taken
out of a batch (its JobState, through checkpoint bytes) and resumed alone or in another batch.

On the CPU these are exact (torch.equal), not within a tolerance: every random number comes from the
job's seed and step number, and the CPU kernels a batch runs compute each job as if it were alone
(engine.invariance).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from engine.checkpoints import decode, encode
from engine.clip import Clip
from engine.cutouts import draw_random
from engine.invariance import step_seed
from engine.optimiser import BatchOptimiser
from engine.runner import Batch, Engine, EngineConfig
from engine.targets import build_targets
from engine.vqgan import VQGAN
from jobspec import JobParams, NoisePrompt, parse_prompts

CPU = torch.device("cpu")


def job(prompt: str, *, seed: int, steps: int = 12, **changes) -> JobParams:
    return JobParams(prompts=parse_prompts(prompt), width=32, height=32, steps=steps, cutn=4, seed=seed,
                     **changes).validate()


def optimiser(vqgan: VQGAN, clip: Clip) -> BatchOptimiser:
    return BatchOptimiser(vqgan, clip, width=32, height=32, cutn=4, device=CPU)


def step_until_done(batch: BatchOptimiser, pictures: dict, joining: dict | None = None) -> dict:
    """Step until empty; ``joining[n]`` = (key, params) joins after the batch's n-th step. Returns pictures by key."""
    joining = dict(joining or {})
    while len(batch) or joining:
        if not len(batch):
            raise AssertionError("the batch emptied before every job joined")
        step = batch.step()
        for key in step.finished:
            pictures[key] = batch.finish(key).image
        if batch.steps_taken in joining:
            key, params = joining.pop(batch.steps_taken)
            batch.add(key, params, build_targets(batch.clip, params, []))
    return pictures


def alone(vqgan: VQGAN, clip: Clip, params: JobParams) -> torch.Tensor:
    batch = optimiser(vqgan, clip)
    batch.add("alone", params, build_targets(clip, params, []))
    return step_until_done(batch, {})["alone"]


def test_a_job_that_joins_a_running_batch_at_step_7_makes_exactly_its_picture_alone(vqgan: VQGAN,
                                                                                     clip: Clip) -> None:
    running = job("a lighthouse", seed=1, steps=20)
    late = job("a forest:2 | night:-1", seed=9, steps=12, lr=0.05, cut_pow=2.0,
               noise_prompts=(NoisePrompt(5, 0.5),))
    batch = optimiser(vqgan, clip)
    batch.add("running", running, build_targets(clip, running, []))
    together = step_until_done(batch, {}, joining={7: ("late", late)})
    assert torch.equal(together["late"], alone(vqgan, clip, late))
    assert torch.equal(together["running"], alone(vqgan, clip, running))  # its late batch mate changed nothing


def test_a_steps_random_numbers_come_from_the_seed_and_step_number_alone() -> None:
    def draws(*seeds: int) -> torch.Tensor:
        uniform, noise = draw_random(list(seeds), 3, 8, device=CPU)
        return torch.cat([uniform.flatten(1), noise.flatten(1)], dim=1)

    first, later = step_seed(7, 0), step_seed(7, 137)
    both = draws(step_seed(3, 5), later)
    assert torch.equal(both[1], draws(later)[0])  # the same step, alone or second in a batch
    assert torch.equal(draws(later), draws(later))  # drawing it again gives it again: no history
    assert not torch.equal(draws(first), draws(later))
    # seeds that differ only above bit 32 (the CPU's Mersenne twister reads 32 bits of its seed)
    assert not torch.equal(draws(step_seed(1, 0)), draws(step_seed(1 + 2**32, 0)))


def test_a_jobs_state_resumed_in_a_fresh_batch_finishes_exactly_as_without_the_interruption(vqgan: VQGAN,
                                                                                            clip: Clip) -> None:
    params = job("a red barn | fog:-0.5", seed=4, steps=10)
    batch = optimiser(vqgan, clip)
    batch.add("job", params, build_targets(clip, params, []))
    for _ in range(6):
        batch.step()
    state = batch.state("job")
    assert state.step == 6 and state.z_init is None  # no init_weight: nothing to keep of the start
    batch.remove("job")  # the worker dies here
    again = optimiser(vqgan, clip)
    again.add("job", params, build_targets(clip, params, []), state=state)
    assert torch.equal(step_until_done(again, {})["job"], alone(vqgan, clip, params))


def test_a_state_that_cannot_go_on_is_refused_and_the_batch_is_as_it_was(vqgan: VQGAN, clip: Clip) -> None:
    params = job("a boat", seed=2, steps=5)
    batch = optimiser(vqgan, clip)
    batch.add("job", params, build_targets(clip, params, []))
    batch.step()
    state = batch.state("job")
    with pytest.raises(ValueError, match="made 1 steps of the job's 1"):
        batch.add("again", params.with_changes(steps=1), build_targets(clip, params, []), state=state)
    with pytest.raises(ValueError, match="init latent"):
        batch.add("again", params.with_changes(init_weight=1.0), build_targets(clip, params, []), state=state)
    assert batch.keys == ["job"] and batch.z.shape[0] == 1


# The worker's path: Engine batches, state out, checkpoint bytes, state back in.


def write_picture(path: Path) -> str:
    picture = torch.zeros(3, 40, 56, dtype=torch.uint8)
    picture[0, :, :20], picture[2, 20:, :] = 255, 200
    Image.fromarray(picture.permute(1, 2, 0).numpy()).save(path)
    return str(path)


def pixels(png: bytes) -> torch.Tensor:
    with Image.open(io.BytesIO(png)) as image:
        return torch.tensor(list(image.convert("RGB").get_flattened_data()), dtype=torch.int16)


@pytest.fixture
def engine(vqgan_files: tuple[Path, Path], clip_dir: Path) -> Engine:
    return Engine(EngineConfig(model_dir=clip_dir.parent, device="cpu", precision="fp32",
                               vqgan_config=vqgan_files[0], vqgan_checkpoint=vqgan_files[1]))


def engine_job(clip_dir: Path, prompt: str, seed: int, **changes) -> JobParams:
    return JobParams(prompts=parse_prompts(prompt), width=32, height=32, steps=9, cutn=2, seed=seed,
                     clip_model=f"local-dir:{clip_dir}", clip_pretrained="", **changes)


def run_to_end(batch: Batch) -> dict:
    results = {}
    while batch:
        for key in batch.step().finished:
            results[key] = batch.finish(key)
    return results


def test_a_job_resumed_from_its_checkpoint_inside_another_batch_ends_with_the_uninterrupted_picture(
        engine: Engine, clip_dir: Path, tmp_path: Path) -> None:
    """An init image held by init_weight: the checkpoint keeps the latent the job is pulled towards."""
    init = write_picture(tmp_path / "init.png")
    params = engine_job(clip_dir, "a temple", seed=11, init_image=init, init_weight=2.0)
    uninterrupted = run_to_end(_with(engine, ("job", params)))["job"]

    first = _with(engine, ("job", params))
    for _ in range(4):
        first.step()
    saved = encode(first.state("job"), params)
    del first  # the worker is gone

    other = engine_job(clip_dir, "a lighthouse at night", seed=3)
    second = _with(engine, ("other", other))
    second.step()
    second.step()
    second.add("job", params, state=decode(saved, params))
    resumed = run_to_end(second)
    assert resumed["job"].steps_done == 9
    assert torch.equal(pixels(resumed["job"].png), pixels(uninterrupted.png))
    assert resumed["job"].png == uninterrupted.png  # parameters, steps and last loss in its text chunks too
    assert torch.equal(pixels(resumed["other"].png), pixels(run_to_end(_with(engine, ("other", other)))["other"].png))


def _with(engine: Engine, *jobs: tuple[str, JobParams]) -> Batch:
    batch = engine.batch(jobs[0][1])
    for key, params in jobs:
        batch.add(key, params)
    return batch

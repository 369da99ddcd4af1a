"""The optimiser makes pictures that CLIP sees as the prompt, the same way alone or batched."""

from __future__ import annotations

import pytest
import torch

from engine.clip import Clip
from engine.cutouts import NO_AUGMENT, draw_random, make_cutouts
from engine.latents import resize_cover
from engine.losses import spherical_distance
from engine.optimiser import BatchOptimiser, JobRequest, Step, optimise
from engine.targets import build_targets
from engine.vqgan import VQGAN
from jobspec import JobParams, NoisePrompt, Prompt, parse_prompts

CPU = torch.device("cpu")


def target_picture() -> torch.Tensor:
    """Red on the left, blue on the right: (1, 3, 64, 64)."""
    picture = torch.zeros(1, 3, 64, 64)
    picture[:, 0, :, :32] = 1
    picture[:, 2, :, 32:] = 1
    return picture


def clip_distance(clip: Clip, image: torch.Tensor, target: torch.Tensor) -> float:
    """How far CLIP sees a picture (3, H, W) from a target embedding: the mean over 64
    cutouts drawn with a fixed evaluation seed, unrelated to the job's own."""
    uniform, noise = draw_random([1234], 64, clip.input_size, device=CPU)
    pixels = make_cutouts(image.unsqueeze(0), uniform, noise, size=clip.input_size, cut_pow=torch.ones(1))
    with torch.no_grad():
        embeds = clip.encode_image(clip.normalize(pixels)).float()
    return spherical_distance(embeds, target).mean().item()


def image_prompt_job(weight: float, *, stop: float | None = None, steps: int = 60, seed: int = 1) -> JobParams:
    return JobParams(prompts=(), image_prompts=(Prompt("target.png", weight, stop),), width=64, height=64,
                     steps=steps, cutn=16, lr=0.2, seed=seed).validate()


def batch_for(vqgan: VQGAN, clip: Clip, params: JobParams) -> BatchOptimiser:
    return BatchOptimiser(vqgan, clip, width=params.width, height=params.height, cutn=params.cutn, device=CPU)


def run_one(vqgan: VQGAN, clip: Clip, params: JobParams, pictures: list[torch.Tensor], **kw) -> torch.Tensor:
    request = JobRequest(key="job", params=params, targets=build_targets(clip, params, pictures), **kw)
    (outcome,) = list(optimise(batch_for(vqgan, clip, params), [request]))
    return outcome.image


def start_picture(vqgan: VQGAN, clip: Clip, params: JobParams) -> torch.Tensor:
    batch = BatchOptimiser(vqgan, clip, width=params.width, height=params.height, cutn=params.cutn, device=CPU)
    batch.add("start", params, build_targets(clip, params, [target_picture()]))
    return batch.images()[0]


def test_the_picture_moves_towards_the_prompt(vqgan: VQGAN, clip: Clip) -> None:
    params = image_prompt_job(1.0)
    targets = build_targets(clip, params, [target_picture()])
    before = clip_distance(clip, start_picture(vqgan, clip, params), targets.embeds[0])
    after = clip_distance(clip, run_one(vqgan, clip, params, [target_picture()]), targets.embeds[0])
    assert after < before * 0.9, (before, after)


def test_a_negative_weight_pushes_the_picture_away(vqgan: VQGAN, clip: Clip) -> None:
    params = image_prompt_job(-1.0)
    targets = build_targets(clip, params, [target_picture()])
    before = clip_distance(clip, start_picture(vqgan, clip, params), targets.embeds[0])
    after = clip_distance(clip, run_one(vqgan, clip, params, [target_picture()]), targets.embeds[0])
    assert after > before * 1.1, (before, after)


def test_a_reached_stop_value_stops_the_pull(vqgan: VQGAN, clip: Clip) -> None:
    # Every distance is below 4, so the prompt has already arrived: nothing moves.
    params = image_prompt_job(1.0, stop=4.0, steps=10)
    start = start_picture(vqgan, clip, params)
    assert torch.equal(run_one(vqgan, clip, params, [target_picture()]), start)
    moving = run_one(vqgan, clip, image_prompt_job(1.0, steps=10), [target_picture()])
    assert not torch.equal(moving, start)


def test_the_same_seed_gives_the_same_picture_and_another_seed_another(vqgan: VQGAN, clip: Clip) -> None:
    params = JobParams(prompts=parse_prompts("a red barn | fog:-0.5"), width=48, height=32, steps=8, cutn=8, seed=7)
    first = run_one(vqgan, clip, params, [])
    again = run_one(vqgan, clip, params, [])
    other = run_one(vqgan, clip, params.with_changes(seed=8), [])
    assert torch.equal(first, again)
    assert (first - other).abs().mean() > 0.01


def test_jobs_batched_together_match_each_job_run_alone(vqgan: VQGAN, clip: Clip) -> None:
    a = JobParams(prompts=parse_prompts("a lighthouse"), width=64, height=48, steps=12, cutn=8, seed=1)
    b = JobParams(prompts=parse_prompts("a forest:2 | night:-1"), noise_prompts=(NoisePrompt(5, 0.5),),
                  width=64, height=48, steps=7, cutn=8, seed=2, lr=0.05, cut_pow=2.0)
    requests = [JobRequest(k, p, build_targets(clip, p, [])) for k, p in (("a", a), ("b", b))]
    together = {o.key: o for o in optimise(batch_for(vqgan, clip, a), requests)}
    assert together["b"].steps_done == 7 and together["a"].steps_done == 12
    for key, params in (("a", a), ("b", b)):
        alone = run_one(vqgan, clip, params, [])
        torch.testing.assert_close(together[key].image, alone, atol=2e-3, rtol=0)


def test_a_job_can_join_a_running_batch_and_still_match_its_solo_run(vqgan: VQGAN, clip: Clip) -> None:
    a = JobParams(prompts=parse_prompts("a lighthouse"), width=32, height=32, steps=10, cutn=4, seed=1)
    b = a.with_changes(prompts=parse_prompts("a cat"), seed=9, steps=5)
    late = [JobRequest("b", b, build_targets(clip, b, []))]
    batch = batch_for(vqgan, clip, a)

    def join_after_the_first_step(step: Step) -> None:
        if late:
            joining = late.pop()
            batch.add(joining.key, joining.params, joining.targets)

    joined = {o.key: o for o in optimise(batch, [JobRequest("a", a, build_targets(clip, a, []))],
                                         join_after_the_first_step)}
    torch.testing.assert_close(joined["b"].image, run_one(vqgan, clip, b, []), atol=2e-3, rtol=0)
    torch.testing.assert_close(joined["a"].image, run_one(vqgan, clip, a, []), atol=2e-3, rtol=0)


def test_a_cancelled_job_leaves_the_batch_between_steps(vqgan: VQGAN, clip: Clip) -> None:
    a = JobParams(prompts=parse_prompts("a lighthouse"), width=32, height=32, steps=20, cutn=4, seed=1)
    requests = [JobRequest(k, a.with_changes(seed=i), build_targets(clip, a, [])) for i, k in enumerate("ab")]
    batch = batch_for(vqgan, clip, a)
    cancelled = []

    def cancel_b(step: Step) -> None:
        if step.done.get("b") == 3:
            cancelled.append(batch.remove("b"))

    outcomes = {o.key: o for o in optimise(batch, requests, cancel_b)}
    assert "b" not in outcomes and cancelled[0].steps_done == 3
    assert outcomes["a"].steps_done == 20


def test_the_step_callback_sees_every_step_and_its_pictures_and_losses(vqgan: VQGAN, clip: Clip) -> None:
    params = JobParams(prompts=parse_prompts("a boat"), width=32, height=32, steps=9, cutn=4)
    reports = []

    def every_third(step: Step) -> None:
        if step.done[1] % 3 == 0:
            reports.append((step.done[1], step.pictures()[1], step.loss(1)))

    request = JobRequest(1, params, build_targets(clip, params, []))
    list(optimise(batch_for(vqgan, clip, params), [request], every_third))
    assert [done for done, _, _ in reports] == [3, 6, 9]
    assert reports[0][1].shape == (3, 32, 32) and all(loss == loss for _, _, loss in reports)


def picture_decodes(decoded: list[int], decode, batch: BatchOptimiser, z: torch.Tensor) -> torch.Tensor:
    """``decode`` that notes the batch size of every decode made for a picture (not for a step's loss)."""
    if not torch.is_grad_enabled():
        decoded.append(z.shape[0])
    return decode(batch, z)


def test_a_step_whose_picture_nobody_asks_for_is_not_decoded(vqgan: VQGAN, clip: Clip, monkeypatch) -> None:
    """The worker's time gate says no: no report, and the decoder isn't run for a picture nobody sees."""
    params = JobParams(prompts=parse_prompts("a boat"), width=32, height=32, steps=9, cutn=4)
    decoded = []
    decode = BatchOptimiser.decode
    monkeypatch.setattr(BatchOptimiser, "decode", lambda self, z: picture_decodes(decoded, decode, self, z))
    request = JobRequest(1, params, build_targets(clip, params, []))
    (outcome,) = list(optimise(batch_for(vqgan, clip, params), [request], lambda step: step.loss(1)))
    assert decoded == [1]  # the finished picture only
    assert outcome.steps_done == 9 and outcome.image.shape == (3, 32, 32) and outcome.loss == outcome.loss


def test_only_the_pictures_asked_for_are_decoded_each_once_a_step(vqgan: VQGAN, clip: Clip, monkeypatch) -> None:
    """A progress report for one job of a batch of three decodes that job's picture alone, once however
    often it is asked for; the others cost no decode until asked."""
    decoded = []
    decode = BatchOptimiser.decode
    monkeypatch.setattr(BatchOptimiser, "decode", lambda self, z: picture_decodes(decoded, decode, self, z))
    batch = batch_for(vqgan, clip, JobParams(prompts=parse_prompts("a boat"), width=32, height=32, steps=9, cutn=4))
    for key in (1, 2, 3):
        params = JobParams(prompts=parse_prompts("a boat"), width=32, height=32, steps=9, cutn=4, seed=key)
        batch.add(key, params, build_targets(clip, params, []))
    step = batch.step()
    assert list(step.pictures([2])) == [2]
    assert list(step.pictures([2])) == [2]
    assert decoded == [1]
    everything = step.pictures()
    assert list(everything) == [1, 2, 3] and decoded == [1, 1, 1]
    assert not torch.equal(everything[1], everything[2])  # each job's own picture


def test_an_init_image_of_any_size_and_mode_starts_from_its_encoding(vqgan: VQGAN, clip: Clip) -> None:
    params = JobParams(prompts=parse_prompts("a boat"), width=64, height=32, steps=1, cutn=4, init_image="x.png")
    batch = BatchOptimiser(vqgan, clip, width=64, height=32, cutn=4, device=CPU)
    tall = torch.rand(1, 3, 300, 100)
    z = batch.start_latent(params, tall)
    assert z.shape == (1, 32, 2, 4)
    expected = vqgan.encode(resize_cover(tall, 32, 64) * 2 - 1)
    torch.testing.assert_close(z, expected)
    random_start = batch.start_latent(params.with_changes(init_image=None), None)
    assert not torch.allclose(z, random_start)


def test_init_weight_keeps_the_latent_near_the_init_image(vqgan: VQGAN, clip: Clip) -> None:
    base = JobParams(prompts=parse_prompts("a boat"), width=32, height=32, steps=15, cutn=4, lr=0.3, init_image="x.png")
    init = torch.rand(1, 3, 32, 32)

    def drift(init_weight: float) -> float:
        params = base.with_changes(init_weight=init_weight)
        batch = BatchOptimiser(vqgan, clip, width=32, height=32, cutn=4, device=CPU)
        batch.add(1, params, build_targets(clip, params, []), init_image=init)
        for _ in range(params.steps):
            batch.step()
        return (batch.z - batch.z_init).abs().mean().item()

    assert drift(50.0) < drift(0.0) * 0.8


def test_mismatched_jobs_are_refused_by_a_batch(vqgan: VQGAN, clip: Clip) -> None:
    batch = BatchOptimiser(vqgan, clip, width=32, height=32, cutn=4, device=CPU)
    params = JobParams(prompts=parse_prompts("a boat"), width=64, height=32, cutn=4)
    with pytest.raises(ValueError, match="this batch is 32x32"):
        batch.add(1, params, build_targets(clip, params, []))


def test_cutouts_without_augmentation_are_plain_crops(vqgan: VQGAN, clip: Clip) -> None:
    picture = torch.rand(1, 3, 64, 64)
    uniform, noise = draw_random([0], 4, 32, device=CPU)
    uniform[..., 0] = 0.0  # smallest crop: 32 px, no resizing
    uniform[..., 1:3] = 0.0  # at the top-left corner
    cuts = make_cutouts(picture, uniform, noise, size=32, cut_pow=torch.ones(1), aug=NO_AUGMENT.__class__(
        flip_p=0, affine_p=0, perspective_p=0, colour_p=0, noise=0, supersample=1))
    torch.testing.assert_close(cuts[0], picture[0, :, :32, :32], atol=1e-5, rtol=0)


def test_jobs_that_finish_on_the_same_step_each_get_their_own_picture(vqgan: VQGAN, clip: Clip) -> None:
    base = JobParams(prompts=parse_prompts("a lighthouse"), width=32, height=32, steps=4, cutn=2)
    requests = [JobRequest(s, base.with_changes(seed=s), build_targets(clip, base, [])) for s in (1, 2, 3)]
    together = {o.key: o.image for o in optimise(batch_for(vqgan, clip, base), requests)}
    for seed in (1, 2, 3):
        alone = run_one(vqgan, clip, base.with_changes(seed=seed), [])
        torch.testing.assert_close(together[seed], alone, atol=2e-3, rtol=0)

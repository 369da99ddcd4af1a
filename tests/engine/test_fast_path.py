"""The fast paths compute what the plain path computes: compiled steps, bf16 weights."""

from __future__ import annotations

import copy

import torch

from engine.clip import Clip
from engine.optimiser import BatchOptimiser
from engine.targets import build_targets
from engine.vqgan import VQGAN
from jobspec import JobParams, parse_prompts
from tests.engine.compiled_groups import FUSED_GRAPHS, STEP_GRAPHS

CPU = torch.device("cpu")


def one_step(vqgan: VQGAN, clip: Clip, jobs: list[JobParams], **options) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Losses, gradient and new latents of the first step of a batch of jobs."""
    first = jobs[0]
    batch = BatchOptimiser(vqgan, clip, width=first.width, height=first.height, cutn=first.cutn, device=CPU, **options)
    for i, params in enumerate(jobs):
        batch.add(i, params, build_targets(clip, params, []))
    z = batch.z.detach().requires_grad_(True)
    losses = batch.losses(z)
    (grad,) = torch.autograd.grad(losses.sum(), z)
    batch.step()
    return losses.detach().clone(), grad, batch.z


def jobs(count: int = 2, size: int = 32) -> list[JobParams]:
    """The pair every compiled test starts from (so its compiled step is loaded from the session's Inductor
    cache after the first test, tests/conftest.py), or the first ``count`` of a triple of such jobs."""
    a = JobParams(prompts=parse_prompts("a lighthouse | fog:-0.5"), width=size, height=size, steps=5, cutn=4, seed=1)
    return [a, a.with_changes(seed=2, prompts=parse_prompts("a cat:2")), a.with_changes(seed=3)][:count]


@STEP_GRAPHS
def test_a_compiled_step_matches_the_plain_step(compile_vqgan: VQGAN, clip: Clip) -> None:
    plain = one_step(compile_vqgan, clip, jobs())
    fast = one_step(compile_vqgan, clip, jobs(), compile_mode="default")
    for a, b in zip(plain, fast, strict=False):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-3)


@FUSED_GRAPHS
def test_a_compiled_step_with_the_fused_kernels_matches_the_plain_step(compile_vqgan: VQGAN, clip: Clip,
                                                                       monkeypatch) -> None:
    """What a CUDA worker runs (fused group norm kernels, frozen convolutions, channels-last weights),
    here on the CPU with the kernels in Triton's interpreter."""
    from engine import fused_norm, layers

    launches: list[str] = []
    launch = fused_norm._launch

    def counted(kernel, *args, **kwargs) -> None:
        launches.append(kernel.fn.__name__ if hasattr(kernel, "fn") else str(kernel))
        launch(kernel, *args, **kwargs)

    plain = one_step(compile_vqgan, clip, jobs())
    monkeypatch.setattr(fused_norm, "_launch", counted)
    torch._dynamo.reset()
    with layers.switched(fused_norm_devices={"cpu"}):
        fast = one_step(copy.deepcopy(compile_vqgan), clip, jobs(), compile_mode="default")
    torch._dynamo.reset()
    assert launches, "the fused kernels did not run"
    for a, b in zip(plain, fast, strict=False):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-3)


def test_bf16_weights_give_the_same_loss_and_gradient_within_bf16_tolerance(vqgan: VQGAN, clip: Clip) -> None:
    plain_losses, plain_grad, _ = one_step(vqgan, clip, jobs())
    vq16, clip16 = copy.deepcopy(vqgan).to(torch.bfloat16), copy.copy(clip)
    clip16.model = copy.deepcopy(clip.model).to(torch.bfloat16)
    losses, grad, _ = one_step(vq16, clip16, jobs())
    torch.testing.assert_close(losses, plain_losses, atol=2e-2, rtol=2e-2)
    # The tiny random CLIP sees all pictures as nearly alike, so its gradients are small differences
    # that bf16 rounding blurs; they must still point the same way. (bench/bench_engine.py compares
    # fp32 and bf16 loss trajectories over 100 steps on the real architectures.)
    cosine = torch.nn.functional.cosine_similarity(grad.flatten(), plain_grad.flatten(), dim=0)
    assert cosine > 0.5, cosine


@STEP_GRAPHS
def test_a_compiled_worker_takes_new_batch_and_picture_sizes_and_reuses_seen_ones(compile_vqgan: VQGAN,
                                                                                   clip: Clip) -> None:
    """A worker sees 32x32 jobs alone and in batches of 2 and 3, then a 16x16 pair: every step runs
    (a picture size after another used to crash Inductor), a batch of 3 reuses the graph of 2, and
    the graphs are cacheable on disk."""
    from torch._dynamo.utils import counters

    graphs = []
    for size, count in [(32, 1), (32, 2), (32, 3), (16, 2)]:
        losses, grad, z = one_step(compile_vqgan, clip, jobs(count, size), compile_mode="default")
        assert losses.shape == (count,) and torch.isfinite(losses).all() and torch.isfinite(grad).all()
        assert z.shape[0] == count and z.shape[-1] == size // compile_vqgan.factor
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[2] == graphs[1], "a batch of 3 compiled again after a batch of 2"
    assert graphs[3] > graphs[2]
    # Every compiled graph can go into the AOTAutograd cache, so a restarted worker doesn't retrace it.
    aot = counters["aot_autograd"]
    assert aot["autograd_cache_bypass"] == 0 and aot["autograd_cache_hit"] + aot["autograd_cache_miss"] > 0, dict(aot)

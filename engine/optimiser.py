"""The VQGAN+CLIP optimiser: several jobs of one size stepped together.

Each job keeps its own latent, Adam state, step count and prompts, and draws
its random numbers from its seed and step number (engine.invariance), so a job
gives the same picture alone or in a batch, joined late or resumed from its
``JobState``; jobs can join and leave between steps. ``optimise`` is the loop in k-diffusion's shape
(a batch, jobs, one step callback); callers that decide more between steps
(the worker) drive ``BatchOptimiser.step`` themselves.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass

import torch

from engine.clip import Clip
from engine.compiling import batch_dim_dynamic, compiled
from engine.cutouts import Augment, draw_random, make_cutouts
from engine.invariance import one_at_a_time, start_seed, step_seed
from engine.jobstate import JobState
from engine.latents import clamp_with_grad, codebook_bounds, quantize, random_latent, resize_cover
from engine.layers import prepare_for_compile
from engine.losses import prompt_loss
from engine.targets import Targets, stack_targets
from engine.vqgan import VQGAN
from jobspec import JobParams

log = logging.getLogger(__name__)

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


@dataclass(eq=False)
class JobSlot:
    """One job's place in the batch."""

    key: Hashable
    params: JobParams
    targets: Targets
    steps_done: int = 0


class Step:
    """A batch right after one of its steps, as a step callback sees it.

    ``keys`` in batch order; ``done[key]``: the steps that job has made; ``finished``: the jobs
    that have made all of theirs. A loss waits for the device (``loss`` reads the whole batch's
    at once) and a picture costs a decode (``pictures`` decodes the whole batch at once), so
    neither is made unless asked for. Pictures can be read until the batch steps again.
    """

    def __init__(self, batch: BatchOptimiser, losses: torch.Tensor) -> None:
        self._batch = batch
        self._number = batch.steps_taken
        self.losses = losses  # (B,) on the device, in ``keys`` order: the losses before the step
        self._loss_list: list[float] | None = None
        self.keys = tuple(s.key for s in batch.slots)
        self.done = {s.key: s.steps_done for s in batch.slots}
        self.finished = tuple(s.key for s in batch.slots if s.steps_done >= s.params.steps)

    def loss(self, key: Hashable) -> float:
        if self._loss_list is None:
            self._loss_list = self.losses.tolist()
        return self._loss_list[self.keys.index(key)]

    def pictures(self, keys: Iterable[Hashable] | None = None) -> dict[Hashable, torch.Tensor]:
        """Pictures after this step, of ``keys`` (default: every job): (3, H, W) in [0, 1], float32 on the CPU."""
        if self._batch.steps_taken != self._number:
            raise RuntimeError(f"the pictures of step {self._number} are gone: the batch has stepped since")
        return self._batch.pictures(keys)


class BatchOptimiser:
    """Optimises the latents of all jobs of one picture size together.

    Tensors are stacked on dim 0 in ``slots`` order: z, Adam moments (B, C, h, w). ``settings()``
    is entered around its torch work (the caller's process-wide switches, e.g. Engine.settings).
    """

    def __init__(
        self,
        vqgan: VQGAN,
        clip: Clip,
        *,
        width: int,
        height: int,
        cutn: int,
        device: torch.device,
        autocast_dtype: torch.dtype | None = None,
        augment: Augment = Augment(),
        compile_mode: str = "none",
        settings: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        f = vqgan.factor
        if width % f or height % f:
            raise ValueError(f"size {width}x{height} is not a multiple of the VQGAN factor {f}")
        self.vqgan, self.clip = vqgan, clip
        self.width, self.height, self.cutn = width, height, cutn
        self.device, self.autocast_dtype, self.augment = device, autocast_dtype, augment
        self.codebook = vqgan.codebook.detach().float()
        self.clip_dtype = next(clip.model.parameters()).dtype
        self.z_min, self.z_max = codebook_bounds(self.codebook)
        self.slots: list[JobSlot] = []
        c = self.codebook.shape[1]
        empty = torch.empty(0, c, height // f, width // f, device=device)
        self.z, self.m, self.v, self.z_init = empty, empty.clone(), empty.clone(), empty.clone()
        self.t = torch.empty(0, device=device)
        self.lr = self.init_weight = self.alpha = self.cut_pow = torch.empty(0, device=device)
        self._targets: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.steps_taken = 0
        self.last_step: Step | None = None
        self._pictures: dict[Hashable, torch.Tensor] | None = None  # decoded since the last step
        self.compile_mode, self.settings = compile_mode, settings
        self._generator = torch.Generator(device=device)  # reseeded for each job's draws (draw_random)
        self._one_at_a_time = one_at_a_time(device, compile_mode)  # the CPU's eager step: see engine.invariance
        if compile_mode != "none":
            with settings():
                prepare_for_compile(vqgan, device, autocast=autocast_dtype is not None)
        self._loss_fn = compiled(self._loss_from, compile_mode)
        self._adam_fn = compiled(_adam_update, "default" if compile_mode != "none" else "none")

    def __len__(self) -> int:
        return len(self.slots)

    def __contains__(self, key: Hashable) -> bool:
        return any(s.key == key for s in self.slots)

    @property
    def keys(self) -> list[Hashable]:
        return [s.key for s in self.slots]

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def start_latent(self, params: JobParams, init_image: torch.Tensor | None) -> torch.Tensor:
        """The job's first latent (1, C, h, w): random codes from its seed, or the encoded init image."""
        f = self.vqgan.factor
        if init_image is None:
            generator = torch.Generator().manual_seed(start_seed(params.seed))
            return random_latent(self.codebook, self.height // f, self.width // f, generator)
        picture = resize_cover(init_image.to(self.device, torch.float32), self.height, self.width)
        with torch.no_grad(), self._autocast():
            return self.vqgan.encode(picture.to(self.vqgan.codebook.dtype) * 2 - 1).float()

    def add(self, key: Hashable, params: JobParams, targets: Targets, *, init_image: torch.Tensor | None = None,
            state: JobState | None = None) -> None:
        """Join the batch; takes effect at the next step. With ``state`` (from ``state(key)``, here or in
        another batch) the job goes on from there, and ``init_image`` is not needed."""
        if params.width != self.width or params.height != self.height or params.cutn != self.cutn:
            raise ValueError(
                f"job {key} is {params.width}x{params.height} with {params.cutn} cutouts; "
                f"this batch is {self.width}x{self.height} with {self.cutn}"
            )
        if any(s.key == key for s in self.slots):
            raise ValueError(f"job {key} is already in the batch")
        if state is None:
            with self.settings():
                z = self.start_latent(params, init_image)
            m, v, z_init, steps_done = torch.zeros_like(z), torch.zeros_like(z), z, 0
        else:
            z, m, v, z_init = self._resumed(key, params, state)
            steps_done = state.step
        self.slots.append(JobSlot(key=key, params=params, targets=targets, steps_done=steps_done))
        self.z = torch.cat([self.z.detach(), z])
        self.m, self.v = torch.cat([self.m, m]), torch.cat([self.v, v])
        self.z_init = torch.cat([self.z_init, z_init])
        new = lambda x: torch.tensor([x], device=self.device, dtype=torch.float32)
        self.t = torch.cat([self.t, new(steps_done)])
        self.lr = torch.cat([self.lr, new(params.lr)])
        self.init_weight = torch.cat([self.init_weight, new(params.init_weight)])
        self.alpha = torch.cat([self.alpha, new(params.alpha)])
        self.cut_pow = torch.cat([self.cut_pow, new(params.cut_pow)])
        self._targets = None
        self._pictures = None

    def _resumed(self, key: Hashable, params: JobParams,
                 state: JobState) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A state's z, m, v, z_init (1, C, h, w) each on the device; ValueError where it cannot go on here."""
        problem = state.problem(tuple(self.z.shape[1:]))
        if problem is None and state.step >= params.steps:
            problem = f"it has made {state.step} steps of the job's {params.steps}"
        if problem is None and params.init_weight and state.z_init is None:
            problem = "it lacks the init latent that the job's init_weight pulls towards"
        if problem is not None:
            raise ValueError(f"job {key} cannot go on from this state: {problem}")
        z, m, v = (t.to(self.device, torch.float32).unsqueeze(0) for t in (state.z, state.m, state.v))
        # init_weight 0: the anchor adds 0 to the loss and its gradient whatever z_init is
        z_init = z if state.z_init is None else state.z_init.to(self.device, torch.float32).unsqueeze(0)
        return z, m, v, z_init

    def state(self, key: Hashable) -> JobState:
        """The job's state after its last step (copied to the CPU), to resume it later (``add(state=...)``)."""
        index = self.keys.index(key)
        slot = self.slots[index]
        z, m, v = (t[index].detach().to("cpu", torch.float32, copy=True) for t in (self.z, self.m, self.v))
        z_init = self.z_init[index].detach().to("cpu", torch.float32, copy=True) if slot.params.init_weight else None
        return JobState(step=slot.steps_done, z=z, m=m, v=v, z_init=z_init)

    def remove(self, key: Hashable) -> JobSlot:
        """Leave the batch without a picture (cancelled, handed back); see ``finish``."""
        index = self.keys.index(key)
        keep = [i for i in range(len(self.slots)) if i != index]
        slot = self.slots.pop(index)
        idx = torch.tensor(keep, device=self.device, dtype=torch.long)
        for name in ("z", "m", "v", "z_init", "t", "lr", "init_weight", "alpha", "cut_pow"):
            setattr(self, name, getattr(self, name).detach().index_select(0, idx))
        self._targets = None
        if self._pictures is not None:
            self._pictures.pop(key, None)
        return slot

    def finish(self, key: Hashable) -> JobOutcome:
        """Leave the batch with the job's picture after the last step and that step's loss."""
        if self.last_step is None or key not in self.last_step.keys:
            raise ValueError(f"job {key} has not made a step in this batch")
        picture, loss = self.pictures([key])[key], self.last_step.loss(key)
        slot = self.remove(key)
        return JobOutcome(key=key, image=picture, steps_done=slot.steps_done, loss=loss)

    def targets(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._targets is None:
            self._targets = stack_targets([s.targets for s in self.slots])
        return self._targets

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent (B, C, h, w) -> picture (B, 3, H, W) in [0, 1], through the quantizer."""
        z_q = quantize(z, self.codebook)
        with self._autocast():
            pixels = self.vqgan.decode(z_q.to(self.vqgan.codebook.dtype))
        return clamp_with_grad(pixels.float().add(1).div(2), 0, 1)

    def _loss_from(
        self, z: torch.Tensor, uniform: torch.Tensor, noise: torch.Tensor, cut_pow: torch.Tensor,
        z_init: torch.Tensor, alpha: torch.Tensor, init_weight: torch.Tensor,
        embeds: torch.Tensor, weights: torch.Tensor, stops: torch.Tensor,
    ) -> torch.Tensor:
        """Per-job loss (B,): a pure function of tensors, so it can be compiled whole (forward and backward)."""
        image = self.decode(z)
        cuts = make_cutouts(image, uniform, noise, size=self.clip.input_size, cut_pow=cut_pow, aug=self.augment)
        with self._autocast():
            features = self.clip.encode_image(self.clip.normalize(cuts).to(self.clip_dtype))
        features = features.float().view(z.shape[0], self.cutn, -1)
        loss = prompt_loss(features, embeds, weights, stops)
        reg = z.pow(2).mean(dim=(1, 2, 3)) * alpha
        anchor = (z - z_init).pow(2).mean(dim=(1, 2, 3)) * init_weight / 2
        return loss + reg + anchor

    def losses(self, z: torch.Tensor) -> torch.Tensor:
        """Per-job loss (B,) for latents z (B, C, h, w); draws each job's random numbers for the step."""
        seeds = [step_seed(s.params.seed, s.steps_done) for s in self.slots]
        uniform, noise = draw_random(seeds, self.cutn, self.clip.input_size, device=self.device,
                                     generator=self._generator)
        if self.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        args = (z, uniform, noise, self.cut_pow, self.z_init, self.alpha, self.init_weight, *self.targets())
        if self._one_at_a_time:  # each job as a batch of one: its numbers can't depend on its batch mates
            return torch.cat([self._loss_fn(*(a[i:i + 1] for a in args)) for i in range(len(self.slots))])
        if self.compile_mode != "none":
            batch_dim_dynamic(args, len(self.slots))
        return self._loss_fn(*args)

    def step(self) -> Step:
        """One Adam step for every job; the Step says how far each job is and holds the losses before it."""
        if not self.slots:
            raise RuntimeError("step() on an empty batch")
        with self.settings():
            z = self.z.detach().requires_grad_(True)
            losses = self.losses(z)
            (grad,) = torch.autograd.grad(losses.sum(), z)
            losses = losses.detach().clone()  # a CUDA-graph output is overwritten by the next replay
            with torch.no_grad():
                self.t += 1
                args = (z.detach(), grad, self.m, self.v, self.t, self.lr, self.z_min, self.z_max)
                if self.compile_mode != "none":
                    batch_dim_dynamic(args, len(self.slots))
                self.z = self._adam_fn(*args)
        for slot in self.slots:
            slot.steps_done += 1
        self.steps_taken += 1
        self._pictures = None
        self.last_step = Step(self, losses)
        return self.last_step

    def images(self) -> torch.Tensor:
        """Current pictures (B, 3, H, W) in [0, 1], float32 on the CPU."""
        return torch.stack(list(self.pictures().values()))

    def pictures(self, keys: Iterable[Hashable] | None = None) -> dict[Hashable, torch.Tensor]:
        """Current pictures of ``keys`` (default: every job), (3, H, W) each, in batch order.

        Each job's picture is decoded alone (a batch of one), once between steps however often asked:
        only the jobs asked for cost a decode, and the decoder sees one shape whatever the batch's size
        (no kernel tuning for a new batch size while users wait; the worker's warm-up tunes it once).
        """
        if self._pictures is None:
            self._pictures = {}
        asked = None if keys is None else set(keys)
        wanted = self.keys if asked is None else [k for k in self.keys if k in asked]
        missing = [k for k in wanted if k not in self._pictures]
        if missing:
            index = {k: i for i, k in enumerate(self.keys)}
            with self.settings(), torch.no_grad():
                for key in missing:
                    i = index[key]
                    self._pictures[key] = self.decode(self.z[i:i + 1]).float().cpu()[0]
        return {k: self._pictures[k] for k in wanted}


def _adam_update(z: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, t: torch.Tensor,
                 lr: torch.Tensor, z_min: torch.Tensor, z_max: torch.Tensor) -> torch.Tensor:
    """Adam with a step count and learning rate per job (t, lr: (B,)); updates m and v in place,
    returns the new latent clamped into the codebook's range."""
    bias1 = (1 - BETA1 ** t).view(-1, 1, 1, 1)
    bias2 = (1 - BETA2 ** t).view(-1, 1, 1, 1)
    m.mul_(BETA1).add_(grad, alpha=1 - BETA1)
    v.mul_(BETA2).addcmul_(grad, grad, value=1 - BETA2)
    update = (m / bias1) / ((v / bias2).sqrt() + EPS)
    return torch.maximum(torch.minimum(z - lr.view(-1, 1, 1, 1) * update, z_max), z_min)


@dataclass(frozen=True)
class JobOutcome:
    """A finished job: its picture (3, H, W) in [0, 1] on the CPU, steps made, loss before the last step."""

    key: Hashable
    image: torch.Tensor
    steps_done: int
    loss: float


@dataclass(frozen=True)
class JobRequest:
    """A job to optimise: its parameters, targets and optional init picture (1, 3, H, W)."""

    key: Hashable
    params: JobParams
    targets: Targets
    init_image: torch.Tensor | None = None


def optimise(batch: BatchOptimiser, requests: Iterable[JobRequest],
             callback: Callable[[Step], None] | None = None) -> Iterator[JobOutcome]:
    """Add ``requests`` to ``batch`` and step it until every job has made its steps; yield each job as it
    finishes. ``callback(step)`` comes after every step: it may read the step's losses and pictures,
    ``batch.add`` a job to join from the next step, or ``batch.remove`` one that should stop."""
    for request in requests:
        batch.add(request.key, request.params, request.targets, init_image=request.init_image)
    while len(batch):
        step = batch.step()
        if callback is not None:
            callback(step)
        for key in step.finished:
            if key in batch:
                yield batch.finish(key)

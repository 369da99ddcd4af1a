"""The VQGAN+CLIP optimiser: several jobs of one size stepped together.

Each job keeps its own latent, Adam state, step count, prompts and random
generator, so a job gives the same picture alone or in a batch, and jobs can
join and leave between steps.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field

import torch

from engine.clip import Clip
from engine.compiling import batch_dim_dynamic, compiled
from engine.cutouts import Augment, draw_random, make_cutouts
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
    generator: torch.Generator
    steps_done: int = 0
    last_loss: float = float("nan")


@dataclass(frozen=True)
class StepReport:
    """What a progress callback receives after a step: per job, steps done and loss."""

    keys: list[Hashable]
    steps_done: list[int]
    losses: list[float]
    images: torch.Tensor | None = None  # (B, 3, H, W) in [0, 1] on the CPU, when asked for


class BatchOptimiser:
    """Optimises the latents of all jobs of one picture size together.

    Tensors are stacked on dim 0 in ``slots`` order: z, Adam moments (B, C, h, w).
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
        self.compile_mode = compile_mode
        if compile_mode != "none":
            prepare_for_compile(vqgan, device, autocast=autocast_dtype is not None)
        self._loss_fn = compiled(self._loss_from, compile_mode)
        self._adam_fn = compiled(_adam_update, "default" if compile_mode != "none" else "none")

    def __len__(self) -> int:
        return len(self.slots)

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
            generator = torch.Generator().manual_seed(params.seed)
            return random_latent(self.codebook, self.height // f, self.width // f, generator)
        picture = resize_cover(init_image.to(self.device, torch.float32), self.height, self.width)
        with torch.no_grad(), self._autocast():
            return self.vqgan.encode(picture.to(self.vqgan.codebook.dtype) * 2 - 1).float()

    def add(self, key: Hashable, params: JobParams, targets: Targets, *, init_image: torch.Tensor | None = None) -> None:
        """Join the batch; takes effect at the next step."""
        if params.width != self.width or params.height != self.height or params.cutn != self.cutn:
            raise ValueError(
                f"job {key} is {params.width}x{params.height} with {params.cutn} cutouts; "
                f"this batch is {self.width}x{self.height} with {self.cutn}"
            )
        if any(s.key == key for s in self.slots):
            raise ValueError(f"job {key} is already in the batch")
        z = self.start_latent(params, init_image)
        generator = torch.Generator(device=self.device).manual_seed(params.seed)
        self.slots.append(JobSlot(key=key, params=params, targets=targets, generator=generator))
        zeros = torch.zeros_like(z)
        self.z = torch.cat([self.z.detach(), z])
        self.m, self.v = torch.cat([self.m, zeros]), torch.cat([self.v, zeros])
        self.z_init = torch.cat([self.z_init, z])
        new = lambda x: torch.tensor([x], device=self.device, dtype=torch.float32)
        self.t = torch.cat([self.t, new(0)])
        self.lr = torch.cat([self.lr, new(params.lr)])
        self.init_weight = torch.cat([self.init_weight, new(params.init_weight)])
        self.alpha = torch.cat([self.alpha, new(params.alpha)])
        self.cut_pow = torch.cat([self.cut_pow, new(params.cut_pow)])
        self._targets = None

    def remove(self, key: Hashable) -> JobSlot:
        """Leave the batch (finished or cancelled)."""
        index = self.keys.index(key)
        keep = [i for i in range(len(self.slots)) if i != index]
        slot = self.slots.pop(index)
        idx = torch.tensor(keep, device=self.device, dtype=torch.long)
        for name in ("z", "m", "v", "z_init", "t", "lr", "init_weight", "alpha", "cut_pow"):
            setattr(self, name, getattr(self, name).detach().index_select(0, idx))
        self._targets = None
        return slot

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
        uniform, noise = draw_random([s.generator for s in self.slots], self.cutn, self.clip.input_size,
                                     device=self.device)
        if self.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        args = (z, uniform, noise, self.cut_pow, self.z_init, self.alpha, self.init_weight, *self.targets())
        if self.compile_mode != "none":
            batch_dim_dynamic(args, len(self.slots))
        return self._loss_fn(*args)

    def step(self) -> torch.Tensor:
        """One Adam step for every job. Returns the losses (B,) before the step."""
        if not self.slots:
            raise RuntimeError("step() on an empty batch")
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
        return losses

    def images(self) -> torch.Tensor:
        """Current pictures (B, 3, H, W) in [0, 1], float32 on the CPU."""
        with torch.no_grad():
            return self.decode(self.z).float().cpu()


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


@dataclass
class JobOutcome:
    """How a job ended: the picture (3, H, W) in [0, 1] on the CPU, or cancelled."""

    key: Hashable
    image: torch.Tensor
    steps_done: int
    loss: float
    cancelled: bool = False
    frames: list[torch.Tensor] = field(default_factory=list)  # uint8 (3, H, W), when asked for


@dataclass
class JobRequest:
    """A job to optimise: its parameters, targets and optional init picture (1, 3, H, W)."""

    key: Hashable
    params: JobParams
    targets: Targets
    init_image: torch.Tensor | None = None


def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    return image.mul(255).round().clamp(0, 255).to(torch.uint8)


def optimise(
    requests: list[JobRequest],
    vqgan: VQGAN,
    clip: Clip,
    *,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    augment: Augment = Augment(),
    progress_every: int = 0,
    on_progress: Callable[[StepReport], None] | None = None,
    is_cancelled: Callable[[Hashable], bool] | None = None,
    frames_every: int = 0,
    incoming: Callable[[], list[JobRequest]] | None = None,
    progress_images: bool = True,
    compile_mode: str = "none",
    report_filter: Callable[[Hashable], bool] | None = None,
) -> Iterator[JobOutcome]:
    """Optimise all requests (one size and cutout count) together; yield each job as it ends.

    ``on_progress`` gets a StepReport every ``progress_every`` steps (with
    pictures). ``is_cancelled(key)`` is checked between steps. ``incoming()``
    is called between steps and may return more jobs to join. ``report_filter(key)``,
    when given, says whether a job wants a report now; a due report that no job wants
    is skipped, so no picture is decoded for it.
    """
    first = requests[0].params
    batch = BatchOptimiser(vqgan, clip, width=first.width, height=first.height, cutn=first.cutn,
                           device=device, autocast_dtype=autocast_dtype, augment=augment, compile_mode=compile_mode)
    frames: dict[Hashable, list[torch.Tensor]] = {}
    pending = list(requests)
    while pending or len(batch):
        for request in pending:
            batch.add(request.key, request.params, request.targets, init_image=request.init_image)
            frames[request.key] = []
        pending = []
        losses = batch.step()
        report_now = progress_every and any(s.steps_done % progress_every == 0 for s in batch.slots)
        if report_now and report_filter is not None:
            report_now = any(report_filter(s.key) for s in batch.slots)
        frame_now = frames_every and any(s.steps_done % frames_every == 0 for s in batch.slots)
        done_now = [s for s in batch.slots if s.steps_done >= s.params.steps]
        cancelled = [s for s in batch.slots if is_cancelled is not None and is_cancelled(s.key)]
        images = batch.images() if ((report_now and progress_images) or frame_now or done_now) else None
        loss_list = losses.tolist() if (report_now or done_now or cancelled) else []
        for i, slot in enumerate(batch.slots):
            if loss_list:
                slot.last_loss = loss_list[i]
            if images is not None and frames_every and slot.steps_done % frames_every == 0:
                frames[slot.key].append(_to_uint8(images[i]))
        if report_now and on_progress is not None:
            on_progress(StepReport(keys=batch.keys, steps_done=[s.steps_done for s in batch.slots],
                                   losses=loss_list, images=images))
        leaving = list({id(s): s for s in done_now + cancelled}.values())
        if leaving and images is None:
            images = batch.images()
        row = {key: i for i, key in enumerate(batch.keys)}  # rows of ``images``, before anyone leaves
        for slot in leaving:
            picture = images[row[slot.key]]
            batch.remove(slot.key)
            log.debug("job %s left the batch after %d steps", slot.key, slot.steps_done)
            yield JobOutcome(key=slot.key, image=picture, steps_done=slot.steps_done, loss=slot.last_loss,
                             cancelled=slot in cancelled and slot not in done_now, frames=frames.pop(slot.key))
        if incoming is not None:
            pending = incoming()

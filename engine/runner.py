"""The engine as a service: jobs in (parameters), pictures out (PNG bytes), one step callback.

``Engine.run`` makes the pictures of a list of jobs (``vqbot imagine``);
``Engine.batch`` gives a ``Batch`` that a caller steps itself and changes
between steps (the queue worker). It knows nothing of Discord or the database.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from engine import layers
from engine.compiling import COMPILE_MODES, compile_cache, graph_breaks, warn_of_graph_breaks
from engine.images import load_image, png_bytes
from engine.jobstate import JobState
from engine.memory import BatchShape, max_batch
from engine.metadata import picture_metadata, provenance
from engine.models import ModelCache, VQGANSource, pick_device, pick_precision, resolve_vqgan
from engine.optimiser import BatchOptimiser, Step
from engine.targets import build_targets
from jobspec import JobParams, batch_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    """How the engine runs: device, precision, where models live, optional explicit VQGAN files."""

    model_dir: Path
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    compile: str = "none"  # auto | none | default | reduce-overhead (CUDA graphs): faster steps, slower start
    fused_kernels: bool = True  # compiled CUDA steps use engine/fused_norm.py's Triton kernels
    vqgan_config: Path | None = None  # explicit taming files override the catalogue name
    vqgan_checkpoint: Path | None = None
    deterministic: bool = False
    compile_cache: Path | None = None  # compiled kernels kept here (default: model_dir/compile-cache)


@dataclass(frozen=True)
class Result:
    """A finished job: its picture, the steps it made, its last loss, seconds since it joined.

    ``png`` (the picture with its metadata) is encoded when first read, so a worker can encode it away from
    the thread that steps the GPU (a 512x512 PNG is tens of milliseconds of CPU the GPU would idle for).
    """

    key: Hashable
    image: torch.Tensor  # (3, H, W) in [0, 1], on the CPU
    steps_done: int
    loss: float
    seconds: float
    metadata: dict = field(default_factory=dict)

    @functools.cached_property
    def png(self) -> bytes:
        return png_bytes(self.image, self.metadata)


WARM_UP_STEPS = 3  # CUDA graphs are recorded on a compiled step's third call


class InsufficientMemoryError(RuntimeError):
    """Not even one job of this size fits in the GPU's free memory now."""


def timelapse_frame(picture: torch.Tensor) -> torch.Tensor:
    """A picture (3, H, W) in [0, 1] as the uint8 frame engine.images.timelapse_bytes takes (a quarter of the memory)."""
    return picture.mul(255).round().clamp(0, 255).to(torch.uint8)


@contextlib.contextmanager
def torch_settings(device: torch.device, *, deterministic: bool) -> Iterator[None]:
    """The torch switches the engine runs under, as they were again on exit: TF32 matmuls and
    convolutions and cuDNN autotuning on CUDA (no autotuning when ``deterministic``), and
    deterministic algorithms (warning where there are none) when ``deterministic``."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = not deterministic
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved[:3]
        if deterministic:
            torch.use_deterministic_algorithms(saved[3], warn_only=saved[4])


class Engine:
    """Holds the models; makes batches of jobs that share model, size and cutout count."""

    def __init__(self, config: EngineConfig) -> None:
        self.device = pick_device(config.device)
        weights_dtype, self.autocast_dtype = pick_precision(self.device, config.precision)
        if config.compile == "auto":  # a long-running worker: compile with CUDA graphs on CUDA, where it pays
            config = replace(config, compile="reduce-overhead" if self.device.type == "cuda" else "none")
        if config.compile not in COMPILE_MODES:
            raise ValueError(f"compile mode {config.compile!r}; valid choices are 'auto', "
                             f"{', '.join(map(repr, COMPILE_MODES))}")
        self.config = config
        self.cache = ModelCache(self.device, weights_dtype)
        self._compiled_shapes: set[tuple] = set()  # (models, width, height, cutn, batch of 2+) seen compiled
        # Compiled kernels kept beside the models, so a restarted worker skips most of the compiling
        # (unless TORCHINDUCTOR_CACHE_DIR says where they go).
        self._compile_cache = None
        if config.compile != "none" and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
            self._compile_cache = config.compile_cache or Path(config.model_dir) / "compile-cache"

    @contextlib.contextmanager
    def settings(self) -> Iterator[None]:
        """The process-wide switches this engine's work runs under (torch_settings, the fused kernels
        left out where ``fused_kernels`` is off, the compile cache), as they were again on exit."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch_settings(self.device, deterministic=self.config.deterministic))
            if not self.config.fused_kernels:
                devices = layers.switches().fused_norm_devices - {self.device.type}
                stack.enter_context(layers.switched(fused_norm_devices=devices))
            if self._compile_cache is not None:
                stack.enter_context(compile_cache(self._compile_cache))
            yield

    @property
    def precision_name(self) -> str:
        return str(self.autocast_dtype or self.cache.dtype).replace("torch.", "")

    def vqgan_source(self, name: str) -> VQGANSource:
        if self.config.vqgan_config and self.config.vqgan_checkpoint:
            return VQGANSource(name=name, config=self.config.vqgan_config, checkpoint=self.config.vqgan_checkpoint)
        return resolve_vqgan(name, self.config.model_dir)

    def max_batch(self, params: JobParams, limit: int) -> int:
        """How many jobs shaped like ``params`` fit in the GPU's free memory now (``limit`` on the CPU)."""
        if self.device.type != "cuda":
            return limit
        free, _ = torch.cuda.mem_get_info(self.device)
        free += torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        compiled = self.config.compile != "none"
        with self.settings():
            fused = compiled and layers.uses_fused_kernels(self.device, autocast=self.autocast_dtype is not None)
        shape = BatchShape(params.width, params.height, params.cutn, compiled=compiled, fused=fused)
        return max_batch(free / 2**30, shape, limit=limit)

    def admit(self, params: JobParams, count: int) -> int:
        """How many of ``count`` jobs shaped like ``params`` to step together now (admission);
        raises InsufficientMemoryError when not even one fits."""
        fits = self.max_batch(params, count)
        if fits == 0:
            raise InsufficientMemoryError(
                f"A {params.width}x{params.height} job with {params.cutn} cutouts does not fit in the GPU's free "
                "memory now; try a smaller size or fewer cutouts, or wait for other work on the GPU to finish."
            )
        return fits

    def preload(self, params: JobParams) -> None:
        """Load the models a job needs (so the first job doesn't pay for it)."""
        self.cache.vqgan(self.vqgan_source(params.model))
        self.cache.clip(params.clip_model, params.clip_pretrained)

    def batch(self, params: JobParams) -> Batch:
        """An empty batch for jobs shaped like ``params`` (its models loaded)."""
        return Batch(self, params)

    def warm_up(self, params: JobParams, *, jobs: int | None = None, limit: int = 2,
                should_stop: Callable[[], bool] = lambda: False) -> float:
        """Run throwaway jobs shaped like ``params`` before real jobs come: one alone for a few steps, then
        one more every few steps up to ``jobs`` together, as continuous batching grows a batch; then each
        leaves with its picture. Both compiled steps (one job, and batches of two or more) compile, and
        each batch size up to ``jobs`` gets its CUDA graph recorded and its kernels tuned (cuDNN and Triton
        tune each new shape on its first call, seconds a size), as do the picture decode, the init image's
        encoding (upscales and variations start from a picture) and the models' file digests (a picture's
        metadata). ``jobs`` by default: on a GPU every batch size up to ``limit`` that fits in memory (a
        size first seen while users wait costs them seconds); elsewhere two (nothing is recorded per size).
        Returns the seconds it took."""
        started = time.perf_counter()
        if jobs is None:
            jobs = self.max_batch(params, limit) if self.device.type == "cuda" else min(2, limit)
        batch = self.batch(params)
        warm = params.with_changes(steps=WARM_UP_STEPS * max(jobs, 1) + 1)
        for size in range(1, max(jobs, 1) + 1):
            if should_stop():
                break
            key = f"warm-up-{size}"
            batch.add(key, warm.with_changes(seed=size))
            for _ in range(WARM_UP_STEPS):
                step = batch.step()
            if size == 1:
                step.pictures([key])
                with self.settings():
                    batch.optimiser.start_latent(params, torch.zeros(1, 3, params.height, params.width))
        for left in list(batch.keys):
            batch.finish(left)
        return time.perf_counter() - started

    def run(self, jobs: list[tuple[Hashable, JobParams]],
            callback: Callable[[Step], None] | None = None) -> Iterator[Result]:
        """Make the jobs' pictures, stepped together in turns of as many as fit in memory; yield each
        Result as its job finishes. ``callback(step)`` comes after every step (engine.optimiser.Step:
        the steps each job has made; losses and pictures when it asks for them)."""
        if not jobs:
            return
        fits = self.admit(jobs[0][1], len(jobs))
        if fits < len(jobs):
            log.info("jobs %s: %d fit in GPU memory together; running them in turns", [k for k, _ in jobs], fits)
        for start in range(0, len(jobs), fits):
            batch = self.batch(jobs[start][1])
            for key, params in jobs[start:start + fits]:
                batch.add(key, params)
            while batch:
                step = batch.step()
                if callback is not None:
                    callback(step)
                for key in step.finished:
                    if key in batch:
                        yield batch.finish(key)

    def _note_compile(self, params: JobParams, jobs: int) -> str | None:
        """What the step about to run compiles (for the log), or None when it compiled before."""
        shape = (params.model, params.clip_model, params.width, params.height, params.cutn, jobs > 1)
        if self.config.compile == "none" or shape in self._compiled_shapes:
            return None
        self._compiled_shapes.add(shape)
        what = (f"the step for {params.width}x{params.height}, {params.cutn} cutouts, "
                f"{'batches' if jobs > 1 else 'one job'}")
        log.info("compiling %s (about a minute, less with the compile cache)", what)
        return what


class Batch:
    """Jobs of one model, size and cutout count stepped together on the engine's device.

    The caller drives it: ``add`` jobs (each joins at the next step), ``step``, then ``finish``
    each job the Step lists as finished (its PNG) and ``remove`` any that should stop without a
    picture. Its torch work runs under the engine's settings (``Engine.settings``), Step.pictures included.
    """

    def __init__(self, engine: Engine, first: JobParams) -> None:
        self.engine, self.key = engine, batch_key(first)
        self.device, self.precision_name = engine.device, engine.precision_name
        self.source = engine.vqgan_source(first.model)
        self._first = first
        self._params: dict[Hashable, JobParams] = {}
        self._joined: dict[Hashable, float] = {}
        self.vqgan = engine.cache.vqgan(self.source)
        self.clip = engine.cache.clip(first.clip_model, first.clip_pretrained)
        self.optimiser = BatchOptimiser(
            self.vqgan, self.clip, width=first.width, height=first.height, cutn=first.cutn, device=engine.device,
            autocast_dtype=engine.autocast_dtype, compile_mode=engine.config.compile, settings=engine.settings)

    def __len__(self) -> int:
        return len(self.optimiser)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._params

    @property
    def keys(self) -> list[Hashable]:
        return self.optimiser.keys

    def add(self, key: Hashable, params: JobParams, *, state: JobState | None = None) -> None:
        """Join at the next step; with ``state`` (``Batch.state`` of this job, from any batch of its shape,
        or engine.checkpoints.decode) go on from where it was, to the picture an uninterrupted run makes.
        A job's own bad input raises ParamError, PromptError or ImageInputError (the batch is as it was);
        a job of another shape or a state that cannot go on here, ValueError."""
        if batch_key(params) != self.key:
            raise ValueError(f"job {key} differs in model, size or cutouts from the batch's first job")
        params.validate(multiple_of=self.vqgan.factor)
        pictures = [load_image(p.text, what="image prompt") for p in params.image_prompts]
        # a resumed job's start (the init image's encoding) is in its state already
        init = load_image(params.init_image, what="init image") if params.init_image and state is None else None
        with self.engine.settings():
            targets = build_targets(self.clip, params, pictures)
        self.optimiser.add(key, params, targets, init_image=init, state=state)
        self._params[key], self._joined[key] = params, time.perf_counter()

    def state(self, key: Hashable) -> JobState:
        """The job's state after its last step, on the CPU: to checkpoint it (engine.checkpoints.encode)
        or to move it to another batch. The job stays in this batch."""
        return self.optimiser.state(key)

    def step(self) -> Step:
        """One step for every job (see engine.optimiser.Step)."""
        compiling = self.engine._note_compile(self._first, len(self))
        if compiling is None:
            return self.optimiser.step()
        before = graph_breaks()
        step = self.optimiser.step()
        warn_of_graph_breaks(before, compiling.capitalize())
        return step

    def remove(self, key: Hashable) -> int:
        """Take a job out without a picture (cancelled, handed back); returns the steps it made."""
        slot = self.optimiser.remove(key)
        del self._params[key], self._joined[key]
        return slot.steps_done

    def finish(self, key: Hashable) -> Result:
        """Take a job out with its picture as it is after the last step, as a PNG with its parameters."""
        outcome = self.optimiser.finish(key)
        params = self._params.pop(key)
        metadata = picture_metadata(params, provenance(self.source, self.clip, params, self.engine.cache.digests),
                                    steps_done=outcome.steps_done, loss=outcome.loss, device=str(self.device),
                                    precision=self.precision_name)
        return Result(key=key, image=outcome.image, steps_done=outcome.steps_done,
                      loss=outcome.loss, seconds=time.perf_counter() - self._joined.pop(key), metadata=metadata)

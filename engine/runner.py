"""The engine as a service: jobs in (parameters), pictures out (PNG bytes), progress by callback.

This is what ``vqbot imagine`` and the queue worker call; it knows nothing of
Discord or the database.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from engine import layers
from engine.compiling import COMPILE_MODES
from engine.cutouts import Augment
from engine.images import load_image, png_bytes, preview_bytes, timelapse_bytes
from engine.memory import BatchShape, max_batch
from engine.metadata import picture_metadata, provenance
from engine.models import ModelCache, VQGANSource, pick_device, pick_precision, resolve_vqgan
from engine.optimiser import JobRequest, StepReport, optimise
from engine.targets import build_targets
from jobspec import JobParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    """How the engine runs: device, precision, where models live, optional explicit VQGAN files."""

    model_dir: Path
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    compile: str = "none"  # auto | none | default | reduce-overhead (CUDA graphs): faster steps, slower start
    fused_kernels: bool = True  # compiled CUDA steps use engine/fused_norm.py's Triton kernels (False: process-wide)
    vqgan_config: Path | None = None  # explicit taming files override the catalogue name
    vqgan_checkpoint: Path | None = None
    deterministic: bool = False


@dataclass(frozen=True)
class Progress:
    key: Hashable
    step: int
    total: int
    loss: float
    preview: bytes | None  # small WebP
    steps_per_s: float


@dataclass(frozen=True)
class Result:
    key: Hashable
    png: bytes
    steps_done: int
    loss: float
    cancelled: bool
    seconds: float
    timelapse: bytes | None = None
    metadata: dict = field(default_factory=dict)


WARM_UP_STEPS = 3  # CUDA graphs are recorded on a compiled step's third call


class InsufficientMemoryError(RuntimeError):
    """Not even one job of this size fits in the GPU's free memory now."""


class Engine:
    """Holds the models and runs batches of jobs that share model, size and cutout count."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.device = pick_device(config.device)
        weights_dtype, self.autocast_dtype = pick_precision(self.device, config.precision)
        if config.compile == "auto":  # a long-running worker: compile with CUDA graphs on CUDA, where it pays
            config = replace(config, compile="reduce-overhead" if self.device.type == "cuda" else "none")
            self.config = config
        if config.compile not in COMPILE_MODES:
            raise ValueError(f"compile mode {config.compile!r}; valid choices are 'auto', "
                             f"{', '.join(map(repr, COMPILE_MODES))}")
        if not config.fused_kernels:
            layers.FUSED_NORM_DEVICES.discard(self.device.type)
        self.cache = ModelCache(self.device, weights_dtype)
        self._compiled_shapes: set[tuple] = set()  # (models, width, height, cutn, batch of 2+) seen compiled
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = not config.deterministic
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        if config.compile != "none" and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
            # Compiled kernels kept beside the models, so a restarted worker skips most of the compiling.
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(config.model_dir) / "compile-cache")

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
        shape = BatchShape(params.width, params.height, params.cutn, compiled=compiled,
                           fused=compiled and layers.uses_fused_kernels(self.device, autocast=self.autocast_dtype is not None))
        return max_batch(free / 2**30, shape, limit=limit)

    def preload(self, params: JobParams) -> None:
        """Load the models a job needs (so the first job doesn't pay for it)."""
        self.cache.vqgan(self.vqgan_source(params.model))
        self.cache.clip(params.clip_model, params.clip_pretrained)

    def warm_up(self, params: JobParams, *, is_cancelled: Callable[[Hashable], bool] | None = None) -> float:
        """Run a throwaway job shaped like ``params`` for a few steps, so that its step is compiled
        (and its CUDA graphs recorded) before real jobs come. Returns the seconds it took."""
        started = time.perf_counter()
        for _ in self.run([("warm-up", params.with_changes(steps=WARM_UP_STEPS))], progress_every=0,
                          is_cancelled=is_cancelled):
            pass
        return time.perf_counter() - started

    def run(
        self,
        jobs: list[tuple[Hashable, JobParams]],
        *,
        on_progress: Callable[[Progress], None] | None = None,
        progress_every: int = 10,
        is_cancelled: Callable[[Hashable], bool] | None = None,
        frames_every: int = 0,
        timelapse_format: str | None = None,
        augment: Augment = Augment(),
        progress_images: bool = True,
        progress_filter: Callable[[Hashable], bool] | None = None,
    ) -> Iterator[Result]:
        """Optimise the jobs together; yield each Result as its job ends.

        ``progress_filter(key)`` says whether a job wants a progress report now (the
        worker's time gate): others get none, and their preview is not encoded, so
        the GPU thread doesn't spend time on pictures nobody will see.
        """
        if not jobs:
            return
        first = jobs[0][1]
        for key, params in jobs:
            same = (params.model, params.clip_model, params.clip_pretrained, params.width, params.height, params.cutn)
            if same != (first.model, first.clip_model, first.clip_pretrained, first.width, first.height, first.cutn):
                raise ValueError(f"job {key} differs in model, size or cutouts from the batch's first job")
        source = self.vqgan_source(first.model)
        vqgan = self.cache.vqgan(source)
        fits = self.max_batch(first, len(jobs))
        if fits == 0:
            raise InsufficientMemoryError(
                f"A {first.width}x{first.height} job with {first.cutn} cutouts does not fit in the GPU's free memory now; "
                "try a smaller size or fewer cutouts, or wait for other work on the GPU to finish."
            )
        if fits < len(jobs):  # admission: run what fits together, the rest after it
            log.info("jobs %s: %d fit in GPU memory together; running them in turns", [k for k, _ in jobs], fits)
            for start in range(0, len(jobs), fits):
                yield from self.run(jobs[start:start + fits], on_progress=on_progress, progress_every=progress_every,
                                    is_cancelled=is_cancelled, frames_every=frames_every,
                                    timelapse_format=timelapse_format, augment=augment,
                                    progress_images=progress_images, progress_filter=progress_filter)
            return
        clip = self.cache.clip(first.clip_model, first.clip_pretrained)
        requests = []
        for key, params in jobs:
            params.validate(multiple_of=vqgan.factor)
            pictures = [load_image(p.text, what="image prompt") for p in params.image_prompts]
            init = load_image(params.init_image, what="init image") if params.init_image else None
            requests.append(JobRequest(key=key, params=params, targets=build_targets(clip, params, pictures), init_image=init))
        by_key = dict(jobs)
        shape = (first.model, first.clip_model, first.width, first.height, first.cutn, len(jobs) > 1)
        if self.config.compile != "none" and shape not in self._compiled_shapes:
            self._compiled_shapes.add(shape)
            log.info("compiling the step for %dx%d, %d cutouts, %s (about a minute, less with the compile cache)",
                     first.width, first.height, first.cutn, "batches" if len(jobs) > 1 else "one job")
        started = time.perf_counter()
        last = {"time": started, "steps": 0}

        def report(step: StepReport) -> None:
            now = time.perf_counter()
            rate = (step.steps_done[0] - last["steps"]) / max(now - last["time"], 1e-9)
            last.update(time=now, steps=step.steps_done[0])
            if on_progress is None:
                return
            for i, key in enumerate(step.keys):
                if progress_filter is not None and not progress_filter(key):
                    continue
                preview = preview_bytes(step.images[i]) if step.images is not None else None
                on_progress(Progress(key=key, step=step.steps_done[i], total=by_key[key].steps,
                                     loss=step.losses[i], preview=preview, steps_per_s=rate))

        for outcome in optimise(
            requests, vqgan, clip, device=self.device, autocast_dtype=self.autocast_dtype, augment=augment,
            progress_every=progress_every, on_progress=report, is_cancelled=is_cancelled, frames_every=frames_every,
            progress_images=progress_images, compile_mode=self.config.compile, report_filter=progress_filter,
        ):
            params = by_key[outcome.key]
            metadata = picture_metadata(params, provenance(source, clip, params, self.cache.digests),
                                        steps_done=outcome.steps_done, loss=outcome.loss, device=str(self.device),
                                        precision=self.precision_name)
            timelapse = None
            if timelapse_format and outcome.frames:
                timelapse = timelapse_bytes(outcome.frames, fmt=timelapse_format)
            yield Result(key=outcome.key, png=png_bytes(outcome.image, metadata), steps_done=outcome.steps_done,
                         loss=outcome.loss, cancelled=outcome.cancelled, seconds=time.perf_counter() - started,
                         timelapse=timelapse, metadata=metadata)

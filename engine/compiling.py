"""torch.compile for the optimiser's step: modes, Inductor settings, and which dimensions are dynamic.

What each setting gave is measured in bench/profile_engine.py (logs in bench/results/).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

COMPILE_MODES = ("none", "default", "reduce-overhead")

log = logging.getLogger(__name__)

# Inductor settings for every compiled step. Layout optimisation keeps the decoder's
# activations channels-last (NHWC) from conv to conv, so cuDNN's Hopper kernels get
# their layout without a transpose before and after each convolution (those
# transposes were ~23% of GPU time). Inductor's own heuristic skips it for any graph
# with a conv whose output has half the input's channels (the decoder's 256->128 and
# 128->3 convs), hence "force"; bench/profile_engine.py measures it both ways.
INDUCTOR_OPTIONS: dict[str, Any] = {"force_layout_optimization": True}
# None: one graph for a single job and one for any larger batch (batch_dim_dynamic), per
# picture size; False: one specialised graph per batch size as well.
COMPILE_DYNAMIC: bool | None = None


def batch_dim_dynamic(tensors: tuple[torch.Tensor, ...], batch: int) -> None:
    """Mark dim 0 of the batch's tensors dynamic, so batches of 2 jobs and more share one compiled graph.

    A single job keeps its own static graph (dynamo specialises size 1). Every other
    dimension (picture size, cutouts, prompts) stays static: with dynamic picture sizes
    Inductor's channels-last layout fails to compile, and each picture size is worth
    its own kernels anyway.
    """
    if batch < 2 or COMPILE_DYNAMIC is False:
        return
    for t in tensors:
        if t.dim() and t.shape[0] == batch:
            torch._dynamo.maybe_mark_dynamic(t, 0)


def compiled(fn: Callable, mode: str) -> Callable:
    """``fn`` through torch.compile (``reduce-overhead`` adds CUDA graphs), or as it is for ``none``.

    Each batch size compiles once; sizes seen before are reused, so jobs
    joining and leaving don't recompile once the sizes have been seen. The
    Dynamo settings this needs hold only inside calls of the compiled ``fn``
    (where Dynamo traces and guards it), not for the rest of the process.
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {mode!r}; valid choices are {', '.join(map(repr, COMPILE_MODES))}")
    if mode == "none":
        return fn
    import torch._dynamo

    options = dict(INDUCTOR_OPTIONS)
    if mode == "reduce-overhead":
        options["triton.cudagraphs"] = True  # what mode="reduce-overhead" sets; mode and options don't mix
    dynamo_settings = torch._dynamo.config.patch(
        cache_size_limit=max(torch._dynamo.config.cache_size_limit, 64),
        # Only the batch dimension may become dynamic, and only where batch_dim_dynamic says so.
        automatic_dynamic_shapes=False,
    )
    return dynamo_settings(torch.compile(fn, options=options, dynamic=COMPILE_DYNAMIC))


@contextlib.contextmanager
def compile_cache(directory: Path) -> Iterator[None]:
    """Inductor keeps the kernels it compiles inside the block in ``directory``; the environment variable
    that says so (TORCHINDUCTOR_CACHE_DIR) is as it was afterwards. Inductor's compile workers, started
    inside, keep the folder they were given."""
    before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(directory)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = before


def custom_op(name: str, *, flexible_layout: bool = False) -> Callable:
    """torch.library.custom_op with no mutated arguments; ``flexible_layout`` lets Inductor hand the op
    its inputs in whatever layout it has (the op reads strides) instead of copying them to the traced
    layout. Torch versions without custom-op tags get the op without it (slower, same values)."""
    tag = getattr(torch.Tag, "flexible_layout", None) if flexible_layout else None
    if tag is not None:
        try:
            return torch.library.custom_op(name, mutates_args=(), tags=(tag,))
        except TypeError:  # torch.library.custom_op without ``tags`` (before torch 2.6)
            pass
    return torch.library.custom_op(name, mutates_args=())


def graph_breaks() -> int:
    """How many graph breaks Dynamo has met in this process so far."""
    from torch._dynamo.utils import counters

    return sum(counters["graph_break"].values())


def warn_of_graph_breaks(before: int, what: str) -> int:
    """Log a warning when Dynamo met graph breaks since ``graph_breaks()`` was ``before`` (while compiling
    ``what``): the step then runs as several graphs with Python between them, slower, and CUDA graphs
    cannot cover it whole. Our step is written to be one graph; a break means a torch or library version
    traces it differently. Returns how many there were."""
    from torch._dynamo.utils import counters

    breaks = graph_breaks() - before
    if breaks > 0:
        reasons = "; ".join(reason.strip().splitlines()[0] for reason in list(counters["graph_break"])[:3])
        log.warning("%s broke into several graphs (%d graph break(s): %s); it runs slower than it should. "
                    "Report this with your torch version (vqbot doctor prints it).", what, breaks, reasons)
    return breaks

"""A job's optimisation state between two steps: all that its next step depends on besides its parameters.

Taken out of a batch with ``Batch.state(key)`` and put back, into the same batch or any other of the
job's shape, with ``Batch.add(key, params, state=...)``: the job then goes on exactly as if it had never
left (its random numbers come from its seed and the step number, engine.invariance). engine.checkpoints
turns one into bytes and back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class JobState:
    """``step``: the steps made (Adam's step count too); ``z``: the latent, ``m`` and ``v``: Adam's first
    and second moments, each (C, h, w) float32 on the CPU; ``z_init``: the latent that ``init_weight``
    pulls towards, kept only for jobs whose ``init_weight`` is not 0 (for the others it changes nothing)."""

    step: int
    z: torch.Tensor
    m: torch.Tensor
    v: torch.Tensor
    z_init: torch.Tensor | None = None

    def tensors(self) -> dict[str, torch.Tensor]:
        """The state's tensors by name (z, m, v, and z_init where kept)."""
        named = {"z": self.z, "m": self.m, "v": self.v}
        if self.z_init is not None:
            named["z_init"] = self.z_init
        return named

    def problem(self, latent_shape: tuple[int, ...] | None = None) -> str | None:
        """Why this state cannot be resumed, in a sentence, or None when it can. ``latent_shape``: the
        (C, h, w) of the batch it is meant for, when known."""
        if self.step < 0:
            return f"its step count {self.step} is negative"
        shape = tuple(self.z.shape)
        if len(shape) != 3:
            return f"its latent has shape {shape}, not (channels, height, width)"
        if latent_shape is not None and shape != tuple(latent_shape):
            return f"its latent is {shape}, the batch's is {tuple(latent_shape)}"
        for name, tensor in self.tensors().items():
            if tensor.dtype != torch.float32:
                return f"its {name} is {tensor.dtype}, not float32"
            if tuple(tensor.shape) != shape:
                return f"its {name} is {tuple(tensor.shape)}, its latent {shape}"
            if not bool(tensor.sum().isfinite()):  # one pass, nothing allocated: NaN and inf carry into the sum
                return f"its {name} holds values that are not finite"
        if self.v.numel() and float(self.v.min()) < 0:
            return "its second moments are negative in places"
        return None

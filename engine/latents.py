"""The VQGAN latent ``z``: random or encoded start, quantisation, clamping."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def quantize(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Snap each latent vector to its nearest codebook entry, gradient passed straight through.

    z: (B, C, h, w); codebook: (K, C). Distances are computed in float32.
    """
    b, c, h, w = z.shape
    flat = z.permute(0, 2, 3, 1).reshape(-1, c).float()
    book = codebook.float()
    dist = flat.pow(2).sum(1, keepdim=True) + book.pow(2).sum(1) - 2 * flat @ book.T
    nearest = book[dist.argmin(1)].to(z.dtype).view(b, h, w, c).permute(0, 3, 1, 2)
    return z + (nearest - z).detach()


@torch.library.custom_op("vqbot::clamp_with_grad", mutates_args=())
def clamp_with_grad(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Clamp whose gradient still flows where it would move the value back into range.

    A custom op rather than an autograd.Function: a compiled step holding it can
    be kept in the AOTAutograd cache, so a restarted worker skips retracing it.
    """
    return x.clamp(low, high)


@clamp_with_grad.register_fake
def _clamp_shape(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return torch.empty_like(x)


def _clamp_setup(ctx, inputs, output) -> None:
    x, ctx.low, ctx.high = inputs
    ctx.save_for_backward(x)


def _clamp_backward(ctx, grad: torch.Tensor):
    (x,) = ctx.saved_tensors
    inward = grad * (x - x.clamp(ctx.low, ctx.high)) >= 0
    return grad * inward, None, None


clamp_with_grad.register_autograd(_clamp_backward, setup_context=_clamp_setup)


def random_latent(codebook: torch.Tensor, tokens_h: int, tokens_w: int, generator: torch.Generator) -> torch.Tensor:
    """A latent of random codebook entries, (1, C, tokens_h, tokens_w), on the codebook's device.

    Token indices come from a CPU generator so the start is the same on every device.
    """
    indices = torch.randint(codebook.shape[0], (tokens_h * tokens_w,), generator=generator)
    z = codebook[indices.to(codebook.device)]
    return z.view(1, tokens_h, tokens_w, -1).permute(0, 3, 1, 2).contiguous()


def codebook_bounds(codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel minimum and maximum of the codebook, each (1, C, 1, 1)."""
    return codebook.min(0).values.view(1, -1, 1, 1), codebook.max(0).values.view(1, -1, 1, 1)


def resize_cover(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Scale (B, 3, H, W) to cover height x width, then centre-crop to it."""
    _, _, h, w = image.shape
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    resized = F.interpolate(image, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
    top, left = (nh - height) // 2, (nw - width) // 2
    return resized[:, :, top : top + height, left : left + width].clamp(0, 1)

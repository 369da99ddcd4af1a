"""Group norm + SiLU as one operation with hand-written Triton kernels (forward and backward).

The decoder spends most of its memory-bound time in group norm followed by SiLU
at 256x256 and 512x512 (profile in bench/results/). Inductor's code for it reads
the activations several more times than needed in the backward pass and saves
extra full-resolution tensors. These kernels read ``x`` once for the statistics
and once to write the output, and in the backward pass read ``x`` and the
incoming gradient twice (once for the two group sums, once to write the
gradient); only ``x`` and the per-group mean and 1/std are kept for the backward.

What is computed is torch's group norm (float32 statistics, float32 arithmetic)
then x * sigmoid(x), rounded once to ``out_dtype``: what CUDA autocast's float32
group norm followed by a bf16 convolution computes. Any memory layout works
(strides are passed in); channels-last is the fast one.

Statistics: each program sums (x - k) and (x - k)^2 per channel over a run of
pixels, with k the mean of its first tile, and the programs' and then the
channels' (mean, squared deviations) are merged with Chan's formula, so a large
mean or an outlying pixel does not cancel the variance.

On CPU the same kernels run in Triton's interpreter (slow; the tests use it);
the engine uses the operation only for CUDA tensors under torch.compile.
"""

from __future__ import annotations

import os

import torch

from engine.compiling import custom_op

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU-only torch without triton: the decoder keeps the plain layers
    triton = None

# Launch shapes (bench/gpu_fused_norm.py sweeps them): elements of one (pixels x channels) tile
# and warps per program, for the two reductions and for the two elementwise passes, and how
# many reduction programs a launch aims for (split over the batch; enough to fill an H100).
REDUCE_TILE, REDUCE_WARPS = 2048, 4
ELEMENTWISE_TILE, ELEMENTWISE_WARPS = 4096, 4
TARGET_PROGRAMS = 1024


def available() -> bool:
    return triton is not None


if triton is not None:

    @triton.jit
    def _tile(n, ps, cs, W, sn, sc, sh, sw):
        """Element offsets of the (pixels ps x channels cs) tile of picture n, for a tensor's four strides."""
        return n.to(tl.int64) * sn + ((ps // W) * sh + (ps % W) * sw)[:, None] + (cs * sc)[None, :]

    @triton.jit
    def _channel_terms(w_ptr, b_ptr, pb_ptr, mean_ptr, rstd_ptr, n, cs, cmask, G, CPG, HAS_PB: tl.constexpr):
        """Per channel: weight, bias, the centre normalised around (the group mean less any pre-bias), 1/std."""
        w = tl.load(w_ptr + cs, mask=cmask, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + cs, mask=cmask, other=0.0).to(tl.float32)
        group = n * G + cs // CPG
        centre = tl.load(mean_ptr + group, mask=cmask, other=0.0)
        rstd = tl.load(rstd_ptr + group, mask=cmask, other=0.0)
        if HAS_PB:  # x + pre-bias is what is normalised
            centre -= tl.load(pb_ptr + cs, mask=cmask, other=0.0).to(tl.float32)
        return w, b, centre, rstd

    @triton.jit
    def _stats_kernel(x_ptr, part_ptr, C, P, W, sxn, sxc, sxh, sxw, rows_per_program,
                      BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        """Per program (a run of pixels of one picture) and channel: the mean and the sum of squared deviations."""
        n = tl.program_id(0)
        s = tl.program_id(1)
        splits = tl.num_programs(1)
        cs = tl.arange(0, BLOCK_C)
        cmask = cs < C
        start = s * rows_per_program
        end = tl.minimum(start + rows_per_program, P)
        # shift: the mean of the program's first tile, so that the sums below don't cancel
        ps = start + tl.arange(0, BLOCK_P)
        first = (ps < end)[:, None] & cmask[None, :]
        v = tl.load(x_ptr + _tile(n, ps, cs, W, sxn, sxc, sxh, sxw), mask=first, other=0.0).to(tl.float32)
        k = tl.sum(v, axis=0) / tl.sum((ps < end).to(tl.float32), axis=0)
        acc1 = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
        acc2 = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
        for p0 in range(start, end, BLOCK_P):
            ps = p0 + tl.arange(0, BLOCK_P)
            mask = (ps < end)[:, None] & cmask[None, :]
            v = tl.load(x_ptr + _tile(n, ps, cs, W, sxn, sxc, sxh, sxw), mask=mask, other=0.0).to(tl.float32)
            v = tl.where(mask, v - k[None, :], 0.0)
            acc1 += v
            acc2 += v * v
        count = (end - start) * 1.0
        s1 = tl.sum(acc1, axis=0)
        out = part_ptr + ((n * splits + s) * 2) * C + cs
        tl.store(out, k + s1 / count, mask=cmask)
        tl.store(out + C, tl.maximum(tl.sum(acc2, axis=0) - s1 * s1 / count, 0.0), mask=cmask)

    @triton.jit
    def _group_channels(G, CPG, BLOCK_CPG: tl.constexpr):
        """A finalising program's picture, and its group's channels (with the mask for BLOCK_CPG > CPG)."""
        pid = tl.program_id(0)
        j = tl.arange(0, BLOCK_CPG)
        return pid // G, (pid % G) * CPG + j, j < CPG

    @triton.jit
    def _partials(part_ptr, n, splits, s0, cs, jmask, C, BLOCK_S: tl.constexpr):
        """Addresses of the first of two partial sums of BLOCK_S programs from s0, per channel, and their mask
        (the second sum is C further on)."""
        ss = s0 + tl.arange(0, BLOCK_S)
        return part_ptr + ((n * splits + ss) * 2 * C)[:, None] + cs[None, :], (ss < splits)[:, None] & jmask[None, :], ss

    @triton.jit
    def _stats_finalize_kernel(part_ptr, w_ptr, b_ptr, pb_ptr, mean_ptr, rstd_ptr, scale_ptr, shift_ptr,
                               C, P, G, splits, rows_per_program, eps,
                               HAS_PB: tl.constexpr, CPG: tl.constexpr, BLOCK_CPG: tl.constexpr, BLOCK_S: tl.constexpr):
        """Per picture and group: Chan's merge of the programs' (mean, squared deviations), then of the channels'."""
        pid = tl.program_id(0)
        n, cs, jmask = _group_channels(G, CPG, BLOCK_CPG)
        count = P * 1.0  # P * 1.0, not P.to(): Triton makes an argument equal to 1 a plain int
        total = tl.zeros([BLOCK_CPG], dtype=tl.float32)
        for s0 in range(0, splits, BLOCK_S):
            at, mask, ss = _partials(part_ptr, n, splits, s0, cs, jmask, C, BLOCK_S)
            counts = tl.minimum(tl.maximum(P - ss * rows_per_program, 0), rows_per_program) * 1.0
            total += tl.sum(tl.load(at, mask=mask, other=0.0) * counts[:, None], axis=0)
        mean_c = total / count
        m2_c = tl.zeros([BLOCK_CPG], dtype=tl.float32)
        for s0 in range(0, splits, BLOCK_S):
            at, mask, ss = _partials(part_ptr, n, splits, s0, cs, jmask, C, BLOCK_S)
            counts = tl.minimum(tl.maximum(P - ss * rows_per_program, 0), rows_per_program) * 1.0
            d = tl.where(mask, tl.load(at, mask=mask, other=0.0) - mean_c[None, :], 0.0)
            m2_c += tl.sum(tl.load(at + C, mask=mask, other=0.0) + counts[:, None] * d * d, axis=0)
        pb = tl.zeros([BLOCK_CPG], dtype=tl.float32)
        if HAS_PB:
            pb = tl.load(pb_ptr + cs, mask=jmask, other=0.0).to(tl.float32)
        mean_c += pb
        mean = tl.sum(tl.where(jmask, mean_c, 0.0), axis=0) / CPG
        d = tl.where(jmask, mean_c - mean, 0.0)
        m2 = tl.sum(tl.where(jmask, m2_c, 0.0), axis=0) + count * tl.sum(d * d, axis=0)
        rstd = 1.0 / tl.sqrt(m2 / (count * CPG) + eps)
        tl.store(mean_ptr + pid, mean)
        tl.store(rstd_ptr + pid, rstd)
        w = tl.load(w_ptr + cs, mask=jmask, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + cs, mask=jmask, other=0.0).to(tl.float32)
        tl.store(scale_ptr + n * C + cs, rstd * w, mask=jmask)
        tl.store(shift_ptr + n * C + cs, b + (pb - mean) * rstd * w, mask=jmask)

    @triton.jit
    def _apply_kernel(x_ptr, y_ptr, scale_ptr, shift_ptr, C, P, W, sxn, sxc, sxh, sxw, syn, syc, syh, syw,
                      SILU: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        n = tl.program_id(1)  # pixel tiles on axis 0: axis 1 allows only 65535 programs
        ps = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        cs = tl.arange(0, BLOCK_C)
        cmask = cs < C
        mask = (ps < P)[:, None] & cmask[None, :]
        a = tl.load(scale_ptr + n * C + cs, mask=cmask, other=0.0)
        b = tl.load(shift_ptr + n * C + cs, mask=cmask, other=0.0)
        x = tl.load(x_ptr + _tile(n, ps, cs, W, sxn, sxc, sxh, sxw), mask=mask, other=0.0).to(tl.float32)
        z = x * a[None, :] + b[None, :]
        if SILU:
            z = z * tl.sigmoid(z)
        tl.store(y_ptr + _tile(n, ps, cs, W, syn, syc, syh, syw), z.to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _grad_terms(x, dy, w, b, centre, rstd, SILU: tl.constexpr):
        """(d loss / d normalised x, normalised x) for one tile, in float32."""
        xh = (x - centre[None, :]) * rstd[None, :]
        if SILU:
            z = xh * w[None, :] + b[None, :]
            sig = tl.sigmoid(z)
            dy = dy * sig * (1.0 + z * (1.0 - sig))
        return dy * w[None, :], xh

    @triton.jit
    def _grad_sums_kernel(dy_ptr, x_ptr, w_ptr, b_ptr, pb_ptr, mean_ptr, rstd_ptr, part_ptr,
                          C, P, W, G, CPG, sxn, sxc, sxh, sxw, sdn, sdc, sdh, sdw, rows_per_program,
                          SILU: tl.constexpr, HAS_PB: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        n = tl.program_id(0)
        s = tl.program_id(1)
        splits = tl.num_programs(1)
        cs = tl.arange(0, BLOCK_C)
        cmask = cs < C
        w, b, centre, rstd = _channel_terms(w_ptr, b_ptr, pb_ptr, mean_ptr, rstd_ptr, n, cs, cmask, G, CPG, HAS_PB)
        acc1 = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
        acc2 = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
        start = s * rows_per_program
        end = tl.minimum(start + rows_per_program, P)
        for p0 in range(start, end, BLOCK_P):
            ps = p0 + tl.arange(0, BLOCK_P)
            mask = (ps < end)[:, None] & cmask[None, :]
            x = tl.load(x_ptr + _tile(n, ps, cs, W, sxn, sxc, sxh, sxw), mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(dy_ptr + _tile(n, ps, cs, W, sdn, sdc, sdh, sdw), mask=mask, other=0.0).to(tl.float32)
            dxh, xh = _grad_terms(x, dy, w, b, centre, rstd, SILU)
            dxh = tl.where(mask, dxh, 0.0)
            acc1 += dxh
            acc2 += dxh * xh
        out = part_ptr + ((n * splits + s) * 2) * C + cs
        tl.store(out, tl.sum(acc1, axis=0), mask=cmask)
        tl.store(out + C, tl.sum(acc2, axis=0), mask=cmask)

    @triton.jit
    def _grad_finalize_kernel(part_ptr, coef_ptr, C, P, G, splits,
                              CPG: tl.constexpr, BLOCK_CPG: tl.constexpr, BLOCK_S: tl.constexpr):
        pid = tl.program_id(0)
        n, cs, jmask = _group_channels(G, CPG, BLOCK_CPG)
        s1 = tl.zeros([BLOCK_CPG], dtype=tl.float32)
        s2 = tl.zeros([BLOCK_CPG], dtype=tl.float32)
        for s0 in range(0, splits, BLOCK_S):
            at, mask, _ = _partials(part_ptr, n, splits, s0, cs, jmask, C, BLOCK_S)
            s1 += tl.sum(tl.load(at, mask=mask, other=0.0), axis=0)
            s2 += tl.sum(tl.load(at + C, mask=mask, other=0.0), axis=0)
        count = P * 1.0 * CPG
        tl.store(coef_ptr + pid * 2, tl.sum(s1, axis=0) / count)
        tl.store(coef_ptr + pid * 2 + 1, tl.sum(s2, axis=0) / count)

    @triton.jit
    def _grad_input_kernel(dy_ptr, x_ptr, dx_ptr, w_ptr, b_ptr, pb_ptr, mean_ptr, rstd_ptr, coef_ptr,
                           C, P, W, G, CPG, sxn, sxc, sxh, sxw, sdn, sdc, sdh, sdw, son, soc, soh, sow,
                           SILU: tl.constexpr, HAS_PB: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        n = tl.program_id(1)  # pixel tiles on axis 0: axis 1 allows only 65535 programs
        ps = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        cs = tl.arange(0, BLOCK_C)
        cmask = cs < C
        mask = (ps < P)[:, None] & cmask[None, :]
        w, b, centre, rstd = _channel_terms(w_ptr, b_ptr, pb_ptr, mean_ptr, rstd_ptr, n, cs, cmask, G, CPG, HAS_PB)
        group = n * G + cs // CPG
        c1 = tl.load(coef_ptr + group * 2, mask=cmask, other=0.0)
        c2 = tl.load(coef_ptr + group * 2 + 1, mask=cmask, other=0.0)
        x = tl.load(x_ptr + _tile(n, ps, cs, W, sxn, sxc, sxh, sxw), mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + _tile(n, ps, cs, W, sdn, sdc, sdh, sdw), mask=mask, other=0.0).to(tl.float32)
        dxh, xh = _grad_terms(x, dy, w, b, centre, rstd, SILU)
        dx = rstd[None, :] * (dxh - c1[None, :] - xh * c2[None, :])
        tl.store(dx_ptr + _tile(n, ps, cs, W, son, soc, soh, sow), dx.to(dx_ptr.dtype.element_ty), mask=mask)


def _launch(kernel, device: torch.device, grid: tuple[int, ...], *args, **meta) -> None:
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("the engine's Triton kernels run on CPU tensors only in Triton's interpreter "
                           "(TRITON_INTERPRET=1 before triton is imported; the tests set it)")
    kernel[grid](*args, **meta)


def _tiles(c: int, p: int, n: int) -> tuple[int, int, int, int, int]:
    """(BLOCK_C, reduction BLOCK_P, rows per reduction program, reduction programs per picture, elementwise BLOCK_P)."""
    block_c = triton.next_power_of_2(c)
    block_p = max(1, REDUCE_TILE // block_c)
    tiles = triton.cdiv(p, block_p)
    per_picture = max(1, min(tiles, triton.cdiv(TARGET_PROGRAMS, n)))
    rows = triton.cdiv(tiles, per_picture) * block_p
    return block_c, block_p, rows, triton.cdiv(p, rows), max(1, ELEMENTWISE_TILE // block_c)


def _block_s(splits: int) -> int:
    """Partial sums the finalising kernels read at once: all of them, up to 1024 (one program per group)."""
    return min(1024, triton.next_power_of_2(splits))


def _check(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pre_bias: torch.Tensor | None,
           groups: int) -> None:
    if x.dim() != 4:
        raise ValueError(f"group_norm_silu wants (batch, channels, height, width), got shape {tuple(x.shape)}")
    c = x.shape[1]
    vectors = [weight, bias] + ([] if pre_bias is None else [pre_bias])
    if groups < 1 or c % groups or any(v.shape != (c,) for v in vectors):
        raise ValueError(f"group_norm_silu: {c} channels in {groups} groups, with per-channel vectors of shapes "
                         f"{[tuple(v.shape) for v in vectors]}")


def _strides(t: torch.Tensor) -> tuple[int, int, int, int]:
    return tuple(t.stride())  # type: ignore[return-value]


@custom_op("vqbot::group_norm_silu", flexible_layout=True)
def _forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pre_bias: torch.Tensor | None, groups: int,
             eps: float, silu: bool, out_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _check(x, weight, bias, pre_bias, groups)
    n, c, h, w = x.shape
    p = h * w
    y = torch.empty_like(x, dtype=out_dtype)
    mean = x.new_empty((n, groups), dtype=torch.float32)
    rstd = torch.empty_like(mean)
    if x.numel() == 0:
        return y, mean, rstd
    block_c, block_p, rows, splits, block_e = _tiles(c, p, n)
    part = x.new_empty((n, splits, 2, c), dtype=torch.float32)
    scale = x.new_empty((n, c), dtype=torch.float32)
    shift = torch.empty_like(scale)
    sx = _strides(x)
    cpg = c // groups
    _launch(_stats_kernel, x.device, (n, splits), x, part, c, p, w, *sx, rows, BLOCK_P=block_p, BLOCK_C=block_c,
            num_warps=REDUCE_WARPS)
    _launch(_stats_finalize_kernel, x.device, (n * groups,), part, weight, bias,
            weight if pre_bias is None else pre_bias, mean, rstd, scale, shift, c, p, groups, splits, rows, eps,
            HAS_PB=pre_bias is not None, CPG=cpg, BLOCK_CPG=triton.next_power_of_2(cpg), BLOCK_S=_block_s(splits))
    _launch(_apply_kernel, x.device, (triton.cdiv(p, block_e), n), x, y, scale, shift, c, p, w, *sx, *_strides(y),
            SILU=silu, BLOCK_P=block_e, BLOCK_C=block_c, num_warps=ELEMENTWISE_WARPS)
    return y, mean, rstd


@_forward.register_fake
def _forward_fake(x, weight, bias, pre_bias, groups, eps, silu, out_dtype):
    mean = x.new_empty((x.shape[0], groups), dtype=torch.float32)
    return torch.empty_like(x, dtype=out_dtype), mean, torch.empty_like(mean)


@custom_op("vqbot::group_norm_silu_backward", flexible_layout=True)
def _backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
              pre_bias: torch.Tensor | None, mean: torch.Tensor, rstd: torch.Tensor, silu: bool) -> torch.Tensor:
    n, c, h, w = x.shape
    groups = mean.shape[1]
    p = h * w
    dx = torch.empty_like(x)
    if x.numel() == 0:
        return dx
    cpg = c // groups
    block_c, block_p, rows, splits, block_e = _tiles(c, p, n)
    part = x.new_empty((n, splits, 2, c), dtype=torch.float32)
    coef = x.new_empty((n, groups, 2), dtype=torch.float32)
    sx, sd = _strides(x), _strides(grad)
    pb = weight if pre_bias is None else pre_bias
    has_pb = pre_bias is not None
    _launch(_grad_sums_kernel, x.device, (n, splits), grad, x, weight, bias, pb, mean, rstd, part,
            c, p, w, groups, cpg, *sx, *sd, rows, SILU=silu, HAS_PB=has_pb, BLOCK_P=block_p, BLOCK_C=block_c,
            num_warps=REDUCE_WARPS)
    _launch(_grad_finalize_kernel, x.device, (n * groups,), part, coef, c, p, groups, splits,
            CPG=cpg, BLOCK_CPG=triton.next_power_of_2(cpg), BLOCK_S=_block_s(splits))
    _launch(_grad_input_kernel, x.device, (triton.cdiv(p, block_e), n), grad, x, dx, weight, bias, pb, mean,
            rstd, coef, c, p, w, groups, cpg, *sx, *sd, *_strides(dx), SILU=silu, HAS_PB=has_pb,
            BLOCK_P=block_e, BLOCK_C=block_c, num_warps=ELEMENTWISE_WARPS)
    return dx


@_backward.register_fake
def _backward_fake(grad, x, weight, bias, pre_bias, mean, rstd, silu):
    return torch.empty_like(x)


def _setup(ctx, inputs, output) -> None:
    x, weight, bias, pre_bias, _groups, _eps, silu, _dtype = inputs
    _y, mean, rstd = output
    ctx.save_for_backward(x, weight, bias, pre_bias, mean, rstd)
    ctx.silu = silu


def _grad(ctx, grad_y, _grad_mean, _grad_rstd):
    x, weight, bias, pre_bias, mean, rstd = ctx.saved_tensors
    if any(ctx.needs_input_grad[1:4]):
        raise NotImplementedError("group_norm_silu has no gradient for its weight and biases (frozen models only)")
    dx = _backward(grad_y, x, weight, bias, pre_bias, mean, rstd, ctx.silu) if ctx.needs_input_grad[0] else None
    return dx, None, None, None, None, None, None, None


_forward.register_autograd(_grad, setup_context=_setup)


def group_norm_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float,
                    silu: bool = True, out_dtype: torch.dtype | None = None,
                    pre_bias: torch.Tensor | None = None) -> torch.Tensor:
    """silu(group_norm(x + pre_bias)) in float32 (no SiLU with ``silu=False``), returned as ``out_dtype``.

    ``pre_bias`` (per channel) is the bias of the convolution that made ``x``, added
    here instead of in a pass of its own.
    """
    return _forward(x, weight, bias, pre_bias, groups, eps, silu, out_dtype or x.dtype)[0]

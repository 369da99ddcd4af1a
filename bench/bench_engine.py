"""Engine speed on the real architectures with random weights (the FLOPs are the same).

Runs, in one process on one device: the classic 2021 loop (fp32 decoder, fp16
CLIP weights, a Python loop over cutouts, kornia-style batched augmentations,
torch.optim.Adam, one job), then our engine (one job, then batches), and
prints steps/s, seconds per 500 steps and peak GPU memory. The last line is
one JSON object with the figures.

    python bench/bench_engine.py                 # 512x512, 32 cutouts, on CUDA
    python bench/bench_engine.py --tiny          # a quick smoke run on the CPU
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.clip import Clip, wrap_clip
from engine.latents import clamp_with_grad, codebook_bounds, quantize, random_latent
from engine.losses import prompt_loss
from engine.optimiser import BatchOptimiser
from engine.targets import Targets
from engine.vqgan import VQGAN, VQGANConfig
from jobspec import JobParams, Prompt
from tests.tiny_models import TINY_CLIP_CONFIG, TINY_DDCONFIG

F16_16384 = VQGANConfig(kind="vq", embed_dim=256, n_embed=16384, ddconfig={
    "double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
    "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16], "dropout": 0.0})
TINY = VQGANConfig(kind="vq", embed_dim=32, n_embed=64, ddconfig=TINY_DDCONFIG)


def build_models(device: torch.device, tiny: bool, *, classic: bool = False) -> tuple[VQGAN, Clip]:
    """Random-weight models (seed 0); ``classic`` keeps open_clip's own image-tower layers, as the 2021 tools ran them."""
    import open_clip

    torch.manual_seed(0)
    vqgan = VQGAN(TINY if tiny else F16_16384)
    with torch.no_grad():
        vqgan.codebook.normal_()
    vqgan = vqgan.eval().requires_grad_(False).to(device)
    if tiny:
        model = open_clip.model.CLIP(**TINY_CLIP_CONFIG["model_cfg"])
    else:
        model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    return vqgan, wrap_clip(model, open_clip.get_tokenizer("ViT-B-32-quickgelu"), "ViT-B-32", device=device,
                            fast_layers=not classic)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# ---------------------------------------------------------------- the classic loop


def classic_cutouts(image: torch.Tensor, cutn: int, size: int, cut_pow: float) -> torch.Tensor:
    """The 2021 MakeCutouts: a Python loop of crops, then batched kornia-style augmentations."""
    _, _, h, w = image.shape
    side, min_size = min(h, w), min(h, w, size)
    cuts = []
    for _ in range(cutn):
        s = int(torch.rand([]) ** cut_pow * (side - min_size) + min_size)
        ox, oy = torch.randint(0, w - s + 1, ()), torch.randint(0, h - s + 1, ())
        crop = image[:, :, oy:oy + s, ox:ox + s]
        cuts.append(F.adaptive_avg_pool2d(crop, size))
    x = torch.cat(cuts)
    n, dev = x.shape[0], x.device
    # RandomHorizontalFlip
    flip = torch.rand(n, device=dev) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    # RandomAffine(degrees=15, translate=0.1, shear=5, p=0.7)
    angle = (torch.rand(n, device=dev) * 2 - 1) * math.radians(15) * (torch.rand(n, device=dev) < 0.7)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 1] = angle.cos(), -angle.sin() + (torch.rand(n, device=dev) * 2 - 1) * 0.09
    theta[:, 1, 0], theta[:, 1, 1] = angle.sin(), angle.cos()
    theta[:, :, 2] = (torch.rand(n, 2, device=dev) * 2 - 1) * 0.2
    x = F.grid_sample(x, F.affine_grid(theta, x.shape, align_corners=False), align_corners=False)
    # RandomPerspective(0.2, p=0.7): a homography per cutout
    src = torch.tensor([[-1, -1], [1, -1], [-1, 1], [1, 1]], device=dev, dtype=x.dtype).expand(n, 4, 2)
    dst = src + (torch.rand(n, 4, 2, device=dev) * 2 - 1) * 0.2 * (torch.rand(n, 1, 1, device=dev) < 0.7)
    rows = []
    for corner in range(4):
        sx, sy = src[:, corner, 0], src[:, corner, 1]
        dx, dy = dst[:, corner, 0], dst[:, corner, 1]
        one, zero = torch.ones_like(sx), torch.zeros_like(sx)
        rows.append(torch.stack([sx, sy, one, zero, zero, zero, -dx * sx, -dx * sy], 1))
        rows.append(torch.stack([zero, zero, zero, sx, sy, one, -dy * sx, -dy * sy], 1))
    a = torch.stack(rows, 1)
    b = dst.reshape(n, 8, 1)
    hcoef = torch.linalg.solve(a, b).squeeze(-1)
    hmat = torch.cat([hcoef, torch.ones(n, 1, device=dev)], 1).view(n, 3, 3)
    lin = torch.linspace(-1, 1, size, device=dev)
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")
    pts = torch.stack([gx, gy, torch.ones_like(gx)], -1).view(1, -1, 3) @ hmat.transpose(1, 2)
    grid = (pts[..., :2] / pts[..., 2:]).view(n, size, size, 2)
    x = F.grid_sample(x, grid, align_corners=False)
    # ColorJitter(hue=0.1, saturation=0.1, p=0.7) (saturation part) and noise
    grey = x.mean(1, keepdim=True)
    sat = 1 + (torch.rand(n, 1, 1, 1, device=dev) * 2 - 1) * 0.1
    x = grey + (x - grey) * sat
    facs = x.new_empty([n, 1, 1, 1]).uniform_(0, 0.1)
    return x + facs * torch.randn_like(x)


def classic_settings(*, tuned: bool) -> None:
    """Global cuDNN/matmul flags: the 2021 tools' (cudnn.benchmark off, PyTorch's default of no TF32 for
    fp32 matmuls) or ours (the engine's runs use these too)."""
    torch.backends.cudnn.benchmark = tuned
    torch.backends.cuda.matmul.allow_tf32 = tuned
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default either way


def classic_steps(vqgan: VQGAN, clip: Clip, target: torch.Tensor, *, width: int, height: int, cutn: int,
                  steps: int, device: torch.device) -> float:
    """Steps per second of the classic loop."""
    clip_half = clip.model.half()
    codebook = vqgan.codebook
    z_min, z_max = codebook_bounds(codebook)
    z = random_latent(codebook, height // 16, width // 16, torch.Generator().manual_seed(0)).clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.1)
    weights, stops = torch.ones(1, 1, device=device), torch.full((1, 1), math.nan, device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        image = clamp_with_grad(vqgan.decode(quantize(z, codebook)).add(1).div(2), 0, 1)
        cuts = classic_cutouts(image, cutn, clip.input_size, 1.0)
        embeds = clip_half.encode_image(clip.normalize(cuts).half()).float()
        loss = prompt_loss(embeds.unsqueeze(0), target.view(1, 1, -1), weights, stops)
        loss.sum().backward()
        opt.step()
        with torch.no_grad():
            z.copy_(z.maximum(z_min).minimum(z_max))

    for _ in range(3):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    rate = steps / (time.perf_counter() - start)
    clip.model.float()
    return rate


# ---------------------------------------------------------------- our engine


def make_batch(vqgan: VQGAN, clip: Clip, target: torch.Tensor, *, jobs: int, width: int, height: int, cutn: int,
               device: torch.device, autocast: torch.dtype | None = None,
               compile_mode: str = "none") -> BatchOptimiser:
    """A batch of ``jobs`` one-prompt jobs (seeds 0, 1, ...) all pulled towards ``target``."""
    batch = BatchOptimiser(vqgan, clip, width=width, height=height, cutn=cutn, device=device, autocast_dtype=autocast,
                           compile_mode=compile_mode)
    targets = Targets(embeds=target.view(1, -1), weights=torch.ones(1, device=device),
                      stops=torch.full((1,), math.nan, device=device))
    for j in range(jobs):
        batch.add(j, JobParams(prompts=(Prompt("x"),), width=width, height=height, cutn=cutn, seed=j), targets)
    return batch


def engine_steps(vqgan: VQGAN, clip: Clip, target: torch.Tensor, *, jobs: int, width: int, height: int, cutn: int,
                 steps: int, device: torch.device, autocast: torch.dtype | None,
                 compile_mode: str = "none") -> tuple[float, list[float]]:
    """Total steps per second (summed over jobs) of our batched optimiser, and the loss trajectory of job 0."""
    batch = make_batch(vqgan, clip, target, jobs=jobs, width=width, height=height, cutn=cutn, device=device,
                       autocast=autocast, compile_mode=compile_mode)
    for _ in range(3):
        batch.step()
    sync(device)
    trajectory = []
    start = time.perf_counter()
    for _ in range(steps):
        trajectory.append(batch.step().losses[0])
    sync(device)
    rate = jobs * steps / (time.perf_counter() - start)
    return rate, [float(x) for x in torch.stack(trajectory).tolist()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU: checks the script runs")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batches", default="1,2,4,8,16")
    parser.add_argument("--sizes", default="512,256")
    parser.add_argument("--cutn", type=int, default=32)
    parser.add_argument("--compile", default="none", choices=["none", "default", "reduce-overhead"],
                        help="torch.compile mode for our engine (the classic loop stays eager)")
    args = parser.parse_args()

    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    vqgan, clip = build_models(device, args.tiny, classic=True)  # the classic loop's, and the fp32 reference
    with torch.no_grad():
        target = clip.encode_text(["a wooden banana temple in an underwater kingdom"])[0]
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    sizes = [64] if args.tiny else [int(s) for s in args.sizes.split(",")]
    batches = [1, 2] if args.tiny else [int(b) for b in args.batches.split(",")]
    autocast = None  # our engine runs bf16 weights on CUDA (see engine.models.pick_precision)
    vqgan_fast, clip_fast = build_models(device, args.tiny)
    if device.type == "cuda":
        vqgan_fast, clip_fast.model = vqgan_fast.to(torch.bfloat16), clip_fast.model.to(torch.bfloat16)
    figures: dict = {"device": name, "cutn": args.cutn, "steps_timed": args.steps, "torch": torch.__version__,
                     "compile": args.compile}
    print(f"device {name}, torch {torch.__version__}, {args.cutn} cutouts, {args.steps} timed steps", flush=True)

    for size in sizes:
        reset_peak(device)
        classic_settings(tuned=False)
        classic = classic_steps(vqgan, clip, target, width=size, height=size, cutn=args.cutn, steps=args.steps, device=device)
        classic_peak = peak_gib(device)
        print(f"{size}x{size} classic loop:     {classic:7.1f} steps/s  {500 / classic:6.1f} s/500 steps  peak {classic_peak:.2f} GiB"
              "  (the 2021 tools' settings: cudnn.benchmark off, fp32 matmuls without TF32)", flush=True)
        classic_settings(tuned=True)
        tuned = classic_steps(vqgan, clip, target, width=size, height=size, cutn=args.cutn, steps=args.steps, device=device)
        print(f"{size}x{size} classic loop, cudnn.benchmark and TF32 on: {tuned:7.1f} steps/s", flush=True)
        figures[f"classic_steps_per_s_{size}"] = round(classic, 2)
        figures[f"classic_tuned_steps_per_s_{size}"] = round(tuned, 2)
        figures[f"classic_peak_gib_{size}"] = round(classic_peak, 2)
        for jobs in batches:
            reset_peak(device)
            rate, _ = engine_steps(vqgan_fast, clip_fast, target, jobs=jobs, width=size, height=size, cutn=args.cutn,
                                   steps=args.steps, device=device, autocast=autocast, compile_mode=args.compile)
            peak = peak_gib(device)
            print(f"{size}x{size} engine, {jobs:2d} job(s): {rate:7.1f} steps/s total  {500 * jobs / rate:6.1f} s for "
                  f"{jobs}x500 steps  peak {peak:.2f} GiB ({peak / jobs:.2f} a job)  {rate / classic:4.1f}x classic "
                  f"({rate / tuned:4.1f}x the tuned classic)", flush=True)
            figures[f"engine_steps_per_s_{size}_b{jobs}"] = round(rate, 2)
            figures[f"engine_peak_gib_{size}_b{jobs}"] = round(peak, 2)

    first = sizes[0]
    # Same computation: fp32 against the fast path, loss trajectories over 100 steps.
    if device.type == "cuda":
        _, fp32 = engine_steps(vqgan, clip, target, jobs=1, width=first, height=first, cutn=args.cutn, steps=100,
                               device=device, autocast=None)
        _, fast = engine_steps(vqgan_fast, clip_fast, target, jobs=1, width=first, height=first, cutn=args.cutn,
                               steps=100, device=device, autocast=None, compile_mode=args.compile)
        gap = max(abs(a - b) for a, b in zip(fp32, fast, strict=False))
        print(f"loss trajectory fp32 eager vs bf16 (compile {args.compile}) over 100 steps: start {fp32[0]:.4f}/{fast[0]:.4f}, "
              f"end {fp32[-1]:.4f}/{fast[-1]:.4f}, largest gap {gap:.4f}")
        figures["fp32_vs_fast_max_loss_gap"] = round(gap, 5)
    figures["steps_per_s"] = figures[f"engine_steps_per_s_{first}_b{batches[0]}"]
    figures["classic_steps_per_s"] = figures[f"classic_steps_per_s_{first}"]
    figures["peak_gib"] = figures[f"engine_peak_gib_{first}_b{batches[0]}"]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""Where a step's time goes, and what each speed lever gives (512x512, 32 cutouts, one job and eight).

    python bench/profile_engine.py [--variants eager_autocast,bf16_weights,...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import build_models, engine_steps  # noqa: E402


def profile(vqgan, clip, target, device, autocast) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    engine_steps(vqgan, clip, target, jobs=1, width=512, height=512, cutn=32, steps=3, device=device, autocast=autocast)
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        engine_steps(vqgan, clip, target, jobs=1, width=512, height=512, cutn=32, steps=5, device=device, autocast=autocast)
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=60))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", default="autocast,bf16_weights,bf16_channels_last,compiled")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    results = {}
    for variant in args.variants.split(","):
        vqgan, clip = build_models(device, tiny=False)
        with torch.no_grad():
            target = clip.encode_text(["a wooden banana temple"])[0]
        autocast: torch.dtype | None = torch.bfloat16
        if variant != "autocast":
            vqgan = vqgan.to(torch.bfloat16)
            clip.model = clip.model.to(torch.bfloat16)
            autocast = None
        if "channels_last" in variant or variant == "compiled":
            vqgan = vqgan.to(memory_format=torch.channels_last)
            clip.model = clip.model.to(memory_format=torch.channels_last)
        if variant == "compiled":
            vqgan.decoder = torch.compile(vqgan.decoder)
            clip.model.visual = torch.compile(clip.model.visual)
        if args.profile and variant in ("autocast", "bf16_weights"):
            print(f"=== profile: {variant}")
            profile(vqgan, clip, target, device, autocast)
        start = time.perf_counter()
        for jobs in (1, 8):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            rate, traj = engine_steps(vqgan, clip, target, jobs=jobs, width=512, height=512, cutn=32,
                                      steps=args.steps, device=device, autocast=autocast)
            peak = torch.cuda.max_memory_allocated() / 2**30
            results[f"{variant}_b{jobs}"] = (round(rate, 1), round(peak / jobs, 2))
            print(f"{variant:20s} {jobs} job(s): {rate:6.1f} steps/s total, {peak / jobs:.2f} GiB a job "
                  f"(setup+timing {time.perf_counter() - start:.0f} s), loss {traj[0]:.4f}->{traj[-1]:.4f}", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()

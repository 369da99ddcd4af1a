"""What each speed lever gives at 512x512 with 32 cutouts (one job and a batch), and a profile.

    python bench/profile_engine.py [--variants bf16,step_default,step_graphs@8] [--batches 1,8] [--profile VARIANT]

A variant may name its own batch sizes after '@', joined by '+': ``step_default_nolayout@1+8``.
A ``_nofused`` suffix turns off engine/fused_norm.py's group norm + SiLU kernels: ``step_graphs_nofused``;
``_plainclip`` keeps open_clip's own image-tower layers (not engine/clip_layers.py's): ``step_graphs_plainclip``;
``_nosubpixel`` runs the upsampling convolutions on the doubled picture (not engine/subpixel.py's way).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch
import torch._functorch.config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import build_models, engine_steps

from engine import compiling, layers

LAYOUT = dict(compiling.INDUCTOR_OPTIONS)  # the engine's default, before the variants below change it
VARIANTS = {
    # name: (weights dtype, autocast dtype, compile mode, channels_last weights, inductor options)
    "autocast": (torch.float32, torch.bfloat16, "none", False, {}),
    "bf16": (torch.bfloat16, None, "none", False, {}),
    "step_default_nolayout": (torch.bfloat16, None, "default", False, {}),
    "step_graphs_nolayout": (torch.bfloat16, None, "reduce-overhead", False, {}),
    "step_default": (torch.bfloat16, None, "default", False, LAYOUT),
    "step_graphs": (torch.bfloat16, None, "reduce-overhead", False, LAYOUT),
    "step_default_cdt": (torch.bfloat16, None, "default", False, {**LAYOUT, "coordinate_descent_tuning": True}),
    "step_graphs_cdt": (torch.bfloat16, None, "reduce-overhead", False, {**LAYOUT, "coordinate_descent_tuning": True}),
    "step_default_cl": (torch.bfloat16, None, "default", True, {}),
    "step_graphs_cl": (torch.bfloat16, None, "reduce-overhead", True, {}),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", default="bf16,step_default,step_graphs")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--dynamic", choices=["auto", "static"], default="auto",
                        help="batch sizes: one graph for 1 job and one for larger batches (the engine's way), "
                             "or one graph per batch size")
    parser.add_argument("--memory-budget", type=float, default=1.0,
                        help="torch._functorch.config.activation_memory_budget: below 1 recomputes activations "
                             "in the backward pass to save memory")
    parser.add_argument("--profile-out", default="", help="write the whole profile table to this file")
    parser.add_argument("--profile", default="", help="variant to profile (3 steps at the largest batch)")
    parser.add_argument("--profile-copies", action="store_true",
                        help="with --profile: also list copies and the costliest operations by tensor shape")
    args = parser.parse_args()
    device = torch.device("cuda")
    compiling.COMPILE_DYNAMIC = {"auto": None, "static": False}[args.dynamic]
    torch._functorch.config.activation_memory_budget = args.memory_budget
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    _vqgan32, clip32 = build_models(device, tiny=False)
    with torch.no_grad():
        target = clip32.encode_text(["a wooden banana temple"])[0]
    results = {}
    size = args.size
    variant_switches = contextlib.ExitStack()
    for spec in args.variants.split(","):
        variant, _, own_batches = spec.partition("@")
        batches = [int(b) for b in (own_batches.replace("+", ",") or args.batches).split(",")]
        base, suffixes = variant, set()
        while any(base.endswith(suffix) for suffix in ("_nosubpixel", "_plainclip", "_nofused")):
            suffix = "_" + base.rsplit("_", 1)[1]
            base, suffixes = base.removesuffix(suffix), suffixes | {suffix}
        dtype, autocast, mode, channels_last, options = VARIANTS[base]
        variant_switches.close()  # the previous variant's
        variant_switches.enter_context(layers.switched(fused_norm_devices=() if "_nofused" in suffixes else ("cuda",),
                                                       subpixel_upsample="_nosubpixel" not in suffixes))
        compiling.INDUCTOR_OPTIONS = dict(options)
        vqgan, clip = build_models(device, tiny=False, classic="_plainclip" in suffixes)
        vqgan, clip.model = vqgan.to(dtype), clip.model.to(dtype)
        if channels_last:
            vqgan = vqgan.to(memory_format=torch.channels_last)
        start = time.perf_counter()
        for jobs in batches:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            first = time.perf_counter()
            rate, traj = engine_steps(vqgan, clip, target, jobs=jobs, width=size, height=size, cutn=32,
                                      steps=args.steps, device=device, autocast=autocast, compile_mode=mode)
            peak = torch.cuda.max_memory_allocated() / 2**30
            results[f"{variant}_b{jobs}"] = {"steps_per_s": round(rate, 1), "gib_per_job": round(peak / jobs, 2),
                                             "seconds_incl_compile": round(time.perf_counter() - first, 1)}
            print(f"{variant:14s} {jobs:2d} job(s): {rate:6.1f} steps/s total, {peak / jobs:.2f} GiB a job, "
                  f"{time.perf_counter() - first:5.0f} s with compile, loss {traj[0]:.4f}->{traj[-1]:.4f}", flush=True)
        if variant == args.profile:
            from torch.profiler import ProfilerActivity, profile

            jobs = max(batches)
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
                         record_shapes=args.profile_copies) as prof:
                engine_steps(vqgan, clip, target, jobs=jobs, width=size, height=size, cutn=32, steps=3,
                             device=device, autocast=autocast, compile_mode=mode)
            print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=40, max_name_column_width=90))
            if args.profile_copies:
                # copies, and every operation that takes more than 0.3 ms of GPU time a step, by tensor shapes
                events = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: -e.device_time_total)
                for event in events:
                    per_step = event.device_time_total / 1e3 / 6  # 3 warm-up and 3 timed steps
                    if event.key.startswith(("aten::", "vqbot::")) and (
                            per_step > 0.3 or event.key in ("aten::copy_", "aten::contiguous")):
                        print(f"{event.key:28s} {event.count / 6:5.1f} calls/step {per_step:7.2f} ms/step "
                              f"shapes {event.input_shapes}")
            if args.profile_out:
                table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=-1, max_name_column_width=160)
                Path(args.profile_out).write_text(table)
        print(f"{variant}: {time.perf_counter() - start:.0f} s in all", flush=True)
    print(json.dumps({"device": torch.cuda.get_device_name(), "size": size, **results}))


if __name__ == "__main__":
    main()

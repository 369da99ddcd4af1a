"""Seconds from process start to a compiled engine's first and tenth step (512x512, 32 cutouts, one job;
``--jobs 2`` for the graph that any batch of two or more jobs uses).

Run it twice with the same TORCHINDUCTOR_CACHE_DIR: the first run is a cold start,
the second a restart that finds the compile cache on disk (what a restarted worker sees).
Random weights (no model files are read), so model loading from disk is not counted.

    VQBOT_T0=$(date +%s.%N) python bench/startup.py --compile reduce-overhead
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

T0 = float(os.environ.get("VQBOT_T0", time.time()))

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import build_models, make_batch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--compile", default="reduce-overhead", choices=["none", "default", "reduce-overhead"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    imported = time.time() - T0
    vqgan, clip = build_models(device, tiny=False)
    vqgan, clip.model = vqgan.to(torch.bfloat16), clip.model.to(torch.bfloat16)
    with torch.no_grad():
        target = clip.encode_text(["a wooden banana temple"])[0]
    built = time.time() - T0
    batch = make_batch(vqgan, clip, target, jobs=args.jobs, width=args.size, height=args.size, cutn=32, device=device,
                       compile_mode=args.compile)
    batch.step()
    torch.cuda.synchronize()
    first = time.time() - T0
    for _ in range(9):
        batch.step()
    torch.cuda.synchronize()
    tenth = time.time() - T0
    figures = {"imported_s": round(imported, 1), "models_built_s": round(built, 1), "first_step_s": round(first, 1),
               "tenth_step_s": round(tenth, 1), "jobs": args.jobs, "compile": args.compile,
               "cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR", "default")}
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()

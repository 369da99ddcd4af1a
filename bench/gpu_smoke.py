"""GPU checks that need no real weights: compiled engine paths from worker threads, and a whole
`vqbot imagine` of the real architectures (random weights written to disk in the real formats).

    python bench/gpu_smoke.py [--skip-imagine]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.runner import Engine, EngineConfig  # noqa: E402
from jobspec import JobParams, parse_prompts  # noqa: E402
from tests.tiny_models import write_tiny_clip, write_tiny_vqgan  # noqa: E402


def pixels(png: bytes) -> torch.Tensor:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return torch.frombuffer(bytearray(image.convert("RGB").tobytes()), dtype=torch.uint8).float()


async def threaded_runs(engine: Engine, jobs: list[tuple[int, JobParams]]) -> list[dict[int, bytes]]:
    """Run the same batch twice, each time from a fresh worker thread, as the worker does."""
    outputs = []
    for _ in range(2):
        outputs.append(await asyncio.to_thread(lambda: {r.key: r.png for r in engine.run(jobs)}))
    return outputs


def check_compiled_paths(folder: Path) -> dict:
    config, checkpoint = write_tiny_vqgan(folder / "vq")
    clip = write_tiny_clip(folder / "clip")
    base = JobParams(prompts=parse_prompts("a lighthouse | fog:-0.5"), width=64, height=64, steps=30, cutn=8,
                     clip_model=f"local-dir:{clip}", clip_pretrained="")
    jobs = [(1, base.with_changes(seed=1)), (2, base.with_changes(seed=2, steps=20))]
    report: dict = {}
    reference = None
    for mode in ("none", "default", "reduce-overhead"):
        engine = Engine(EngineConfig(model_dir=folder, device="cuda", precision="bf16", compile=mode,
                                     vqgan_config=config, vqgan_checkpoint=checkpoint))
        start = time.perf_counter()
        first, second = asyncio.run(threaded_runs(engine, jobs))
        seconds = time.perf_counter() - start
        same_twice = all(torch.equal(pixels(first[k]), pixels(second[k])) for k in first)
        if reference is None:
            reference = first
        diff = max((pixels(first[k]) - pixels(reference[k])).abs().mean().item() for k in first)
        report[mode] = {"seconds": round(seconds, 1), "same_picture_twice": same_twice,
                        "mean_abs_diff_vs_eager_0_255": round(diff, 3)}
        print(f"compile={mode:16s} two threaded batches in {seconds:5.1f} s, same twice: {same_twice}, "
              f"mean |diff| vs eager {diff:.3f}/255", flush=True)
    return report


def write_real_architectures(folder: Path) -> list[str]:
    """Random-weight VQGAN f16 16384 (.yaml + .ckpt) and ViT-B-32 (local-dir:) files."""
    import open_clip
    import yaml
    from safetensors.torch import save_file

    from bench.bench_engine import F16_16384
    from engine.vqgan import VQGAN

    cfg = {"model": {"target": "taming.models.vqgan.VQModel",
                     "params": {"embed_dim": F16_16384.embed_dim, "n_embed": F16_16384.n_embed,
                                "ddconfig": F16_16384.ddconfig}}}
    (folder / "model.yaml").write_text(yaml.safe_dump(cfg))
    torch.manual_seed(0)
    model = VQGAN(F16_16384)
    with torch.no_grad():
        model.codebook.normal_()
    torch.save({"state_dict": model.state_dict(), "epoch": 1}, folder / "last.ckpt")
    clip_dir = folder / "clip"
    clip_dir.mkdir()
    clip_cfg = {"model_cfg": open_clip.get_model_config("ViT-B-32-quickgelu"), "preprocess_cfg": {}}
    (clip_dir / "open_clip_config.json").write_text(json.dumps(clip_cfg))
    clip = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(clip_dir / "open_clip_model.safetensors"))
    return ["--vqgan-config", str(folder / "model.yaml"), "--vqgan-checkpoint", str(folder / "last.ckpt"),
            "--clip", f"local-dir:{clip_dir}", "--clip-pretrained", ""]


def imagine(folder: Path, model_args: list[str], compile_mode: str) -> dict:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "vqbot_cli.main", "imagine",
                          "a wooden banana temple in an underwater kingdom | trending on artstation",
                          "--steps", "500", "--size", "512x512", "--seed", "7", "--out", str(folder / f"{compile_mode}.png"),
                          "--compile", compile_mode, *model_args],
                         cwd=folder, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    seconds = time.perf_counter() - start
    summary = [line for line in out.stderr.splitlines() if line.startswith(("wrote", "vqbot: error"))]
    print(f"vqbot imagine 512x512 500 steps compile={compile_mode}: rc={out.returncode} {seconds:.1f} s wall; "
          f"{summary}", flush=True)
    if out.returncode:
        print(out.stderr[-3000:])
    return {"rc": out.returncode, "wall_s": round(seconds, 1), "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-imagine", action="store_true")
    parser.add_argument("--skip-threads", action="store_true")
    args = parser.parse_args()
    results: dict = {"device": torch.cuda.get_device_name()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.skip_threads:
            results["compiled_paths"] = check_compiled_paths(folder / "tiny")
        if not args.skip_imagine:
            real = folder / "real"
            real.mkdir()
            model_args = write_real_architectures(real)
            results["imagine"] = {mode: imagine(real, model_args, mode) for mode in ("none", "reduce-overhead")}
    print(json.dumps(results))


if __name__ == "__main__":
    main()

"""``vqbot imagine``: one picture on this machine, with a progress bar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobspec import JobParams, Prompt, parse_noise_prompts, parse_prompts
from jobspec.params import parse_size
from vqbot_cli.settings import Settings

# Reading the loss waits for the GPU; every step would stall the pipeline (measured: half the speed).
PROGRESS_EVERY = 10


def add_imagine_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("imagine", help="make one picture locally", description=(
        "Make one picture with VQGAN+CLIP. Prompt syntax: 'a temple | trending on artstation:0.5 | blurry:-1'."))
    p.add_argument("prompt", help="text prompts separated by |, each with optional :weight and :stop")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--size", default="512x512", help="WIDTHxHEIGHT, multiples of 16 (8 for f8 models)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: a random one, printed)")
    p.add_argument("--cutn", type=int, default=32, help="cutouts per step")
    p.add_argument("--cut-pow", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--alpha", type=float, default=0.0, help="weight of the mean(z^2) regulariser")
    p.add_argument("--init-image", type=Path, help="start from this picture instead of random codes")
    p.add_argument("--init-weight", type=float, default=0.0, help="keep the latent near the init image")
    p.add_argument("--image-prompt", action="append", default=[], metavar="FILE[:WEIGHT[:STOP]]",
                   help="a picture to aim for (repeatable)")
    p.add_argument("--noise-prompt", default="", metavar="SEED[:WEIGHT] | ...", help="seeded noise prompts")
    p.add_argument("--model", help="catalogue VQGAN name (see `vqbot models list`)")
    p.add_argument("--vqgan-config", type=Path, help="any taming-format model .yaml (with --vqgan-checkpoint)")
    p.add_argument("--vqgan-checkpoint", type=Path, help="its .ckpt or converted .safetensors")
    p.add_argument("--clip", help="open_clip model name or local-dir:PATH")
    p.add_argument("--clip-pretrained", help="open_clip pretrained tag or weights file ('' for none)")
    p.add_argument("--out", type=Path, default=Path("out.png"))
    p.add_argument("--frames-every", type=int, default=0, help="save a progress frame every N steps")
    p.add_argument("--timelapse", type=Path, help="write an animated .webp or .gif of the frames")
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: auto)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--compile", choices=["none", "default", "reduce-overhead"],
                   help="torch.compile the networks (reduce-overhead: CUDA graphs; about a minute to start)")
    p.add_argument("--deterministic", action="store_true", help="deterministic CUDA kernels (slower)")
    p.set_defaults(func=run_imagine)


def _image_prompt(text: str) -> Prompt:
    (parsed,) = parse_prompts(text) if text.strip() else (Prompt(""),)
    path = Path(parsed.text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"The image prompt {path} does not exist.")
    return Prompt(str(path), parsed.weight, parsed.stop)


def build_params(args: argparse.Namespace, settings: Settings) -> JobParams:
    import random

    width, height = parse_size(args.size)
    if args.init_image is not None and not args.init_image.is_file():
        raise FileNotFoundError(f"The init image {args.init_image} does not exist.")
    if args.timelapse is not None and args.timelapse.suffix.lower() not in (".webp", ".gif"):
        raise ValueError(f"The timelapse must be a .webp or .gif file, not {args.timelapse.name}.")
    if (args.vqgan_config is None) != (args.vqgan_checkpoint is None):
        raise ValueError("--vqgan-config and --vqgan-checkpoint go together; give both.")
    return JobParams(
        prompts=parse_prompts(args.prompt, allow_empty=bool(args.image_prompt or args.noise_prompt)),
        image_prompts=tuple(_image_prompt(t) for t in args.image_prompt),
        noise_prompts=parse_noise_prompts(args.noise_prompt),
        width=width, height=height, steps=args.steps, cutn=args.cutn, cut_pow=args.cut_pow, lr=args.lr,
        alpha=args.alpha, seed=args.seed if args.seed is not None else random.randrange(2**31),
        init_image=str(args.init_image) if args.init_image else None, init_weight=args.init_weight,
        model=args.model or settings.vqgan,
        clip_model=args.clip or settings.clip,
        clip_pretrained=args.clip_pretrained if args.clip_pretrained is not None else settings.clip_pretrained,
    )


def run_imagine(args: argparse.Namespace, settings: Settings) -> int:
    params = build_params(args, settings)
    if args.model and not args.vqgan_config:
        from engine.catalog import get_model

        get_model(args.model)  # unknown names fail before models load
    from tqdm import tqdm

    from engine.images import timelapse_bytes
    from engine.optimiser import Step
    from engine.runner import Engine, EngineConfig, timelapse_frame

    params.validate(multiple_of=8)  # the model's own factor is checked once it is loaded
    engine = Engine(EngineConfig(
        model_dir=settings.model_dir, device=args.device or settings.device,
        precision=args.precision or settings.precision, compile=args.compile or (settings.compile if settings.compile != "auto" else "none"),
        vqgan_config=args.vqgan_config or settings.vqgan_config,
        vqgan_checkpoint=args.vqgan_checkpoint or settings.vqgan_checkpoint,
        deterministic=args.deterministic, fused_kernels=settings.fused_kernels,
    ))
    print(f"seed {params.seed} · {params.width}x{params.height} · {params.steps} steps · "
          f"{engine.device} · loading models…", file=sys.stderr)
    engine.preload(params)
    bar = tqdm(total=params.steps, unit="step", dynamic_ncols=True, file=sys.stderr)

    frames = []

    def on_step(step: Step) -> None:
        done = step.done["imagine"]
        if args.timelapse is not None and args.frames_every and done % args.frames_every == 0:
            frames.append(timelapse_frame(step.pictures()["imagine"]))
        if done % PROGRESS_EVERY == 0:
            bar.update(done - bar.n)
            bar.set_postfix(loss=f"{step.loss('imagine'):.4f}", refresh=False)

    try:
        (result,) = list(engine.run([("imagine", params)], on_step))
    finally:
        bar.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(result.png)
    print(f"wrote {args.out} ({params.width}x{params.height}, seed {params.seed}, loss {result.loss:.4f}, "
          f"{result.steps_done} steps in {result.seconds:.1f} s)", file=sys.stderr)
    if args.timelapse is not None:
        if not frames:
            print("no timelapse: give --frames-every N to collect frames", file=sys.stderr)
        else:
            args.timelapse.write_bytes(timelapse_bytes(frames, fmt=args.timelapse.suffix[1:].lower()))
            print(f"wrote {args.timelapse}", file=sys.stderr)
    return 0

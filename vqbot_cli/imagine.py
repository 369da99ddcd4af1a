"""``vqbot imagine``: one picture on this machine, with a progress bar.

Every argument is checked before the models load (the size against the model's own
factor, the pictures by decoding them, the CLIP by its files), and a picture that was
made is never lost to an output error: it is written somewhere else and the error says where.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from jobspec import JobParams, Prompt, parse_noise_prompts, parse_prompts
from jobspec.params import LIMITS, parse_size
from vqbot_cli.errors import UsageError, shown, visible
from vqbot_cli.outputs import check_output, write_outputs
from vqbot_cli.settings import COMPILE_MODES, PRECISIONS, Settings, check_device

# Reading the loss waits for the GPU; every step would stall the pipeline (measured: half the speed).
PROGRESS_EVERY = 10
PICTURE_SUFFIXES = (".png",)
TIMELAPSE_SUFFIXES = (".webp", ".gif")


def whole_number(name: str, low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in ``LIMITS[name]`` (or [low, high]), refused naming its range."""
    lo = low if low is not None else int(LIMITS[name].low)
    hi = high if high is not None else int(LIMITS[name].high)

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:  # not a number, or more digits than Python converts
            value = lo - 1
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be a whole number from {lo} to {hi}, not {shown(text)}")
        return value

    return parse


def add_imagine_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("imagine", help="make one picture locally", description=(
        "Make one picture with VQGAN+CLIP. Prompt syntax: 'a temple | trending on artstation:0.5 | blurry:-1'."))
    p.add_argument("prompt", help="text prompts separated by |, each with optional :weight and :stop")
    p.add_argument("--steps", type=whole_number("steps"), default=500)
    p.add_argument("--size", default="512x512", help="WIDTHxHEIGHT, multiples of 16 (8 for f8 models)")
    p.add_argument("--seed", type=whole_number("seed"), default=None,
                   help="random seed (default: a random one, printed)")
    p.add_argument("--cutn", type=whole_number("cutn"), default=32, help="cutouts per step")
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
    p.add_argument("--out", type=Path, default=Path("out.png"), help="the picture, a .png file (default: out.png)")
    p.add_argument("--frames-every", type=whole_number("frames_every", 0, int(LIMITS["steps"].high)), default=0,
                   help="save a progress frame every N steps")
    p.add_argument("--timelapse", type=Path, help="write an animated .webp or .gif of the frames")
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: auto)")
    p.add_argument("--precision", choices=PRECISIONS)
    p.add_argument("--compile", choices=[m for m in COMPILE_MODES if m != "auto"],
                   help="torch.compile the networks (reduce-overhead: CUDA graphs; about a minute to start)")
    p.add_argument("--deterministic", action="store_true", help="deterministic CUDA kernels (slower)")
    p.set_defaults(func=run_imagine)


def _text(value: str, what: str) -> str:
    """Refuse text that isn't valid UTF-8 (undecodable argv bytes arrive as lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"The {what} is not valid UTF-8 text: {shown(value)}; write it in UTF-8.") from None
    return value


def _picture_file(path: Path, what: str) -> Path:
    path = path.expanduser()
    if path.is_dir():
        raise UsageError(f"The {what} {shown(path)} is a folder; give a picture file.")
    if not path.is_file():
        raise FileNotFoundError(f"The {what} {visible(str(path))} does not exist.")
    return path


def _image_prompt(text: str) -> Prompt:
    if not text.strip():
        raise UsageError("An --image-prompt needs a picture file: FILE[:WEIGHT[:STOP]].")
    parsed = parse_prompts(text)
    if len(parsed) != 1:
        raise UsageError("An --image-prompt is one picture file with its weight; repeat --image-prompt for more.")
    return Prompt(str(_picture_file(Path(parsed[0].text), "image prompt")), parsed[0].weight, parsed[0].stop)


def _model_factor(args: argparse.Namespace, settings: Settings, config: Path | None) -> int:
    """The chosen VQGAN's downsampling factor, from the catalogue or its config file (no torch)."""
    from engine.catalog import get_model
    from engine.model_files import FileCheckError, check_config_file, config_factor

    if config is None:
        return get_model(args.model or settings.vqgan).factor  # unknown names fail here, listing the valid ones
    try:
        return config_factor(check_config_file(config)) or 16
    except FileCheckError as exc:
        raise UsageError(f"VQGAN config: {exc}.") from None


def vqgan_files(args: argparse.Namespace, settings: Settings) -> tuple[Path | None, Path | None]:
    """The explicit VQGAN files, both or neither, existing: the flags, else VQBOT_VQGAN_CONFIG/CHECKPOINT
    unless --model names a catalogue model."""
    if (args.vqgan_config is None) != (args.vqgan_checkpoint is None):
        raise UsageError("--vqgan-config and --vqgan-checkpoint go together; give both.")
    if args.model and args.vqgan_config:
        raise UsageError("Give either --model or --vqgan-config with --vqgan-checkpoint, not both.")
    from_settings = args.model is None
    config = args.vqgan_config or (settings.vqgan_config if from_settings else None)
    checkpoint = args.vqgan_checkpoint or (settings.vqgan_checkpoint if from_settings else None)
    for flag, path in (("--vqgan-config", config), ("--vqgan-checkpoint", checkpoint)):
        if path is not None and not path.is_file():
            state = "is a folder" if path.is_dir() else "does not exist"
            raise UsageError(f"{flag} {shown(path)} {state}; give the model's file.")
    return config, checkpoint


def build_params(args: argparse.Namespace, settings: Settings) -> JobParams:
    """The job the arguments describe, fully checked (raises UsageError, ParamError or PromptError)."""
    import random

    prompt = _text(args.prompt, "prompt")
    noise = _text(args.noise_prompt, "noise prompt")
    width, height = parse_size(args.size)
    for name, value in (("width", width), ("height", height)):  # before JobParams: its message can't print a huge int
        low, high = int(LIMITS[name].low), int(LIMITS[name].high)
        if not low <= value <= high:
            raise UsageError(f"The {name} must be from {low} to {high} pixels, not {shown(value)}.")
    if args.init_image is not None:
        args.init_image = _picture_file(args.init_image, "init image")
    config, _checkpoint = vqgan_files(args, settings)
    clip = (args.clip or settings.clip).strip()
    pretrained = args.clip_pretrained if args.clip_pretrained is not None else settings.clip_pretrained
    if clip.startswith("local-dir:"):
        if args.clip_pretrained:
            raise UsageError("--clip-pretrained does not apply to a local-dir: CLIP; its folder holds the weights.")
        pretrained = ""
    params = JobParams(
        prompts=parse_prompts(prompt, allow_empty=bool(args.image_prompt or noise.strip())),
        image_prompts=tuple(_image_prompt(t) for t in args.image_prompt),
        noise_prompts=parse_noise_prompts(noise),
        width=width, height=height, steps=args.steps, cutn=args.cutn, cut_pow=args.cut_pow, lr=args.lr,
        alpha=args.alpha, seed=args.seed if args.seed is not None else random.randrange(2**31),
        init_image=str(args.init_image) if args.init_image else None, init_weight=args.init_weight,
        model=args.model or settings.vqgan,
        clip_model=clip,
        clip_pretrained=pretrained,
    )
    seed_range = LIMITS["seed"]
    for noise_prompt in params.noise_prompts:
        if not seed_range.low <= noise_prompt.seed <= seed_range.high:
            raise UsageError(f"A noise prompt's seed must be a whole number from 0 to {int(seed_range.high)}, "
                             f"not {shown(noise_prompt.seed)}.")
    return params.validate(multiple_of=_model_factor(args, settings, config))


def check_files(params: JobParams, checkpoint: Path | None, model_dir: Path) -> None:
    """The files the job reads, checked without torch: pictures decode, the VQGAN is there (a checkpoint
    that is one, or a downloaded catalogue model), a local CLIP has its weights."""
    from engine.catalog import downloaded_files
    from engine.images import read_picture
    from engine.model_files import FileCheckError, check_checkpoint_file, local_clip_files

    for prompt in params.image_prompts:
        read_picture(prompt.text, what="image prompt")
    if params.init_image:
        read_picture(params.init_image, what="init image")
    try:
        if checkpoint is None:
            downloaded_files(params.model, model_dir)  # not downloaded: says the command that fetches it
        elif checkpoint.suffix != ".safetensors":
            check_checkpoint_file(checkpoint)
    except FileCheckError as exc:
        raise UsageError(f"VQGAN checkpoint: {exc}.") from None
    try:
        if params.clip_model.startswith("local-dir:"):
            local_clip_files(Path(params.clip_model.removeprefix("local-dir:")))
    except FileCheckError as exc:
        raise UsageError(f"{exc}.") from None


def run_imagine(args: argparse.Namespace, settings: Settings) -> int:
    device = check_device(args.device, what="--device") if args.device is not None else settings.device
    params = build_params(args, settings)
    check_output(args.out, PICTURE_SUFFIXES, what="--out")
    if args.timelapse is not None:
        check_output(args.timelapse, TIMELAPSE_SUFFIXES, what="--timelapse")
        if args.timelapse.expanduser().resolve() == args.out.expanduser().resolve():
            raise UsageError("--timelapse and --out name the same file; give them different names.")
    vqgan_config, vqgan_checkpoint = vqgan_files(args, settings)
    check_files(params, vqgan_checkpoint, settings.model_dir)
    from tqdm import tqdm

    from engine.clip import clip_source
    from engine.images import timelapse_bytes
    from engine.optimiser import Step
    from engine.runner import Engine, EngineConfig, timelapse_frame

    clip_source(params.clip_model, params.clip_pretrained)  # a named CLIP has a tag or weights file
    engine = Engine(EngineConfig(
        model_dir=settings.model_dir, device=device,
        precision=args.precision or settings.precision, compile=args.compile or (settings.compile if settings.compile != "auto" else "none"),
        vqgan_config=vqgan_config,
        vqgan_checkpoint=vqgan_checkpoint,
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
        if done % PROGRESS_EVERY == 0 or done >= params.steps:  # the last step too: the bar ends at 100%
            bar.update(done - bar.n)
            bar.set_postfix(loss=f"{step.loss('imagine'):.4f}", refresh=False)

    try:
        (result,) = list(engine.run([("imagine", params)], on_step))
    finally:
        bar.close()
    outputs = [(args.out, result.png)]
    if args.timelapse is not None and frames:
        outputs.append((args.timelapse, timelapse_bytes(frames, fmt=args.timelapse.suffix[1:].lower())))
    write_outputs(outputs, seed=params.seed)  # raises OutputError naming where a picture went instead
    print(f"wrote {visible(str(args.out))} ({params.width}x{params.height}, seed {params.seed}, loss {result.loss:.4f}, "
          f"{result.steps_done} steps in {result.seconds:.1f} s)", file=sys.stderr)
    if args.timelapse is not None:
        if not frames:
            print("no timelapse: give --frames-every N to collect frames", file=sys.stderr)
        else:
            print(f"wrote {visible(str(args.timelapse))}", file=sys.stderr)
    return 0

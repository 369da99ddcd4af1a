"""``vqbot models list | download NAME | convert CKPT``."""

from __future__ import annotations

import argparse
from pathlib import Path

from vqbot_cli.settings import Settings


def add_models_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list, download and convert VQGAN models")
    sub = p.add_subparsers(dest="models_command", required=True)
    sub.add_parser("list", help="the known models and what is on disk").set_defaults(func=run_list)
    d = sub.add_parser("download", help="download a catalogue model (resumable, verified)")
    d.add_argument("name", help="catalogue name, e.g. vqgan_imagenet_f16_16384")
    d.add_argument("--model-dir", type=Path, help="where models live (default: $VQBOT_MODEL_DIR)")
    d.set_defaults(func=run_download)
    c = sub.add_parser("convert", help="strip a .ckpt to the inference weights, as .safetensors")
    c.add_argument("checkpoint", type=Path)
    c.add_argument("--out", type=Path, help="destination (default: beside it, .safetensors)")
    c.add_argument("--trust-pickle", action="store_true",
                   help="allow unpickling the checkpoint's Python objects (only for files you trust)")
    c.set_defaults(func=run_convert)
    for parser in (p, sub.choices["list"]):
        parser.add_argument("--model-dir", type=Path, help="where models live (default: $VQBOT_MODEL_DIR)")


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    from engine.catalog import all_model_status
    from vqbot_cli.model_plan import gigabytes

    model_dir = args.model_dir or settings.model_dir
    print(f"models in {model_dir}")
    for status in all_model_status(model_dir):
        spec = status.model
        default = " (default)" if spec.name == settings.vqgan else ""
        size = sum(f.display_size or 0 for f in (spec.config, spec.checkpoint))
        state = "ready" if status.ready else "not downloaded"
        print(f"  {spec.name:<28} f{spec.factor:<3} {spec.codebook_size:>6} codes  {gigabytes(size):>7}  "
              f"{state}{default}")
    print("download one with: vqbot models download NAME")
    return 0


def run_download(args: argparse.Namespace, settings: Settings) -> int:
    from engine.download import download_model

    paths = download_model(args.name, args.model_dir or settings.model_dir, progress=True)
    print(f"{args.name} is ready in {paths.checkpoint.parent}")
    return 0


def run_convert(args: argparse.Namespace, settings: Settings) -> int:
    from engine.convert import convert_checkpoint

    out = args.out or args.checkpoint.with_suffix(".safetensors")
    convert_checkpoint(args.checkpoint, out, trust_pickle=args.trust_pickle,
                       on_report=lambda r: print(f"kept {r.kept} tensors ({r.parameters:,} parameters); "
                                                 f"dropped {dict(r.dropped) or 'nothing'}"))
    print(f"wrote {out}")
    return 0

"""Hostile input to the ``vqbot`` command: arguments of ``vqbot imagine``, settings in the environment and in ``.env``.

Each case has its expected answer: accepted (a picture is written), or refused with one
``vqbot: error:`` line (exit status 2) that holds the given words. Never a traceback, never a
hang (each process has a time limit), never a raw control character on the terminal.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from tests.cli.vqbot_process import error_line, vqbot

ACCEPTED = None
FAST = ("--steps", "1", "--size", "32x32", "--cutn", "1", "--seed", "5")  # 16x16: 1 latent cell, too few to normalise


@dataclass(frozen=True)
class Case:
    args: tuple[str | bytes, ...]  # after `vqbot`; "{tiny}" stands for the tiny models' arguments
    refused: str | None  # words of the one error line, or ACCEPTED
    env: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, bytes | None] = field(default_factory=dict)  # made in the folder first (None: a folder)
    permissions_apply: bool = False  # file modes bind even when the tests run as root


def imagine(*args: str | bytes, prompt: str | bytes = "a lighthouse") -> tuple[str | bytes, ...]:
    return ("imagine", prompt, *FAST, "{tiny}", *args)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` (a decompression bomb's first bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def small_png() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), (10, 200, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


CLIP_CONFIG_ONLY = {"emptyclip": None, "emptyclip/open_clip_config.json": b"{}"}

CASES: dict[str, Case] = {
    # --- numbers of `vqbot imagine`
    "seed beyond float range": Case(imagine("--seed", "9" * 400), "--seed: must be a whole number from 0 to"),
    "negative seed": Case(imagine("--seed", "-1"), "--seed: must be a whole number from 0 to"),
    "seed in exponent form": Case(imagine("--seed", "1e5"), "--seed: must be a whole number"),
    "steps beyond float range": Case(imagine("--steps", "9" * 5000), "--steps: must be a whole number from 1 to 5000"),
    "zero steps": Case(imagine("--steps", "0"), "--steps: must be a whole number from 1 to 5000"),
    "a million cutouts": Case(imagine("--cutn", "1000000"), "--cutn: must be a whole number from 1 to 256"),
    "learning rate nan": Case(imagine("--lr", "nan"), "lr must be a finite number"),
    "cut power overflowing to inf": Case(imagine("--cut-pow", "1e999"), "cut_pow must be a finite number"),
    "negative alpha": Case(imagine("--alpha", "-1"), "alpha must be between 0 and 100"),
    "not a number": Case(imagine("--init-weight", "lots"), "argument --init-weight: invalid float value"),
    "negative frame interval": Case(imagine("--frames-every", "-1"), "--frames-every: must be a whole number from 0"),
    "size beyond float range": Case(imagine("--size", "9" * 400 + "x16"), "The width must be from 16 to 2048"),
    "size zero": Case(imagine("--size", "0x0"), "The width must be from 16 to 2048 pixels, not “0”"),
    "size with three sides": Case(imagine("--size", "64x64x64"), "is not WIDTHxHEIGHT"),
    "size off the model's grid": Case(imagine("--size", "24x24"), "must be a multiple of 16"),
    # --- noise prompts
    "noise seed beyond torch's range": Case(imagine("--noise-prompt", "99999999999999999999999"), "noise prompt's seed"),
    "negative noise seed": Case(imagine("--noise-prompt=-5:0.5"), "noise prompt's seed must be a whole number"),
    "negative noise seed read as an option": Case(imagine("--noise-prompt", "-5:0.5"), "expected one argument"),
    "noise seed that is words": Case(imagine("--noise-prompt", "abc"), "starts with a whole-number seed"),
    "noise weight zero": Case(imagine("--noise-prompt", "3:0"), "must be non-zero"),
    # --- prompts
    "escape sequence in a refused prompt": Case(imagine(prompt="\x1b]0;owned\x07\x1b[2Jcat:0"), "\\x1b]0;owned\\x07"),
    "bidi override in a refused prompt": Case(imagine(prompt="\u202ecat:0"), "\\u202ecat"),
    "prompt that is not UTF-8": Case(imagine(prompt=b"caf\xe9 au lait"), "not valid UTF-8"),
    "prompt of 5000 characters": Case(imagine(prompt="a" * 5000), "keep it under 2000"),
    "seventeen prompts": Case(imagine(prompt="|".join("abcdefghijklmnopq")), "use at most 16"),
    "weight without text": Case(imagine(prompt=":0.5"), "has a weight but no text"),
    "weight nan": Case(imagine(prompt="cat:nan"), "finite number"),
    "huge weight": Case(imagine(prompt="cat:1e308"), "too large"),
    "only separators": Case(imagine(prompt=" | | "), "The prompt is empty"),
    # --- files of `vqbot imagine`
    "a file name too long for the system": Case(imagine("--out", "a" * 300 + ".png"), "File name too long"),
    "an init image name too long": Case(imagine("--init-image", "b" * 300 + ".png"), "File name too long"),
    "a settings file name too long": Case(("--env-file", "c" * 300, "models", "list"), "File name too long"),
    "out is a folder": Case(imagine("--out", "pictures"), "is a folder", files={"pictures": None}),
    "out is not a png": Case(imagine("--out", "pic.jpg"), "--out must be a .png file, not “pic.jpg”"),
    "out is a named pipe": Case(imagine("--out", "pipe.png"), "exists and is not a regular file",
                                files={"pipe.png": b"fifo"}),
    "out under a file": Case(imagine("--out", "notes.txt/pic.png"), "is not a folder", files={"notes.txt": b"x"}),
    "out in a read-only folder": Case(imagine("--out", "locked/pic.png"), "refuses new files",
                                      files={"locked": None}, permissions_apply=True),
    "timelapse of another format": Case(imagine("--timelapse", "lapse.mp4"), "must be a .webp or .gif file"),
    "init image is a folder": Case(imagine("--init-image", "pictures"), "is a folder", files={"pictures": None}),
    "init image is text": Case(imagine("--init-image", "notes.png"), "is not a picture that can be read",
                               files={"notes.png": b"not a picture\n"}),
    "init image claims 100000x100000 pixels": Case(imagine("--init-image", "bomb.png"), "too large to decode safely",
                                                   files={"bomb.png": png_claiming(100_000, 100_000)}),
    "empty image prompt": Case(imagine("--image-prompt", ""), "needs a picture file"),
    "two pictures in one image prompt": Case(imagine("--image-prompt", "a.png|b.png"), "repeat --image-prompt"),
    "image prompt that is missing": Case(imagine("--image-prompt", "gone.png:0.5"), "does not exist"),
    # --- models of `vqbot imagine`
    "unknown catalogue model": Case(("imagine", "cat", "--model", "vqgan_nope"), "valid names are"),
    "config without checkpoint": Case(("imagine", "cat", "--vqgan-config", "m.yaml"), "go together",
                                      files={"m.yaml": b"model: {}"}),
    "model and files at once": Case(imagine("--model", "wikiart_16384"), "either --model or --vqgan-config"),
    "a config that is no model config": Case(("imagine", "cat", *FAST, "--vqgan-config", "m.yaml",
                                              "--vqgan-checkpoint", "m.ckpt"), "m.yaml is not a taming model config",
                                             files={"m.yaml": b"model: [1, 2]", "m.ckpt": b"x"}),
    "a text file as the checkpoint": Case(("imagine", "cat", *FAST, "--vqgan-config", "{tiny_config}",
                                           "--vqgan-checkpoint", "notes.ckpt", "--clip", "{tiny_clip}"),
                                          "VQGAN checkpoint: notes.ckpt is not a PyTorch checkpoint",
                                          files={"notes.ckpt": b"weights\n"}),
    "clip folder without weights": Case(imagine("--clip", "local-dir:emptyclip"), "has no weights; put",
                                        files=CLIP_CONFIG_ONLY),
    "clip folder that is missing": Case(imagine("--clip", "local-dir:nowhere"), "does not exist"),
    "named clip without weights": Case(imagine("--clip", "ViT-B-32-quickgelu", "--clip-pretrained", ""),
                                       "needs weights"),
    "unknown clip": Case(imagine("--clip", "ViT-Z-99"), "Unknown CLIP model"),
    "tag for a clip folder": Case(imagine("--clip-pretrained", "openai"), "does not apply to a local-dir"),
    "device gpu0": Case(imagine("--device", "gpu0"), "--device must be auto, cpu, cuda, cuda:N"),
    "precision fp8": Case(imagine("--precision", "fp8"), "invalid choice: 'fp8'"),
    "unknown option": Case(imagine("--turbo"), "unrecognized arguments: --turbo"),
    # --- settings in the environment
    "VQBOT_DEVICE=gpu": Case(imagine(), "VQBOT_DEVICE must be auto, cpu", env={"VQBOT_DEVICE": "gpu"}),
    "VQBOT_DEVICE with an escape sequence": Case(imagine(), "not “\\x1b[2J”", env={"VQBOT_DEVICE": "\x1b[2J"}),
    "VQBOT_LOG_LEVEL=verbose": Case(("models", "list"), "VQBOT_LOG_LEVEL must be one of DEBUG",
                                    env={"VQBOT_LOG_LEVEL": "verbose"}),
    "VQBOT_PRECISION=fp8": Case(imagine(), "VQBOT_PRECISION must be one of", env={"VQBOT_PRECISION": "fp8"}),
    "VQBOT_COMPILE=max": Case(imagine(), "VQBOT_COMPILE must be one of", env={"VQBOT_COMPILE": "max"}),
    "VQBOT_FUSED_KERNELS=maybe": Case(imagine(), "VQBOT_FUSED_KERNELS must be 1 or 0",
                                      env={"VQBOT_FUSED_KERNELS": "maybe"}),
    "VQBOT_VQGAN unknown": Case(("models", "list"), "VQBOT_VQGAN: Unknown VQGAN model", env={"VQBOT_VQGAN": "x"}),
    "VQBOT_VQGAN_CONFIG alone": Case(("models", "list"), "go together", env={"VQBOT_VQGAN_CONFIG": "m.yaml"}),
    "VQBOT_LEASE_S too short": Case(("worker",), "VQBOT_LEASE_S must be a number from 15 to 3600",
                                    env={"VQBOT_LEASE_S": "5"}),
    "VQBOT_LEASE_S infinite": Case(("worker",), "VQBOT_LEASE_S must be a number", env={"VQBOT_LEASE_S": "1e999"}),
    "VQBOT_MAX_BATCH too big": Case(("worker",), "VQBOT_MAX_BATCH must be a whole number from 1 to 64",
                                    env={"VQBOT_MAX_BATCH": "999"}),
    "VQBOT_WORKER_NAME with a newline": Case(("worker",), "VQBOT_WORKER_NAME must be printable",
                                             env={"VQBOT_WORKER_NAME": "gpu1\nFAKE LOG LINE"}),
    "VQBOT_DATABASE is a folder": Case(("worker",), "is a folder", env={"VQBOT_DATABASE": "."}),
    # --- the settings file
    "missing --env-file": Case(("--env-file", "prod.env", "models", "list"), "“prod.env” does not exist"),
    "empty --env-file": Case(("--env-file", "", "models", "list"), "--env-file needs a file name"),
    "a folder as --env-file": Case(("--env-file", ".", "models", "list"), "is not a file"),
    ".env that is not UTF-8": Case(("models", "list"), "is not UTF-8 text (line 2)",
                                   files={".env": b"VQBOT_LOG_LEVEL=INFO\nVQBOT_CLIP=caf\xe9\n"}),
    ".env with a line that is no setting": Case(("models", "list"), "Line 2 of the settings file",
                                                files={".env": b"VQBOT_LOG_LEVEL=INFO\nrm -rf /\n"}),
    ".env with a NUL character": Case(("models", "list"), "has a NUL character",
                                      files={".env": b"VQBOT_DEVICE=cp\0u\n"}),
    ".env of 2 MiB": Case(("models", "list"), "is over 1 MiB", files={".env": b"# " + b"x" * (2 << 20) + b"\n"}),
    ".env with a bad value": Case(("models", "list"), "VQBOT_DEVICE must be", files={".env": b"VQBOT_DEVICE=gpu\n"}),
    # --- accepted
    ".env with export, quotes and a byte-order mark": Case(
        ("models", "list"), ACCEPTED,
        files={".env": "\ufeffexport VQBOT_LOG_LEVEL='debug'\nVQBOT_DEVICE=\"CPU\"  # the CPU\n\n".encode()}),
    "a prompt in several scripts with emoji": Case(imagine("--out", "my pictures/夜 1.png",
                                                           prompt="東京の夜景 🌃 | café:0.5 | Ωμέγα:-0.5"), ACCEPTED),
    "the largest seed, an escape in the prompt": Case(imagine("--seed", str(2**63 - 1), "--out", "max.png",
                                                              prompt="\x1b[31mred\x1b[0m barn"), ACCEPTED),
    "a noise prompt alone": Case(("imagine", "", *FAST, "{tiny}", "--noise-prompt", "7:0.5 | 8", "--out", "n.png"),
                                 ACCEPTED),
}


def make_files(folder: Path, files: Mapping[str, bytes | None]) -> None:
    for name, content in files.items():
        path = folder / name
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
        elif content == b"fifo":
            os.mkfifo(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 35 and sum(c.refused is ACCEPTED for c in CASES.values()) >= 3


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_hostile_input_is_accepted_or_refused_in_one_sentence(case: Case, tiny: list[str], tmp_path: Path) -> None:
    make_files(tmp_path, case.files)
    stand_ins = {"{tiny}": tiny, "{tiny_config}": [tiny[1]], "{tiny_clip}": [tiny[5]]}
    args = [a for arg in case.args for a in (stand_ins.get(arg, [arg]) if isinstance(arg, str) else [arg])]
    if case.permissions_apply:
        (tmp_path / "locked").chmod(0o555)
    try:
        result = vqbot(*args, cwd=tmp_path, env=dict(case.env), permissions_apply=case.permissions_apply)
    finally:
        if case.permissions_apply:
            (tmp_path / "locked").chmod(0o755)
    if case.refused is ACCEPTED:
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr and "vqbot: error" not in result.stderr
        if args[0] == "imagine":
            out = tmp_path / str(args[args.index("--out") + 1])
            with Image.open(out) as picture:
                assert picture.size == (32, 32)
                assert json.loads(picture.text["vqbot"])["prompt"] == args[1]  # type: ignore[attr-defined]
    else:
        line = error_line(result)
        assert case.refused in line, line

"""`vqbot imagine` end to end with tiny models, as a user runs it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from tests.cli.vqbot_process import error_line, vqbot
from tests.tiny_models import write_tiny_clip, write_tiny_vqgan


def test_imagine_writes_a_png_of_the_asked_size_with_its_parameters(tiny: list[str], tmp_path: Path) -> None:
    result = vqbot("imagine", "a wooden banana temple | trending on artstation:0.5", "--steps", "12",
                   "--size", "64x32", "--seed", "42", "--cutn", "4", "--out", "pic.png",
                   "--frames-every", "4", "--timelapse", "lapse.gif", "--lr", "1.0", *tiny, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "pic.png") as image:
        assert image.size == (64, 32)
        meta = json.loads(image.text["vqbot"])  # type: ignore[attr-defined]
    assert meta["prompt"] == "a wooden banana temple | trending on artstation:0.5"
    assert meta["seed"] == 42 and meta["steps"] == 12 and meta["cutn"] == 4 and meta["width"] == 64
    with Image.open(tmp_path / "lapse.gif") as lapse:
        assert lapse.n_frames == 3  # type: ignore[attr-defined]
    assert "step" in result.stderr and "wrote pic.png" in result.stderr  # the progress bar and summary
    assert "100%" in result.stderr and "12/12" in result.stderr  # the bar ends full, 12 not being a multiple of 10


def test_the_same_seed_makes_the_same_file(tiny: list[str], tmp_path: Path) -> None:
    args = ("imagine", "a red barn", "--steps", "5", "--size", "32x32", "--cutn", "4", "--seed", "3", *tiny)
    assert vqbot(*args, "--out", "a.png", cwd=tmp_path).returncode == 0
    assert vqbot(*args, "--out", "b.png", cwd=tmp_path).returncode == 0
    a, b = (Image.open(io.BytesIO((tmp_path / n).read_bytes())) for n in ("a.png", "b.png"))
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize(
    "args, message",
    [
        (["", "--size", "64x64"], "The prompt is empty"),
        (["| |", "--size", "64x64"], "The prompt is empty"),
        (["cat:nan", "--size", "64x64"], "finite number"),
        (["cat", "--size", "100x100"], "multiple of"),
        (["cat", "--size", "huge"], "not WIDTHxHEIGHT"),
        (["cat", "--size", "64x64", "--steps", "-5"], "--steps: must be a whole number from 1 to 5000"),
        (["cat", "--size", "64x64", "--init-image", "missing.png"], "does not exist"),
        (["cat", "--size", "64x64", "--init-image", "notes.png"], "not a picture"),
        (["cat", "--size", "64x64", "--image-prompt", "missing.png"], "does not exist"),
        (["cat", "--size", "64x64", "--timelapse", "x.mp4"], ".webp or .gif"),
        (["cat", "--size", "40x40"], "multiple of 16"),  # the model's own factor, known before it loads
        (["cat", "--size", "64x64", "--seed", "9" * 400], "--seed: must be a whole number from 0 to"),
        (["cat", "--size", "64x64", "--steps", "9" * 400], "--steps: must be a whole number from 1 to 5000"),
        (["cat", "--size", "64x64", "--noise-prompt", "99999999999999999999999:0.5"], "noise prompt's seed"),
        (["cat", "--size", "64x64", "--out", "pictures"], "is a folder"),
        ([b"cat \xff", "--size", "64x64"], "not valid UTF-8"),  # argv bytes that aren't UTF-8
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(tiny: list[str], tmp_path: Path, args: list[str | bytes],
                                                   message: str) -> None:
    (tmp_path / "notes.png").write_text("not really a picture")
    (tmp_path / "pictures").mkdir()
    steps = [] if "--steps" in args else ["--steps", "2"]
    assert message in error_line(vqbot("imagine", *args, *steps, *tiny, cwd=tmp_path))


def test_unknown_models_and_missing_weights_say_what_to_do(tmp_path: Path) -> None:
    unknown = vqbot("imagine", "cat", "--model", "vqgan_nope", cwd=tmp_path)
    assert "valid names are: vqgan_imagenet_f16_16384" in error_line(unknown)
    missing = vqbot("imagine", "cat", "--model", "wikiart_16384", cwd=tmp_path)  # said before torch is imported
    assert "fetch it with: vqbot models download wikiart_16384" in error_line(missing)


def test_models_list_shows_the_catalogue_and_the_default(tmp_path: Path) -> None:
    result = vqbot("models", "list", cwd=tmp_path)
    assert result.returncode == 0
    assert "vqgan_imagenet_f16_16384" in result.stdout and "(default)" in result.stdout
    assert "vqgan_gumbel_f8_8192" in result.stdout and "not downloaded" in result.stdout


def test_models_convert_refuses_pickle_without_trust_and_then_converts(tmp_path: Path) -> None:
    import torch

    config, checkpoint = write_tiny_vqgan(tmp_path / "m")
    data = torch.load(checkpoint, weights_only=True)
    data["hyper_parameters"] = {"callbacks": Path("x")}  # a pickled object, as Lightning checkpoints have
    torch.save(data, checkpoint)
    refused = vqbot("models", "convert", str(checkpoint), cwd=tmp_path)
    assert refused.returncode == 2 and "--trust-pickle" in refused.stderr
    converted = vqbot("models", "convert", str(checkpoint), "--trust-pickle", cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr
    out = checkpoint.with_suffix(".safetensors")
    assert out.is_file() and "dropped" in converted.stdout
    made = vqbot("imagine", "cat", "--steps", "2", "--size", "32x32", "--cutn", "2", "--vqgan-config", str(config),
                 "--vqgan-checkpoint", str(out), "--clip", f"local-dir:{write_tiny_clip(tmp_path / 'c')}",
                 "--out", "x.png", cwd=tmp_path)
    assert made.returncode == 0, made.stderr


def test_the_published_png_names_the_files_used_and_holds_no_host_path(tiny: list[str], tmp_path: Path) -> None:
    from engine.catalog import file_sha256

    private = tmp_path / "home" / "alice" / "pictures"
    private.mkdir(parents=True)
    Image.new("RGB", (48, 48), (250, 120, 0)).save(private / "start.png")
    Image.new("RGB", (48, 48), (0, 90, 250)).save(private / "aim.png")
    result = vqbot("imagine", "a lighthouse", "--steps", "2", "--size", "32x32", "--cutn", "2", "--seed", "9",
                   "--init-image", str(private / "start.png"), "--image-prompt", f"{private / 'aim.png'}:0.5",
                   "--out", "pic.png", *tiny, cwd=tmp_path, env={"VQBOT_VQGAN": "wikiart_16384"})
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "pic.png") as image:
        chunks = dict(image.text)  # type: ignore[attr-defined]
    model_dirs = {str(Path(tiny[1]).parent), tiny[5].removeprefix("local-dir:")}
    for key, value in chunks.items():  # every text chunk, not only the JSON
        assert not any(path in value for path in {str(tmp_path), str(private), *model_dirs}), (key, value)
    meta = json.loads(chunks["vqbot"])
    assert meta["model"] == "last.ckpt" != "wikiart_16384"  # the files it used, not the name in the settings
    assert meta["model_files"]["checkpoint"] == {"file": "last.ckpt", "sha256": file_sha256(Path(tiny[3]))}
    assert meta["clip_model"] == "local-dir" and meta["clip_pretrained"] is None  # not the default "openai" tag
    assert meta["init_image"] == {"file": "start.png", "sha256": file_sha256(private / "start.png")}
    assert meta["image_prompts"][0]["file"] == "aim.png" and meta["image_prompts"][0]["weight"] == 0.5


def test_a_made_picture_is_kept_when_its_folder_goes_away_during_the_run(tiny: list[str], tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    from tests.cli.vqbot_process import clean_env

    (tmp_path / "tmp").mkdir()
    (tmp_path / "sub").mkdir()
    child = subprocess.Popen(
        [sys.executable, "-m", "vqbot_cli.main", "imagine", "a lighthouse", "--steps", "5", "--size", "32x32",
         "--cutn", "2", "--seed", "7", "--out", "sub/pic.png", *tiny],
        cwd=tmp_path, env=clean_env(tmp_path, {"TMPDIR": str(tmp_path / "tmp")}), stderr=subprocess.PIPE, text=True,
    )
    assert child.stderr is not None
    lines = []
    for line in child.stderr:  # the arguments were accepted: now take the output folder away
        lines.append(line)
        if "loading models" in line:
            shutil.rmtree(tmp_path / "sub")
            (tmp_path / "sub").write_text("a file where the folder was")
            break
    lines += child.stderr.readlines()
    assert child.wait(timeout=300) == 1, "".join(lines)
    assert "Traceback" not in "".join(lines)
    (error,) = [line for line in lines if line.startswith("vqbot: error:")]
    (kept,) = (tmp_path / "tmp").glob("vqbot-7-*.png")
    assert f"Could not write sub/pic.png (Not a directory); it is saved as {kept} instead." in error
    with Image.open(kept) as image:
        assert image.size == (32, 32) and json.loads(image.text["vqbot"])["seed"] == 7  # type: ignore[attr-defined]

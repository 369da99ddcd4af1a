"""`vqbot imagine` end to end with tiny models, as a user runs it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.tiny_models import write_tiny_clip, write_tiny_vqgan

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("cli-models")
    config, checkpoint = write_tiny_vqgan(root / "vqgan")
    clip = write_tiny_clip(root / "clip")
    return ["--vqgan-config", str(config), "--vqgan-checkpoint", str(checkpoint),
            "--clip", f"local-dir:{clip}", "--clip-pretrained", ""]


def vqbot(*args: str, cwd: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "VQBOT_MODEL_DIR": str(cwd / "models"), "PYTHONPATH": str(REPO)}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "vqbot_cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_imagine_writes_a_png_of_the_asked_size_with_its_parameters(tiny: list[str], tmp_path: Path) -> None:
    result = vqbot("imagine", "a wooden banana temple | trending on artstation:0.5", "--steps", "12",
                   "--size", "64x32", "--seed", "42", "--cutn", "4", "--out", "pic.png",
                   "--frames-every", "4", "--timelapse", "lapse.gif", "--lr", "1.0", *tiny, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "pic.png") as image:
        assert image.size == (64, 32)
        meta = json.loads(image.text["vqbot"])
    assert meta["prompt"] == "a wooden banana temple | trending on artstation:0.5"
    assert meta["seed"] == 42 and meta["steps"] == 12 and meta["cutn"] == 4 and meta["width"] == 64
    assert meta["model_source"] == "last.ckpt" and meta["clip_model"].startswith("local-dir:")
    with Image.open(tmp_path / "lapse.gif") as lapse:
        assert lapse.n_frames == 3
    assert "step" in result.stderr and "wrote pic.png" in result.stderr  # the progress bar and summary


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
        (["cat", "--size", "64x64", "--steps", "-5"], "steps must be between"),
        (["cat", "--size", "64x64", "--init-image", "missing.png"], "does not exist"),
        (["cat", "--size", "64x64", "--init-image", "notes.png"], "not a picture"),
        (["cat", "--size", "64x64", "--image-prompt", "missing.png"], "does not exist"),
        (["cat", "--size", "64x64", "--timelapse", "x.mp4"], ".webp or .gif"),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(tiny: list[str], tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "notes.png").write_text("not really a picture")
    result = vqbot("imagine", *args, "--steps", "2", *tiny, cwd=tmp_path) if "--steps" not in args else vqbot("imagine", *args, *tiny, cwd=tmp_path)
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("vqbot: error:")]
    assert len(error_lines) == 1 and message in error_lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_models_and_missing_weights_say_what_to_do(tmp_path: Path) -> None:
    unknown = vqbot("imagine", "cat", "--model", "vqgan_nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "valid names are: vqgan_imagenet_f16_16384" in unknown.stderr
    missing = vqbot("imagine", "cat", "--model", "wikiart_16384", cwd=tmp_path)
    assert missing.returncode == 2
    assert "fetch it with: vqbot models download wikiart_16384" in missing.stderr


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
                 "--clip-pretrained", "", "--out", "x.png", cwd=tmp_path)
    assert made.returncode == 0, made.stderr

"""What a finished picture's PNG records: what was really used, by name or file name and SHA-256, and no host path."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from engine.catalog import file_sha256
from engine.metadata import FileDigests, FileRef, Provenance, picture_metadata
from engine.runner import Engine, EngineConfig
from jobspec import JobParams, NoisePrompt, Prompt, parse_prompts


def text_chunks(png: bytes) -> dict[str, str]:
    with Image.open(io.BytesIO(png)) as image:
        return dict(image.text)  # type: ignore[attr-defined]


def write_picture(path: Path, colour: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), colour).save(path)
    return path


def test_a_picture_made_from_files_records_their_names_and_hashes_and_no_host_path(
        vqgan_files: tuple[Path, Path], clip_dir: Path, tmp_path: Path) -> None:
    uploads = tmp_path / "srv" / "vqbot-data" / "attachments"  # where the bot keeps saved uploads
    init = write_picture(uploads / "init-upload.png", (200, 30, 30))
    target = write_picture(uploads / "prompt-upload.png", (30, 30, 200))
    engine = Engine(EngineConfig(model_dir=tmp_path / "models", device="cpu", precision="fp32",
                                 vqgan_config=vqgan_files[0], vqgan_checkpoint=vqgan_files[1]))
    params = JobParams(prompts=parse_prompts("a lighthouse | stormy:0.5"), image_prompts=(Prompt(str(target), 0.7),),
                       noise_prompts=(NoisePrompt(5, 0.2),), init_image=str(init), width=32, height=32, steps=2,
                       cutn=2, seed=11, model="vqgan_imagenet_f16_16384",  # the default name; files were used instead
                       clip_model=f"local-dir:{clip_dir}", clip_pretrained="openai")
    (result,) = engine.run([("job", params)])
    chunks = text_chunks(result.png)
    host_paths = {str(p) for p in (tmp_path, uploads, vqgan_files[0].parent, clip_dir, clip_dir.parent)}
    for key, value in chunks.items():
        assert not any(path in value for path in host_paths), (key, value)
    meta = json.loads(chunks["vqbot"])
    assert meta["model"] == "last.ckpt" and chunks["model"] == "last.ckpt"  # not the catalogue name it didn't use
    assert meta["model_files"] == {
        "config": {"file": "model.yaml", "sha256": file_sha256(vqgan_files[0])},
        "checkpoint": {"file": "last.ckpt", "sha256": file_sha256(vqgan_files[1])},
    }
    assert meta["clip_model"] == "local-dir" and meta["clip_pretrained"] is None  # not the "openai" tag it ignored
    assert meta["clip_files"]["weights"] == {"file": "open_clip_model.safetensors",
                                             "sha256": file_sha256(clip_dir / "open_clip_model.safetensors")}
    assert meta["init_image"] == {"file": "init-upload.png", "sha256": file_sha256(init)}
    assert meta["image_prompts"] == [{"file": "prompt-upload.png", "sha256": file_sha256(target), "weight": 0.7,
                                      "stop": None}]
    assert meta["prompt"] == "a lighthouse | stormy:0.5" and chunks["prompt"] == meta["prompt"]
    assert (meta["seed"], meta["steps"], meta["cutn"], meta["width"]) == (11, 2, 2, 32)
    assert meta["noise_prompts"] == [{"seed": 5, "weight": 0.2}] and "extra" not in meta


def test_a_catalogue_model_and_a_clip_tag_are_recorded_by_name() -> None:
    params = JobParams(prompts=(Prompt("a temple"),), seed=3)
    meta = picture_metadata(params, Provenance(vqgan="wikiart_16384", clip="ViT-B-32-quickgelu", clip_tag="openai"),
                            steps_done=500, loss=0.9, device="cuda:0", precision="bfloat16")
    assert (meta["model"], meta["clip_model"], meta["clip_pretrained"]) == ("wikiart_16384", "ViT-B-32-quickgelu", "openai")
    assert "model_files" not in meta and "clip_files" not in meta
    assert (meta["steps_done"], meta["device"], meta["precision"]) == (500, "cuda:0", "bfloat16")


def test_picture_paths_never_reach_the_metadata_even_without_a_hash() -> None:
    params = JobParams(prompts=(), image_prompts=(Prompt("/srv/private/alice/face.png"),),
                       init_image="/srv/private/alice/start.jpg")
    meta = picture_metadata(params, Provenance(vqgan="wikiart_16384", clip="ViT-B-32-quickgelu"),
                            steps_done=1, loss=1.0, device="cpu", precision="float32")
    assert "/srv" not in json.dumps(meta)
    assert meta["init_image"] == {"file": "start.jpg", "sha256": None}
    assert meta["image_prompts"][0]["file"] == "face.png"


def test_undecodable_text_is_escaped_so_the_png_can_still_be_written() -> None:
    params = JobParams(prompts=(Prompt("caf\udce9"),))
    meta = picture_metadata(params, Provenance(vqgan="x\udcff.ckpt", clip="local-dir",
                                               vqgan_files=(("checkpoint", FileRef("x\udcff.ckpt", "ab")),)),
                            steps_done=1, loss=1.0, device="cpu", precision="float32")
    json.dumps(meta, ensure_ascii=False).encode("utf-8")  # no lone surrogate left anywhere
    assert meta["prompt"] == "caf\\udce9"


def test_a_model_file_is_hashed_once_and_again_only_when_it_changes(tmp_path: Path) -> None:
    hashed: list[Path] = []

    def counting_sha256(path: Path) -> str:
        hashed.append(path)
        return file_sha256(path)

    weights = tmp_path / "weights.ckpt"
    weights.write_bytes(b"first version")
    digests = FileDigests(counting_sha256)
    first = [digests.ref(weights) for _ in range(5)]
    assert first == [FileRef("weights.ckpt", file_sha256(weights))] * 5 and len(hashed) == 1
    weights.write_bytes(b"second, longer version")
    assert digests.ref(weights).sha256 == file_sha256(weights) and len(hashed) == 2

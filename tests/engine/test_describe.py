"""/describe's ranking is CLIP's: the phrases closest to the picture in CLIP space, closest first."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from engine.clip import Clip
from engine.describe import describe_picture, rank_phrases
from engine.images import ImageInputError, load_image
from engine.runner import Engine, EngineConfig
from jobspec.describe import Candidate, DescribeParams
from jobspec.vocabulary import vocabulary_phrases

PHRASES = list(vocabulary_phrases()[:120])


def direct_similarities(clip: Clip, image: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """Cosine similarities the plain way: every text in one pass, the picture bilinearly squashed
    to CLIP's input after a centre crop to a square, no cache."""
    _, _, h, w = image.shape
    side = min(h, w)
    square = image[:, :, (h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    pixels = F.interpolate(square, size=(clip.input_size, clip.input_size), mode="bicubic", antialias=True)
    with torch.no_grad():
        picture = F.normalize(clip.model.encode_image(clip.normalize(pixels.clamp(0, 1))), dim=-1)[0]
        texts_embedded = F.normalize(clip.model.encode_text(clip.tokenize(texts)), dim=-1)
    return texts_embedded @ picture


def striped_picture(path: Path) -> Path:
    image = Image.new("RGB", (96, 64), (20, 40, 200))
    for x in range(0, 96, 12):
        image.paste((240, 200, 30), (x, 0, x + 6, 64))
    image.save(path)
    return path


def test_the_ranking_is_the_order_of_clip_similarities(clip: Clip, tmp_path: Path) -> None:
    image = load_image(striped_picture(tmp_path / "stripes.png"))
    expected = direct_similarities(clip, image, PHRASES)
    ranked = rank_phrases(clip, image, PHRASES, top_k=5)
    assert [i for i, _ in ranked] == expected.argsort(descending=True)[:5].tolist()
    assert [s for _, s in ranked] == pytest.approx([float(expected[i]) for i, _ in ranked], abs=2e-3)
    assert all(a >= b for (_, a), (_, b) in pairwise(ranked))


def test_the_order_of_the_candidates_and_the_phrase_cache_change_nothing(clip: Clip, tmp_path: Path) -> None:
    image = load_image(striped_picture(tmp_path / "stripes.png"))
    first = [(PHRASES[i], s) for i, s in rank_phrases(clip, image, PHRASES, top_k=3)]
    shuffled = PHRASES[::-1]
    again = [(shuffled[i], s) for i, s in rank_phrases(clip, image, shuffled, top_k=3)]  # cached by now
    assert [t for t, _ in again] == [t for t, _ in first]
    assert [s for _, s in again] == pytest.approx([s for _, s in first], abs=1e-5)


def test_a_describe_job_names_the_closest_phrases_and_the_styles_they_are(clip_dir: Path, tmp_path: Path,
                                                                          clip: Clip) -> None:
    engine = Engine(EngineConfig(model_dir=tmp_path, device="cpu", precision="fp32"))
    picture = striped_picture(tmp_path / "stripes.png")
    candidates = (Candidate("Studio Ghibli style", "ghibli"), *(Candidate(p) for p in PHRASES))
    params = DescribeParams(picture=str(picture), candidates=candidates, top_k=4,
                            clip_model=f"local-dir:{clip_dir}", clip_pretrained="")
    description = describe_picture(engine, params)
    texts = [c.text for c in candidates]
    expected = direct_similarities(clip, load_image(picture), texts).argsort(descending=True)[:4].tolist()
    assert [m.text for m in description.matches] == [texts[i] for i in expected]
    assert [m.style for m in description.matches] == [candidates[i].style for i in expected]


def test_a_picture_that_is_gone_or_not_a_picture_is_the_members_error(clip_dir: Path, tmp_path: Path) -> None:
    engine = Engine(EngineConfig(model_dir=tmp_path, device="cpu", precision="fp32"))
    (tmp_path / "page.png").write_bytes(b"<html>not a picture</html>")
    for picture in (tmp_path / "gone.png", tmp_path / "page.png"):
        params = DescribeParams(picture=str(picture), candidates=(Candidate("watercolour"),),
                                clip_model=f"local-dir:{clip_dir}", clip_pretrained="")
        with pytest.raises(ImageInputError):
            describe_picture(engine, params)

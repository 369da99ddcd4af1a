"""/describe on the engine: the phrases CLIP finds closest to a picture, closest first.

The picture is read as CLIP reads any picture (scaled to cover its input size and centre-cropped,
with CLIP's own statistics); each phrase is encoded as a text prompt is. Similarity is the cosine
of the two embeddings, the number a VQGAN+CLIP job's loss is a distance of. Phrase embeddings are
kept per CLIP (the built-in vocabulary is the same for every job), so a description mostly costs
one image pass and the guild's new phrases.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F

from engine.clip import Clip
from engine.images import load_image
from engine.latents import resize_cover
from engine.runner import Engine
from jobspec.describe import DescribeParams, Description, Match

TEXT_BATCH = 256  # phrases encoded per pass
KEPT_PHRASES = 8192  # phrase embeddings kept per CLIP


class PhraseEmbeddings:
    """Unit-length text embeddings by phrase, for one CLIP, least recently used first out."""

    def __init__(self, clip: Clip, keep: int = KEPT_PHRASES) -> None:
        self.clip, self.keep = clip, keep
        self._kept: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, texts: list[str]) -> torch.Tensor:
        """(N, D) float32 on the CLIP's device, in the order of ``texts``."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._kept))
            for start in range(0, len(missing), TEXT_BATCH):
                chunk = missing[start:start + TEXT_BATCH]
                for text, embed in zip(chunk, F.normalize(self.clip.encode_text(chunk), dim=-1), strict=True):
                    self._kept[text] = embed
            rows = []
            for text in texts:
                self._kept.move_to_end(text)
                rows.append(self._kept[text])
            while len(self._kept) > max(self.keep, len(texts)):
                self._kept.popitem(last=False)
            return torch.stack(rows)


_phrase_caches: weakref.WeakKeyDictionary[Any, PhraseEmbeddings] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def phrase_embeddings(clip: Clip) -> PhraseEmbeddings:
    """The phrase cache of this CLIP (kept as long as its model is)."""
    with _caches_lock:
        cache = _phrase_caches.get(clip.model)
        if cache is None:
            cache = _phrase_caches[clip.model] = PhraseEmbeddings(clip)
        return cache


def picture_embedding(clip: Clip, image: torch.Tensor) -> torch.Tensor:
    """The unit-length CLIP embedding (D,) of a picture (1, 3, H, W) in [0, 1]."""
    size = clip.input_size
    pixels = resize_cover(image.to(clip.device), size, size)
    pixels = clip.normalize(pixels.to(next(clip.model.parameters()).dtype))
    with torch.no_grad():
        return F.normalize(clip.encode_image(pixels).float(), dim=-1)[0]


def rank_phrases(clip: Clip, image: torch.Tensor, texts: list[str], top_k: int) -> list[tuple[int, float]]:
    """(index into ``texts``, cosine similarity) of the ``top_k`` phrases closest to the picture."""
    similarities = phrase_embeddings(clip)(texts) @ picture_embedding(clip, image)
    best = torch.topk(similarities, k=min(top_k, len(texts)))
    return [(int(i), float(s)) for s, i in zip(best.values.tolist(), best.indices.tolist(), strict=True)]


def describe_picture(engine: Engine, params: DescribeParams) -> Description:
    """Describe a job's picture with its CLIP (loaded once in ``engine.cache``) under the engine's
    settings. Raises ImageInputError for a picture that can't be read, ModelLoadError for its CLIP."""
    params.validate()
    image = load_image(params.picture, what="picture")
    clip = engine.cache.clip(params.clip_model, params.clip_pretrained)
    with engine.settings():
        ranked = rank_phrases(clip, image, params.texts, params.top_k)
    return Description(tuple(Match(params.candidates[i].text, similarity, params.candidates[i].style)
                             for i, similarity in ranked))

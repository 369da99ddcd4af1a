"""A /describe job: which phrases CLIP finds closest to an uploaded picture.

The job's parameters (``DescribeParams``) hold everything the worker needs: the kept picture's
path, every candidate phrase (the guild's style presets and the built-in vocabulary of
jobspec.vocabulary, as they were when the member asked), how many matches to give and the CLIP
to compare with. Its answer (``Description``) is a small JSON document stored as the job's result.

To the store a describe job is a job like any other: ``kind`` tells it apart, and the fields it
reads for every job (model, width, height, steps, cutn) say what it costs: one step of
``cutn`` CLIP passes (the picture and each phrase) at CLIP's input size, under the model name
``clip`` that no VQGAN has, so that the store never hands a worker describe and picture jobs
as one batch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jobspec.params import DEFAULT_CLIP, DEFAULT_CLIP_PRETRAINED, ParamError
from jobspec.vocabulary import vocabulary_phrases

KIND = "describe"
"""``params["kind"]`` of a describe job (a picture job has none, or "imagine")."""
MODEL = "clip"
SIDE = 224  # CLIP ViT-B's input size: what the charge counts a pass at
TOP_K_RANGE = (1, 10)
DEFAULT_TOP_K = 5
MAX_CANDIDATES = 1000
MAX_PHRASE_CHARS = 200
CANDIDATES_JSON_BUDGET = 48_000  # bytes of JSON for the candidates, under the store's 64 KiB of params
MAX_PATH_CHARS = 1000


@dataclass(frozen=True)
class Candidate:
    """A phrase the picture is compared with; ``style`` names the guild's preset it is, if it is one."""

    text: str
    style: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "style": self.style}


def is_describe(params: Mapping[str, Any]) -> bool:
    """Whether a job's params (JSON form) are a describe job's."""
    return params.get("kind") == KIND


def candidates(styles: Mapping[str, str], vocabulary: Iterable[str] | None = None) -> tuple[Candidate, ...]:
    """The guild's styles (by name), then the vocabulary, each text once (a style wins over the same
    built-in phrase), as many as fit in the job's parameters."""
    chosen: list[Candidate] = []
    seen: set[str] = set()
    budget = CANDIDATES_JSON_BUDGET
    styled = [Candidate(text.strip(), name) for name, text in sorted(styles.items())]
    built_in = [Candidate(text) for text in (vocabulary_phrases() if vocabulary is None else vocabulary)]
    for candidate in styled + built_in:
        key = candidate.text.casefold()
        if not candidate.text or len(candidate.text) > MAX_PHRASE_CHARS or key in seen:
            continue
        size = len(json.dumps(candidate.to_json())) + 1
        if size > budget or len(chosen) >= MAX_CANDIDATES:
            break
        budget -= size
        seen.add(key)
        chosen.append(candidate)
    return tuple(chosen)


@dataclass(frozen=True)
class DescribeParams:
    picture: str  # the kept upload's path on the shared attachments folder
    candidates: tuple[Candidate, ...]
    top_k: int = DEFAULT_TOP_K
    clip_model: str = DEFAULT_CLIP
    clip_pretrained: str = DEFAULT_CLIP_PRETRAINED

    def validate(self) -> DescribeParams:
        """Check every field; returns self. Raises ParamError."""
        if not isinstance(self.picture, str) or not 0 < len(self.picture) <= MAX_PATH_CHARS:
            raise ParamError("A describe job needs the path of its picture.")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or not (
                TOP_K_RANGE[0] <= self.top_k <= TOP_K_RANGE[1]):
            raise ParamError(f"top_k must be a whole number from {TOP_K_RANGE[0]} to {TOP_K_RANGE[1]}.")
        if not 0 < len(self.candidates) <= MAX_CANDIDATES:
            raise ParamError(f"A describe job compares 1 to {MAX_CANDIDATES} phrases, not {len(self.candidates)}.")
        for c in self.candidates:
            if not isinstance(c.text, str) or not 0 < len(c.text) <= MAX_PHRASE_CHARS or "\x00" in c.text:
                raise ParamError(f"Each phrase is 1 to {MAX_PHRASE_CHARS} characters of text.")
            if c.style is not None and not isinstance(c.style, str):
                raise ParamError("A phrase's style is the name of a style preset.")
        if not isinstance(self.clip_model, str) or not isinstance(self.clip_pretrained, str):
            raise ParamError("clip_model and clip_pretrained are names.")
        return self

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.candidates]

    def to_json(self) -> dict[str, Any]:
        """The job's params as the store keeps them (with the fields it reads of every job)."""
        return {
            "kind": KIND, "picture": self.picture, "candidates": [c.to_json() for c in self.candidates],
            "top_k": self.top_k, "clip_model": self.clip_model, "clip_pretrained": self.clip_pretrained,
            "model": MODEL, "width": SIDE, "height": SIDE, "steps": 1, "cutn": len(self.candidates) + 1,
            "seed": 0,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DescribeParams:
        """Read (and validate) params written by ``to_json``; ParamError for anything else."""
        if not is_describe(data):
            raise ParamError("These are not a describe job's parameters.")
        try:
            found = [Candidate(str(c["text"]), None if c.get("style") is None else str(c["style"]))
                     for c in data["candidates"]]
            return cls(picture=data["picture"], candidates=tuple(found), top_k=data["top_k"],
                       clip_model=data["clip_model"], clip_pretrained=data["clip_pretrained"]).validate()
        except (KeyError, TypeError, AttributeError) as exc:
            raise ParamError(f"Malformed describe parameters ({type(exc).__name__}: {exc}).") from None


@dataclass(frozen=True)
class Match:
    """One of the closest phrases and its cosine similarity to the picture in CLIP space."""

    text: str
    similarity: float
    style: str | None = None


@dataclass(frozen=True)
class Description:
    """A describe job's answer: the closest phrases, closest first."""

    matches: tuple[Match, ...]

    def to_bytes(self) -> bytes:
        body = {"kind": KIND, "matches": [{"text": m.text, "style": m.style, "similarity": round(m.similarity, 4)}
                                          for m in self.matches]}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Description:
        """Read a stored answer; ParamError when it is not one."""
        try:
            body = json.loads(data.decode())
            matches = tuple(Match(str(m["text"]), float(m["similarity"]),
                                  None if m.get("style") is None else str(m["style"])) for m in body["matches"])
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
            raise ParamError("The stored answer is not a description.") from None
        if body.get("kind") != KIND or not all(math.isfinite(m.similarity) for m in matches):
            raise ParamError("The stored answer is not a description.")
        return cls(matches)

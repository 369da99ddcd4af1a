"""What a finished picture's PNG says about how it was made.

The PNG is published (Discord, a shared folder), so it holds only what a user may
see: the prompt, seed and parameters, and the models by name. A model or picture
given as a file appears as its file name and SHA-256, never with its folder: no
path of the host reaches the published file. ``picture_metadata`` is pure; the
hashing is done once per file by ``FileDigests``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.catalog import file_sha256
from jobspec import JobParams

if TYPE_CHECKING:
    from engine.clip import Clip
    from engine.models import VQGANSource

LOCAL_DIR_CLIP = "local-dir"  # how a CLIP loaded from a folder is named: the folder's path is the host's


@dataclass(frozen=True)
class FileRef:
    """A file as it may be published: its name (no folder) and its SHA-256 (None if it can't be read)."""

    file: str
    sha256: str | None

    def to_json(self) -> dict[str, str | None]:
        return {"file": published_text(self.file), "sha256": self.sha256}


@dataclass(frozen=True)
class Provenance:
    """Where a picture's models and input pictures came from, in their publishable form."""

    vqgan: str  # catalogue name, or the checkpoint's file name when given as files
    clip: str  # open_clip model name, or LOCAL_DIR_CLIP
    clip_tag: str | None = None  # open_clip pretrained tag, None when the weights are a file
    vqgan_files: tuple[tuple[str, FileRef], ...] = ()  # ("config", ...), ("checkpoint", ...) when given as files
    clip_files: tuple[tuple[str, FileRef], ...] = ()  # ("config", ...), ("weights", ...) when given as files
    pictures: Mapping[str, FileRef] = field(default_factory=dict)  # a job's picture path -> its published form


def published_text(text: str) -> str:
    """``text`` as it can go into a PNG text chunk: undecodable bytes (lone surrogates) written as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _picture(path: str | None, provenance: Provenance) -> dict[str, str | None] | None:
    if path is None:
        return None
    ref = provenance.pictures.get(path) or FileRef(Path(path).name, None)
    return ref.to_json()


def picture_metadata(params: JobParams, provenance: Provenance, *, steps_done: int, loss: float, device: str,
                     precision: str) -> dict[str, Any]:
    """Everything the PNG records, as JSON-ready data: what a user may see and nothing of the host."""
    data: dict[str, Any] = {
        "prompt": published_text(params.prompt_text),
        "prompts": [{"text": published_text(p.text), "weight": p.weight, "stop": p.stop} for p in params.prompts],
        "image_prompts": [{**(_picture(p.text, provenance) or {}), "weight": p.weight, "stop": p.stop}
                          for p in params.image_prompts],
        "noise_prompts": [{"seed": p.seed, "weight": p.weight} for p in params.noise_prompts],
        "init_image": _picture(params.init_image, provenance),
        "init_weight": params.init_weight,
        "width": params.width, "height": params.height, "steps": params.steps, "cutn": params.cutn,
        "cut_pow": params.cut_pow, "lr": params.lr, "alpha": params.alpha, "seed": params.seed,
        "model": published_text(provenance.vqgan),
        "clip_model": published_text(provenance.clip),
        "clip_pretrained": provenance.clip_tag,
        "steps_done": steps_done, "loss": loss, "device": device, "precision": precision,
    }
    if provenance.vqgan_files:
        data["model_files"] = {role: ref.to_json() for role, ref in provenance.vqgan_files}
    if provenance.clip_files:
        data["clip_files"] = {role: ref.to_json() for role, ref in provenance.clip_files}
    return data


class FileDigests:
    """SHA-256 of files, each hashed once (and again only if its size or modification time changes)."""

    def __init__(self, hash_file: Callable[[Path], str] = file_sha256) -> None:
        self._hash_file = hash_file
        self._known: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()

    def ref(self, path: str | Path) -> FileRef:
        path = Path(path)
        try:
            stat = path.stat()
            key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
            with self._lock:
                if key not in self._known:
                    self._known[key] = self._hash_file(path)
                return FileRef(path.name, self._known[key])
        except OSError:  # gone or unreadable since it was used: the name alone
            return FileRef(path.name, None)


def provenance(source: VQGANSource, clip: Clip, params: JobParams, digests: FileDigests) -> Provenance:
    """The publishable form of a job's models (``source``, ``clip``) and input pictures."""
    vqgan_files: tuple[tuple[str, FileRef], ...] = ()
    vqgan = source.name
    if not source.catalogue:
        vqgan_files = (("config", digests.ref(source.config)), ("checkpoint", digests.ref(source.checkpoint)))
        vqgan = source.checkpoint.name
    clip_files = tuple((role, digests.ref(path)) for role, path in clip.source.files)
    clip_name = LOCAL_DIR_CLIP if clip.source.local else clip.source.name
    paths = [p.text for p in params.image_prompts] + ([params.init_image] if params.init_image else [])
    return Provenance(vqgan=vqgan, clip=clip_name, clip_tag=clip.source.tag, vqgan_files=vqgan_files,
                      clip_files=clip_files, pictures={p: digests.ref(p) for p in paths})

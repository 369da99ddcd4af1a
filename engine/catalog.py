"""The known VQGAN models, where to get them and which of their files are on disk.

Pure data plus cheap file-system checks: nothing here touches the network or
imports torch. Sources and sizes come from ``MODELS.md`` (shared notes).

Local layout, flat inside the model directory::

    <model_dir>/<name>.yaml              taming config
    <model_dir>/<name>.ckpt              taming / pytorch-lightning checkpoint
    <model_dir>/<name>.ckpt.sha256       SHA-256 recorded at the first good download
    <model_dir>/<name>.safetensors       inference weights (``vqbot models convert``)
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

logger = logging.getLogger(__name__)

MODEL_DIR_ENV = "VQBOT_MODEL_DIR"
DEFAULT_MODEL = "vqgan_imagenet_f16_16384"
PART_SUFFIX = ".part"
CHECKSUM_SUFFIX = ".sha256"

_HASH_CHUNK = 1 << 20


class ModelKind(StrEnum):
    """Quantiser family: nearest-neighbour VQ or Gumbel-softmax VQ."""

    VQ = "vq"
    GUMBEL = "gumbel"


@dataclass(frozen=True)
class ModelFile:
    """One file of a model and where it can be downloaded from.

    ``size`` is the exact size in bytes and is enforced after download; it is
    only set where it was published exactly. ``approx_size`` is for progress
    bars and disk-space hints only.
    """

    filename: str
    urls: tuple[str, ...]
    size: int | None = None
    approx_size: int | None = None

    @property
    def display_size(self) -> int | None:
        """The best size we know (exact if known), for progress display."""
        return self.size if self.size is not None else self.approx_size


@dataclass(frozen=True)
class VQGANModel:
    """A taming-transformers VQGAN: a config file and a checkpoint."""

    name: str
    kind: ModelKind
    factor: int
    codebook_size: int
    config: ModelFile
    checkpoint: ModelFile
    description: str = ""


def _heibox(share: str, inner_path: str) -> str:
    quoted = inner_path.replace("/", "%2F")
    return f"https://heibox.uni-heidelberg.de/d/{share}/files/?p={quoted}&dl=1"


_FEED_FORWARD = "https://github.com/mehdidc/feed_forward_vqgan_clip/releases/download/0.1"
_EAIDATA_WIKIART = "http://eaidata.bmk.sh/data/Wikiart_16384/wikiart_f16_16384_8145600"

_MODELS: tuple[VQGANModel, ...] = (
    VQGANModel(
        name="vqgan_imagenet_f16_16384",
        kind=ModelKind.VQ,
        factor=16,
        codebook_size=16384,
        description="ImageNet, 16384 codes, f16 (the default)",
        config=ModelFile(
            filename="vqgan_imagenet_f16_16384.yaml",
            urls=(
                _heibox("a7530b09fed84f80a887", "/configs/model.yaml"),
                f"{_FEED_FORWARD}/vqgan_imagenet_f16_16384.yaml",
            ),
        ),
        checkpoint=ModelFile(
            filename="vqgan_imagenet_f16_16384.ckpt",
            urls=(
                _heibox("a7530b09fed84f80a887", "/ckpts/last.ckpt"),
                f"{_FEED_FORWARD}/vqgan_imagenet_f16_16384.ckpt",
            ),
            approx_size=980_000_000,
        ),
    ),
    VQGANModel(
        name="vqgan_imagenet_f16_1024",
        kind=ModelKind.VQ,
        factor=16,
        codebook_size=1024,
        description="ImageNet, 1024 codes, f16",
        config=ModelFile(
            filename="vqgan_imagenet_f16_1024.yaml",
            urls=(_heibox("8088892a516d4e3baf92", "/configs/model.yaml"),),
        ),
        checkpoint=ModelFile(
            filename="vqgan_imagenet_f16_1024.ckpt",
            urls=(_heibox("8088892a516d4e3baf92", "/ckpts/last.ckpt"),),
            size=957_954_257,
            approx_size=957_954_257,
        ),
    ),
    VQGANModel(
        name="wikiart_16384",
        kind=ModelKind.VQ,
        factor=16,
        codebook_size=16384,
        description="WikiArt, 16384 codes, f16",
        config=ModelFile(
            filename="wikiart_16384.yaml",
            urls=(f"{_EAIDATA_WIKIART}.yaml",),
        ),
        checkpoint=ModelFile(
            filename="wikiart_16384.ckpt",
            urls=(
                f"{_EAIDATA_WIKIART}.ckpt",
                "https://github.com/pixray/pixray/releases/download/v1.7.1/vqgan_wikiart_16384.ckpt",
            ),
            approx_size=1_000_000_000,
        ),
    ),
    VQGANModel(
        name="vqgan_gumbel_f8_8192",
        kind=ModelKind.GUMBEL,
        factor=8,
        codebook_size=8192,
        description="OpenImages, Gumbel quantiser, 8192 codes, f8",
        config=ModelFile(
            filename="vqgan_gumbel_f8_8192.yaml",
            urls=(_heibox("2e5662443a6b4307b470", "/configs/model.yaml"),),
        ),
        checkpoint=ModelFile(
            filename="vqgan_gumbel_f8_8192.ckpt",
            urls=(_heibox("2e5662443a6b4307b470", "/ckpts/last.ckpt"),),
            approx_size=376_000_000,
        ),
    ),
)

MODELS: Mapping[str, VQGANModel] = MappingProxyType({m.name: m for m in _MODELS})

# Other names the same files go by (DESIGN.md says gumbel_f8_8192; some
# notebooks call the Gumbel model openimages_f16_8192, although it is f8).
ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "gumbel_f8_8192": "vqgan_gumbel_f8_8192",
        "openimages_f16_8192": "vqgan_gumbel_f8_8192",
    }
)


class UnknownModelError(ValueError):
    """A model name that is not in the catalogue."""

    def __init__(self, name: str) -> None:
        self.name = name
        valid = ", ".join(MODELS)
        super().__init__(f"Unknown VQGAN model {name!r}; valid names are: {valid}.")


def model_names() -> tuple[str, ...]:
    """Catalogue names, the default first."""
    return tuple(MODELS)


def get_model(name: str) -> VQGANModel:
    """Look a model up by name (or alias); raise ``UnknownModelError`` listing valid names."""
    key = name.strip()
    key = ALIASES.get(key, key)
    try:
        return MODELS[key]
    except KeyError:
        raise UnknownModelError(name) from None


def default_model_dir() -> Path:
    """``$VQBOT_MODEL_DIR`` if set (and not empty), else ``~/.cache/vqbot/models``."""
    env = os.environ.get(MODEL_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "vqbot" / "models"


class ModelPaths(NamedTuple):
    """Where a model's files live (or will live) in a model directory."""

    config: Path
    checkpoint: Path
    safetensors: Path


def model_paths(name: str | VQGANModel, model_dir: Path | None = None) -> ModelPaths:
    """``(config_path, checkpoint_path, converted_safetensors_path)`` of a model.

    ``model_dir`` defaults to ``default_model_dir()``. Nothing is created.
    """
    model = name if isinstance(name, VQGANModel) else get_model(name)
    root = Path(model_dir) if model_dir is not None else default_model_dir()
    return ModelPaths(
        config=root / model.config.filename,
        checkpoint=root / model.checkpoint.filename,
        safetensors=root / f"{model.name}.safetensors",
    )


class ModelNotDownloaded(FileNotFoundError):
    """A catalogue model whose files are not in the model folder; the message says how to fetch it."""


def downloaded_files(name: str, model_dir: Path) -> tuple[Path, Path]:
    """``(config, weights)`` of a downloaded catalogue model, the converted safetensors file preferred.

    Raises ``UnknownModelError`` listing the valid names, or ``ModelNotDownloaded``.
    """
    model = get_model(name)
    config, checkpoint, converted = model_paths(model, model_dir)
    if not config.is_file() or not (converted.is_file() or checkpoint.is_file()):
        raise ModelNotDownloaded(f"The VQGAN model {model.name} is not in {model_dir}; fetch it with: "
                                 f"vqbot models download {model.name}")
    return config, converted if converted.is_file() else checkpoint


def part_path(path: Path) -> Path:
    """The in-progress download file for ``path`` (``x.ckpt`` -> ``x.ckpt.part``)."""
    return path.with_name(path.name + PART_SUFFIX)


def checksum_path(path: Path) -> Path:
    """The sidecar holding the SHA-256 recorded for ``path`` (``x.ckpt.sha256``)."""
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_recorded_sha256(path: Path) -> str | None:
    """The SHA-256 recorded for ``path``, or None if none was recorded.

    The sidecar uses ``sha256sum`` format (``<hex>  <filename>``), so
    ``sha256sum -c x.ckpt.sha256`` works too. An unreadable sidecar counts as
    no record (and is logged).
    """
    sidecar = checksum_path(path)
    try:
        text = sidecar.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        logger.warning("Ignoring unreadable checksum file %s: %s", sidecar, exc)
        return None
    fields = text.split()
    digest = fields[0].lower() if fields else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        logger.warning("Ignoring malformed checksum file %s", sidecar)
        return None
    return digest


class FileState(StrEnum):
    """What is on disk for one file of a model."""

    MISSING = "missing"  # neither the file nor a partial download
    PARTIAL = "partial"  # only an interrupted download (<file>.part)
    PRESENT = "present"  # file exists, size fine (or unknown), not hashed now
    VERIFIED = "verified"  # hashed now: matches the recorded SHA-256
    CORRUPT = "corrupt"  # wrong size, or hash differs from the record


@dataclass(frozen=True)
class FileStatus:
    """State of one file; ``size`` is bytes on disk (of the .part if PARTIAL)."""

    path: Path
    state: FileState
    size: int | None = None
    recorded_sha256: str | None = None
    detail: str = ""

    @property
    def usable(self) -> bool:
        return self.state in (FileState.PRESENT, FileState.VERIFIED)


@dataclass(frozen=True)
class ModelStatus:
    """Which files of a model are present (and, if asked, verified)."""

    model: VQGANModel
    config: FileStatus
    checkpoint: FileStatus
    safetensors: FileStatus

    @property
    def ready(self) -> bool:
        """A config and either the checkpoint or the converted weights are usable."""
        return self.config.usable and (self.checkpoint.usable or self.safetensors.usable)


def file_status(path: Path, *, expected_size: int | None = None, verify: bool = False) -> FileStatus:
    """Inspect one file. ``verify=True`` hashes it (slow for checkpoints).

    Read-only: a corrupt file is reported, never deleted here.
    """
    recorded = read_recorded_sha256(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        try:
            part_size = part_path(path).stat().st_size
        except FileNotFoundError:
            return FileStatus(path, FileState.MISSING, recorded_sha256=recorded)
        return FileStatus(
            path, FileState.PARTIAL, size=part_size, recorded_sha256=recorded,
            detail="interrupted download; downloading again resumes it",
        )
    if expected_size is not None and size != expected_size:
        return FileStatus(
            path, FileState.CORRUPT, size=size, recorded_sha256=recorded,
            detail=f"size is {size} bytes, expected {expected_size}",
        )
    if not verify:
        return FileStatus(path, FileState.PRESENT, size=size, recorded_sha256=recorded)
    if recorded is None:
        return FileStatus(
            path, FileState.PRESENT, size=size,
            detail="no SHA-256 recorded; nothing to verify against",
        )
    actual = file_sha256(path)
    if actual != recorded:
        return FileStatus(
            path, FileState.CORRUPT, size=size, recorded_sha256=recorded,
            detail=f"SHA-256 is {actual}, recorded {recorded}",
        )
    return FileStatus(path, FileState.VERIFIED, size=size, recorded_sha256=recorded)


def model_status(
    name: str | VQGANModel, model_dir: Path | None = None, *, verify: bool = False
) -> ModelStatus:
    """Status of a model's config, checkpoint and converted weights (for ``vqbot models list``)."""
    model = name if isinstance(name, VQGANModel) else get_model(name)
    paths = model_paths(model, model_dir)
    return ModelStatus(
        model=model,
        config=file_status(paths.config, expected_size=model.config.size, verify=verify),
        checkpoint=file_status(
            paths.checkpoint, expected_size=model.checkpoint.size, verify=verify
        ),
        safetensors=file_status(paths.safetensors, verify=verify),
    )


def all_model_status(model_dir: Path | None = None, *, verify: bool = False) -> list[ModelStatus]:
    """``model_status`` for every catalogue model, in catalogue order."""
    return [model_status(m, model_dir, verify=verify) for m in MODELS.values()]

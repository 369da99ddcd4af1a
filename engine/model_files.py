"""Model files on disk: structure checks, recorded SHA-256 sums, and the errors users see.

Shared by the downloader and ``vqbot models``; no network here.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Literal

import yaml

from engine.catalog import checksum_path

logger = logging.getLogger(__name__)

MAX_CONFIG_BYTES = 1 << 20
# torch.save's legacy (non-zip) format starts with the pickled magic number
# 0x1950a86a20f9469cfc6c, which a LONG1 opcode encodes as these bytes.
_LEGACY_TORCH_MAGIC = b"\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


class DownloadError(Exception):
    """A download failed; ``str(error)`` is a one-line message for users."""


class ChecksumMismatchError(DownloadError):
    """A file differs from the SHA-256 recorded at its first download (and was deleted)."""


class FileCheckError(DownloadError):
    """A file does not have the expected structure; the message says what it is instead."""


# ---------------------------------------------------------------- structure checks


def downsampling_factor(ch_mult: list[int] | tuple[int, ...]) -> int:
    """Pixels per latent cell along one side of a taming model with this ``ddconfig.ch_mult``."""
    return 2 ** (len(ch_mult) - 1)


def config_factor(config: dict[str, object]) -> int | None:
    """The downsampling factor of a taming config read by ``check_config_file`` (None if it doesn't say)."""
    model = config.get("model")
    params = model.get("params") if isinstance(model, dict) else None
    ddconfig = params.get("ddconfig") if isinstance(params, dict) else None
    ch_mult = ddconfig.get("ch_mult") if isinstance(ddconfig, dict) else None
    return downsampling_factor(ch_mult) if isinstance(ch_mult, (list, tuple)) and ch_mult else None


def checkpoint_format(path: Path) -> Literal["zip", "legacy"] | None:
    """``"zip"`` for a torch zip archive with a ``data.pkl``, ``"legacy"`` for
    torch.save's old pickle format, None for anything else (or unreadable)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
            if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
                return "zip"
            return None
        with path.open("rb") as f:
            head = f.read(32)
    except (OSError, zipfile.BadZipFile):
        return None
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5 and _LEGACY_TORCH_MAGIC in head:
        return "legacy"
    return None


def _looks_like_html(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(512).lstrip().lower()
    except OSError:
        return False
    return head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body"))


def check_checkpoint_file(path: Path) -> None:
    """Raise ``FileCheckError`` unless ``path`` is a torch checkpoint archive.

    Cheap: reads the zip directory or the first bytes, never the weights.
    """
    if checkpoint_format(path) is not None:
        return
    if _looks_like_html(path):
        raise FileCheckError(f"{path.name} is a web page, not a PyTorch checkpoint")
    try:
        with path.open("rb") as f:
            head = f.read(4)
        archive = zipfile.is_zipfile(path)
    except OSError as exc:
        raise FileCheckError(f"{path.name} can't be read ({exc.strerror or exc})") from exc
    if archive:
        raise FileCheckError(f"{path.name} is not a PyTorch checkpoint: a zip archive of something else (no data.pkl)")
    if head == b"PK\x03\x04":
        raise FileCheckError(f"{path.name} is not a PyTorch checkpoint as it stands: a zip archive that is "
                             "truncated or corrupt")
    raise FileCheckError(
        f"{path.name} is not a PyTorch checkpoint "
        "(neither a zip archive with data.pkl nor a legacy torch pickle)"
    )


def check_config_file(path: Path, *, codebook_size: int | None = None) -> dict[str, object]:
    """Parse a taming config and return it; raise ``FileCheckError`` unless it is
    a mapping with ``model.params.ddconfig`` (and ``n_embed == codebook_size`` if given)."""
    if path.is_dir():
        raise FileCheckError(f"{path.name} is a folder, not a model config")
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise FileCheckError(f"{path.name} is {size} bytes, too big for a model config")
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FileCheckError(f"{path.name} is not valid YAML ({first_line})") from exc
    except OSError as exc:
        raise FileCheckError(f"{path.name} can't be read ({exc.strerror or exc})") from exc
    model = config.get("model") if isinstance(config, dict) else None
    params = model.get("params") if isinstance(model, dict) else None
    if not isinstance(params, dict) or not isinstance(params.get("ddconfig"), dict):
        hint = " (it is a web page)" if _looks_like_html(path) else ""
        raise FileCheckError(f"{path.name} is not a taming model config: no model.params.ddconfig{hint}")
    if codebook_size is not None and params.get("n_embed") != codebook_size:
        raise FileCheckError(
            f"{path.name} is for a model with n_embed={params.get('n_embed')!r}, "
            f"expected {codebook_size}"
        )
    return config


# open_clip's local-dir: folders: a config and the weights file open_clip would pick, in its order of preference.
CLIP_CONFIG = "open_clip_config.json"
CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
                "open_clip_pytorch_model.pth", "model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")
CLIP_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth")


def local_clip_files(folder: Path) -> tuple[Path, Path]:
    """``(config, weights)`` of an open_clip ``local-dir:`` folder; ``FileCheckError`` saying what is missing.

    Without weights open_clip builds a randomly initialised CLIP and only logs a warning: every
    picture would be noise, so a folder without them is refused here.
    """
    if not folder.is_dir():
        raise FileCheckError(f"CLIP folder {folder} does not exist; `local-dir:` names a folder holding "
                             f"{CLIP_CONFIG} and the weights")
    config = folder / CLIP_CONFIG
    if not config.is_file():
        raise FileCheckError(f"CLIP folder {folder} has no {CLIP_CONFIG}; `local-dir:` needs a config and weights there")
    for name in CLIP_WEIGHTS:
        if (folder / name).is_file():
            return config, folder / name
    others = sorted(p.name for p in folder.iterdir() if p.suffix in CLIP_WEIGHT_SUFFIXES and p.is_file())
    if len(others) == 1:
        return config, folder / others[0]
    if others:
        raise FileCheckError(f"CLIP folder {folder} has several weights files ({', '.join(others)}); keep one, "
                             f"or name the one to use {CLIP_WEIGHTS[0]}")
    raise FileCheckError(f"CLIP folder {folder} has no weights; put {CLIP_WEIGHTS[0]} (or {CLIP_WEIGHTS[2]}) "
                         f"beside its {CLIP_CONFIG}")


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def record_sha256(path: Path, digest: str) -> None:
    """Write ``<path>.sha256`` in ``sha256sum`` format (replacing any old record)."""
    _write_atomically(checksum_path(path), f"{digest}  {path.name}\n")
    logger.info("Recorded SHA-256 %s for %s", digest, path)

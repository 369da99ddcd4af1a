"""Download model files: mirrors, resume, size/structure checks, recorded SHA-256.

Standard library (urllib) plus tqdm for the progress bar; no torch. Nothing
is downloaded at import.

A file is downloaded into ``<dest>.part`` and moved into place atomically once
it passed every check:

1. the size, when known exactly (checked against the server's announced size
   before the transfer, and against the bytes received after it);
2. the structure (``check``): a checkpoint must be a torch archive, a config a
   taming YAML, which catches mirrors that answer with an HTML page;
3. the SHA-256 recorded at the first good download (``<dest>.sha256``, in
   ``sha256sum`` format). No SHA-256 is published for these files, so the first
   good copy is the reference ("trust on first use"). A copy that differs is
   deleted, not kept.

A cut transfer is resumed with an HTTP Range request (and restarted from zero
if the server ignores the Range); a source that fails (refused connection,
HTTP error, wrong size, wrong structure, wrong hash) makes way for the next.
"""

from __future__ import annotations

import logging
import os
import shutil  # noqa: F401  (tests patch shutil.disk_usage through this module)
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from engine.catalog import (
    ModelPaths,
    VQGANModel,
    checksum_path,
    default_model_dir,
    file_sha256,
    get_model,
    model_paths,
    part_path,
    read_recorded_sha256,
)
from engine.download_progress import ByteProgress, ProgressCallback
from engine.http_fetch import DEFAULT_TIMEOUT, SourceFailed, fetch_to_part, host_of, unwritable_error
from engine.model_files import (  # noqa: F401  (re-exported: callers import these from here)
    MAX_CONFIG_BYTES,
    ChecksumMismatchError,
    DownloadError,
    FileCheckError,
    check_checkpoint_file,
    check_config_file,
    checkpoint_format,
    record_sha256,
)

logger = logging.getLogger(__name__)


def _check_download(
    part: Path, *, expected_size: int | None, recorded: str | None, check: Callable[[Path], object] | None
) -> str:
    """Size, structure and recorded hash of a finished ``part``; return its SHA-256.

    On failure the part file is deleted and ``SourceFailed`` raised.
    """
    try:
        size = part.stat().st_size
        if expected_size is not None and size != expected_size:
            raise SourceFailed(f"got {size} bytes, expected {expected_size}")
        if check is not None:
            try:
                check(part)
            except FileCheckError as exc:
                raise SourceFailed(f"sent a bad file: {exc}") from exc
        digest = file_sha256(part)
        if recorded is not None and digest != recorded:
            raise SourceFailed(
                f"its SHA-256 {digest[:16]} differs from the recorded {recorded[:16]}", checksum=True
            )
    except SourceFailed:
        part.unlink(missing_ok=True)
        raise
    return digest


# ---------------------------------------------------------------- public API


def verify_file(
    path: Path, *, expected_size: int | None = None, check: Callable[[Path], object] | None = None
) -> str:
    """Check a downloaded file's size, structure and recorded SHA-256; return the SHA-256.

    A file that fails is deleted and ``DownloadError`` (``ChecksumMismatchError``
    for a hash mismatch) raised. With no hash recorded yet, this file's hash
    becomes the record.
    """
    path = Path(path)
    if not path.exists():
        raise DownloadError(f"{path} does not exist. Download it first (vqbot models download).")
    recorded = read_recorded_sha256(path)
    try:
        digest = _check_download(path, expected_size=expected_size, recorded=recorded, check=check)
    except SourceFailed as exc:
        error = ChecksumMismatchError if exc.checksum else DownloadError
        advice = (
            f"If the file was replaced on purpose, delete {checksum_path(path).name} too; "
            "otherwise download it again."
            if exc.checksum
            else "Download it again."
        )
        raise error(f"{path} was bad and has been deleted: {exc.reason}. {advice}") from None
    if recorded is None:
        record_sha256(path, digest)
    return digest


def download_file(
    urls: Sequence[str],
    dest: Path,
    *,
    expected_size: int | None = None,
    approx_size: int | None = None,
    progress: bool | ProgressCallback = False,
    timeout: float = DEFAULT_TIMEOUT,
    check: Callable[[Path], object] | None = None,
) -> Path:
    """Download ``dest`` from the first of ``urls`` that gives a good file.

    ``expected_size`` (exact bytes) is enforced; ``approx_size`` only sizes the
    progress bar until the server says. ``progress`` is True for a tqdm bar on
    stderr, or ``callback(bytes_done, bytes_total_or_None)``; the count only
    goes down if a server ignores a resume request and the file restarts.
    ``check(path)`` raises ``FileCheckError`` for a bad structure (see
    ``check_checkpoint_file`` / ``check_config_file``). ``timeout`` is per
    connect/read, in seconds.

    An existing ``dest`` that passes the checks is kept (no network); one that
    fails is deleted and downloaded again. Raises ``DownloadError`` (or
    ``ChecksumMismatchError``) with a one-line message when no source works;
    a cut partial download is kept as ``<dest>.part`` so the next try resumes.
    """
    if isinstance(urls, str):
        raise TypeError(f"download_file wants a list of URLs, got the string {urls!r}")
    urls = list(urls)
    if not urls or not all(urls):
        raise ValueError(f"download_file({str(dest)!r}) needs at least one URL; got {urls!r}")
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise unwritable_error(dest.parent, exc) from exc

    if dest.exists():
        try:
            verify_file(dest, expected_size=expected_size, check=check)
            logger.info("%s is already downloaded", dest)
            return dest
        except DownloadError as exc:
            logger.warning("%s; downloading it again", exc)

    recorded = read_recorded_sha256(dest)
    part = part_path(dest)
    failures: list[SourceFailed] = []
    summary: list[str] = []
    with ByteProgress(progress, dest.name, expected_size or approx_size) as bar:
        for url in urls:
            try:
                fetch_to_part(url, part, expected_size=expected_size, timeout=timeout, progress=bar)
                digest = _check_download(part, expected_size=expected_size, recorded=recorded, check=check)
            except SourceFailed as exc:
                logger.warning("Download of %s from %s failed: %s", dest.name, url, exc.reason)
                failures.append(exc)
                summary.append(f"{host_of(url)}: {exc.reason}")
                continue
            os.replace(part, dest)
            if recorded is None:
                record_sha256(dest, digest)
            logger.info("Downloaded %s from %s (sha256 %s)", dest, url, digest)
            return dest

    reasons = "; ".join(summary)
    if any(f.checksum for f in failures):
        raise ChecksumMismatchError(
            f"Downloaded {dest.name} does not match the SHA-256 recorded at its first download, "
            f"so it was deleted ({reasons}). If the file changed upstream on purpose, delete "
            f"{checksum_path(dest)} and download again."
        )
    advice = "Check the network and try again (a cut download resumes)" if part.exists() else (
        "Check the network and try again later"
    )
    raise DownloadError(
        f"Could not download {dest.name} from any of {len(urls)} source(s) ({reasons}). "
        f"{advice}, or put the file there by hand: {dest}."
    )


def download_model(
    model: str | VQGANModel,
    model_dir: Path | None = None,
    *,
    progress: bool | ProgressCallback = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> ModelPaths:
    """Download (or check) a catalogue model's config and checkpoint into ``model_dir``.

    ``model`` is a catalogue name or a ``VQGANModel``; ``model_dir`` defaults to
    ``default_model_dir()``. Returns the model's paths. Raises
    ``UnknownModelError`` for a bad name and ``DownloadError`` when a file
    cannot be had.
    """
    spec = model if isinstance(model, VQGANModel) else get_model(model)
    root = Path(model_dir) if model_dir is not None else default_model_dir()
    paths = model_paths(spec, root)
    download_file(
        spec.config.urls, paths.config,
        expected_size=spec.config.size, approx_size=spec.config.approx_size,
        progress=progress, timeout=timeout,
        check=partial(check_config_file, codebook_size=spec.codebook_size),
    )
    download_file(
        spec.checkpoint.urls, paths.checkpoint,
        expected_size=spec.checkpoint.size, approx_size=spec.checkpoint.approx_size,
        progress=progress, timeout=timeout, check=check_checkpoint_file,
    )
    return paths


def verify_model(model: str | VQGANModel, model_dir: Path | None = None) -> ModelPaths:
    """Hash-check a downloaded model's config and checkpoint; delete and raise on mismatch."""
    spec = model if isinstance(model, VQGANModel) else get_model(model)
    paths = model_paths(spec, model_dir)
    verify_file(
        paths.config, expected_size=spec.config.size,
        check=partial(check_config_file, codebook_size=spec.codebook_size),
    )
    verify_file(paths.checkpoint, expected_size=spec.checkpoint.size, check=check_checkpoint_file)
    return paths

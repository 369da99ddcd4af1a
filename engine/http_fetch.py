"""One model file from one URL over HTTP: a resumable transfer into ``<dest>.part``.

engine/download.py tries the sources in turn and checks what arrives; this module
moves the bytes: Range requests to resume a cut transfer (restarting from zero
when the server ignores them), the announced size checked against the expected
one and the free disk space before the transfer, and short error phrases for the
summary a failed download prints.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import shutil
import socket
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from engine.catalog import MODEL_DIR_ENV
from engine.download_progress import ByteProgress
from engine.model_files import DownloadError

logger = logging.getLogger(__name__)


CHUNK_SIZE = 1 << 20
DEFAULT_TIMEOUT = 30.0
MAX_RESUMES = 5
USER_AGENT = "vqbot-model-downloader/0.1"

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.IGNORECASE)


class SourceFailed(Exception):
    """One URL did not give a good file; ``reason`` is a short phrase for the summary."""

    def __init__(self, reason: str, *, checksum: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.checksum = checksum


# ---------------------------------------------------------------- one source


def host_of(url: str) -> str:
    return urlsplit(url).netloc or url


def _describe_error(exc: BaseException) -> str:
    """A short phrase for a failed request: ``HTTP 404 Not Found``, ``connection refused``..."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}".strip()
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return "host not found"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``(first_byte, total)`` from a Content-Range header; None where absent or ``*``."""
    match = _CONTENT_RANGE.match(value.strip()) if value else None
    if not match:
        return None, None
    first = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(3)) if match.group(3) != "*" else None
    return first, total


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _ensure_disk_space(part: Path, needed: int) -> None:
    free = shutil.disk_usage(part.parent).free
    if needed > free:
        raise DownloadError(
            f"Not enough disk space for {part.name.removesuffix('.part')} in {part.parent}: "
            f"need {needed / 1e6:.0f} MB, {free / 1e6:.0f} MB free. "
            f"Free some space or set {MODEL_DIR_ENV} to a folder on another disk."
        )


def unwritable_error(path: Path, exc: OSError) -> DownloadError:
    return DownloadError(
        f"Could not write {path} ({exc.strerror or exc}). "
        f"Check free space and permissions there, or set {MODEL_DIR_ENV} to another folder."
    )


def fetch_to_part(url: str, part: Path, *, expected_size: int | None, timeout: float, progress: ByteProgress) -> None:
    """Download ``url`` into ``part``, resuming what is there. Raises ``SourceFailed``."""
    resumes = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if expected_size is not None and offset > expected_size:
            logger.warning("Discarding %s: %d bytes, more than the expected %d", part, offset, expected_size)
            part.unlink()
            offset = 0
        if expected_size is not None and offset == expected_size:
            logger.info("%s is already complete", part)
            return
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(url, headers=headers)
        logger.info("Downloading %s from %s (from byte %d)", part.name, url, offset)
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and offset:
                _, total = _parse_content_range(exc.headers.get("Content-Range"))
                if total == offset:
                    logger.info("%s is already complete (server answered 416)", part)
                    return
                logger.warning("Server refused to resume %s at byte %d; starting again", part.name, offset)
                part.unlink()
                if resumes >= MAX_RESUMES:
                    raise SourceFailed("server refused to resume") from exc
                resumes += 1
                continue
            raise SourceFailed(_describe_error(exc)) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise SourceFailed(_describe_error(exc)) from exc

        with response:
            length = _content_length(response)
            first, total = _parse_content_range(response.headers.get("Content-Range"))
            if response.status == 206 and first == offset:
                mode = "ab" if offset else "wb"
                if total is None and length is not None:
                    total = offset + length
            elif response.status == 200:
                if offset:
                    logger.warning(
                        "%s ignored the Range request; downloading %s from the start", host_of(url), part.name
                    )
                offset = 0
                mode = "wb"
                total = length
            else:
                raise SourceFailed(
                    f"unexpected HTTP {response.status} for a request from byte {offset} "
                    f"(Content-Range {response.headers.get('Content-Range')!r})"
                )
            if expected_size is not None and total is not None and total != expected_size:
                raise SourceFailed(f"server offers {total} bytes, expected {expected_size}")
            remaining = (total - offset) if total is not None else None
            if remaining is not None:
                _ensure_disk_space(part, remaining)
            progress.set(offset, total if total is not None else expected_size)
            received = 0
            interruption: BaseException | None = None
            try:
                with part.open(mode) as f:
                    while True:
                        try:
                            chunk = response.read(CHUNK_SIZE)
                        except (OSError, http.client.HTTPException) as exc:
                            interruption = exc
                            break
                        if not chunk:
                            break
                        f.write(chunk)
                        received += len(chunk)
                        progress.add(len(chunk))
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:
                raise unwritable_error(part, exc) from exc

        if interruption is None and (remaining is None or received >= remaining):
            return
        reason = (
            f"connection cut after {offset + received} bytes"
            + (f" ({_describe_error(interruption)})" if interruption is not None else "")
        )
        if received == 0 or resumes >= MAX_RESUMES:
            raise SourceFailed(reason)
        resumes += 1
        logger.warning("%s: %s; resuming (attempt %d of %d)", part.name, reason, resumes, MAX_RESUMES)

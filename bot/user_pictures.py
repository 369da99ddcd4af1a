"""Pictures members give a job (init image, image prompt): fetched from Discord's CDN, checked and kept.

The checks come before and after the download: the host must be Discord's CDN,
the announced size must be under the cap, and the bytes must decode as a
picture (the type comes from the content, never the file name) under the pixel
cap, with decompression bombs refused before decoding.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import discord
from PIL import Image, UnidentifiedImageError

from bot.errors import AttachmentError

log = logging.getLogger(__name__)

ACCEPTED_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}


@dataclass(frozen=True)
class PictureCaps:
    hosts: tuple[str, ...]
    max_bytes: int
    max_pixels: int


@dataclass(frozen=True)
class Picture:
    data: bytes
    format: str  # "png", "jpg", ...
    width: int
    height: int

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB"


def check_announced(attachment: discord.Attachment, caps: PictureCaps, *, what: str) -> None:
    """Refuse what the attachment's metadata already rules out, before downloading anything."""
    host = (urlsplit(attachment.url).hostname or "").lower()
    if host not in caps.hosts:
        raise AttachmentError(f"The {what} must be uploaded to Discord; links to other sites are not accepted.")
    if attachment.size > caps.max_bytes:
        raise AttachmentError(
            f"The {what} is {_mib(attachment.size)}; upload a picture under {_mib(caps.max_bytes)}."
        )
    if attachment.width and attachment.height and attachment.width * attachment.height > caps.max_pixels:
        raise AttachmentError(
            f"The {what} is {attachment.width}x{attachment.height} pixels; "
            f"use a picture under {caps.max_pixels / 1e6:g} megapixels."
        )


def check_picture(data: bytes, caps: PictureCaps, *, what: str) -> Picture:
    """Decode ``data`` safely and return what it is; AttachmentError otherwise."""
    if len(data) > caps.max_bytes:
        raise AttachmentError(f"The {what} is {_mib(len(data))}; upload a picture under {_mib(caps.max_bytes)}.")
    not_a_picture = AttachmentError(f"The {what} is not a picture I can read; upload a PNG, JPEG, WebP or GIF.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:  # reads the header only
                fmt = ACCEPTED_FORMATS.get(img.format or "")
                if fmt is None:
                    raise not_a_picture
                width, height = img.size
                if width * height > caps.max_pixels:
                    raise AttachmentError(
                        f"The {what} is {width}x{height} pixels; use a picture under {caps.max_pixels / 1e6:g} megapixels."
                    )
                img.load()  # a full decode: truncated or corrupt files fail here
    except AttachmentError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise AttachmentError(f"The {what} is too large to decode safely; use a smaller picture.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise not_a_picture from None
    return Picture(data=data, format=fmt, width=width, height=height)


async def fetch_picture(attachment: discord.Attachment, caps: PictureCaps, *, what: str) -> Picture:
    """Download an attachment from the CDN and check it."""
    check_announced(attachment, caps, what=what)
    try:
        data = await attachment.read()
    except (discord.HTTPException, discord.NotFound) as exc:
        log.warning("attachment %s could not be downloaded: %s", attachment.id, exc)
        raise AttachmentError(f"I could not download the {what}; upload it again.") from None
    return check_picture(data, caps, what=what)


def save_picture(picture: Picture, folder: Path) -> Path:
    """Store the picture under its content hash (so reruns share it) and return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{picture.digest}.{picture.format}"
    if path.exists():
        path.touch()  # in use again: housekeeping (worker/housekeeping.py) spares recently changed files
    else:
        tmp = path.with_suffix(".part")
        tmp.write_bytes(picture.data)
        tmp.replace(path)
    return path

"""The files of a result message: the finished picture under Discord's upload limit, then the
timelapse (Pillow only, no torch)."""

from __future__ import annotations

import io
import logging

import discord
from PIL import Image

log = logging.getLogger(__name__)


def shrink_to_jpeg(png: bytes, limit: int) -> bytes:
    """Re-encode a PNG as JPEG at falling quality until it fits ``limit`` bytes."""
    with Image.open(io.BytesIO(png)) as img:
        rgb = img.convert("RGB")
    for quality in (95, 90, 80, 70, 50):
        buffer = io.BytesIO()
        rgb.save(buffer, format="JPEG", quality=quality)
        if buffer.tell() <= limit:
            return buffer.getvalue()
    raise ValueError(f"a {rgb.width}x{rgb.height} picture does not fit {limit} bytes even as JPEG")


def fit_upload(job_id: int, png: bytes, timelapse: bytes | None, *, limit: int) -> list[discord.File]:
    """The files of a result message: the PNG (or a JPEG when the PNG is too big), then the
    timelapse if there is room left under ``limit``."""
    if len(png) <= limit:
        files = [discord.File(io.BytesIO(png), filename=f"vqbot-{job_id}.png")]
        used = len(png)
    else:
        jpeg = shrink_to_jpeg(png, limit)
        log.info("job %s: PNG of %d bytes is over the upload limit; sending JPEG of %d", job_id, len(png), len(jpeg))
        files = [discord.File(io.BytesIO(jpeg), filename=f"vqbot-{job_id}.jpg")]
        used = len(jpeg)
    if timelapse is not None:
        if used + len(timelapse) <= limit:
            files.append(discord.File(io.BytesIO(timelapse), filename=f"vqbot-{job_id}-timelapse.webp"))
        else:
            log.info("job %s: timelapse of %d bytes left out (upload limit)", job_id, len(timelapse))
    return files

"""The 2x2 picture of a grid's four candidates, composed with Pillow (the bot never imports torch).

Each tile is a candidate's newest picture (its progress preview, or its finished PNG) scaled to
the candidate's size; a candidate with no picture yet is a grey tile. Progress goes out as a
small WebP, the finished grid as a PNG.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence

from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

EMPTY = (54, 57, 63)  # Discord's dark grey: a candidate with nothing to show yet
GAP = 4  # pixels between the tiles
MAX_TILE_PIXELS = 2048 * 2048  # what a picture of the worker's may decode to (the engine's largest)


def tile(data: bytes | None, size: tuple[int, int]) -> Image.Image:
    """One candidate's picture at ``size``; a grey tile when there is none or it does not decode."""
    if data is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as img:
                    if img.width * img.height <= MAX_TILE_PIXELS:
                        return img.convert("RGB").resize(size, Image.Resampling.LANCZOS)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
                Image.DecompressionBombError, Image.DecompressionBombWarning):
            log.warning("a candidate's picture does not decode; showing a blank tile")
    return Image.new("RGB", size, EMPTY)


def compose(pictures: Sequence[bytes | None], size: tuple[int, int], *, final: bool) -> bytes:
    """The pictures (up to four, in grid order: top left, top right, bottom left, bottom right)
    as one 2x2 picture of tiles of ``size``: PNG when ``final``, else WebP."""
    width, height = size
    grid = Image.new("RGB", (2 * width + GAP, 2 * height + GAP), (0, 0, 0))
    for index in range(4):
        data = pictures[index] if index < len(pictures) else None
        grid.paste(tile(data, size), ((index % 2) * (width + GAP), (index // 2) * (height + GAP)))
    buffer = io.BytesIO()
    if final:
        grid.save(buffer, format="PNG", optimize=True)
    else:
        grid.save(buffer, format="WEBP", quality=70)
    return buffer.getvalue()

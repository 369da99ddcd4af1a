"""Picture files for upload tests."""

from __future__ import annotations

import io
import struct
import zlib
from functools import lru_cache

from PIL import Image


def small_png(size: tuple[int, int] = (32, 32), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@lru_cache(maxsize=2)
def huge_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid PNG of width x height black pixels, built by hand: a few hundred KB that decode to 1.2 GB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\x00" * (width * 3)
    compressor = zlib.compressobj(1)
    block = row * 500
    body = b"".join(compressor.compress(block) for _ in range(height // 500)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def picture(fmt: str, size: tuple[int, int] = (32, 32), frames: int = 1) -> bytes:
    """A small picture in any format Pillow writes ("JPEG", "TIFF", "GIF", ...)."""
    buffer = io.BytesIO()
    images = [Image.new("RGB", size, (10 * i, 30, 30)) for i in range(frames)]
    images[0].save(buffer, format=fmt, save_all=frames > 1, append_images=images[1:])
    return buffer.getvalue()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32"><script>alert(1)</script></svg>'
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"

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

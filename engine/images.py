"""Pictures in and out: safe loading of user images, PNG with metadata, timelapses.

Reading and checking a picture needs only Pillow (``read_picture``), so a command can refuse a bad
file before torch is imported; torch is imported where pictures become tensors and back.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, PngImagePlugin, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

MAX_INPUT_PIXELS = 40_000_000  # about 6300 x 6300; bigger inputs are refused, not decoded
MAX_INPUT_BYTES = 50 * 1024 * 1024


class ImageInputError(ValueError):
    """A picture given by the user can't be used; the message says why."""


def read_picture(source: str | Path | bytes, *, what: str = "image") -> Image.Image:
    """Decode a picture file or bytes (any mode) into an RGB picture; raise ImageInputError saying why not.

    The type is checked by decoding, not by the file name; decompression bombs
    and oversized files are refused.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        name = path.name  # never the folder: a worker's message may reach users, and the folder is the host's
        if path.is_dir():
            raise ImageInputError(f"The {what} {name} is a folder, not a picture.")
        if not path.is_file():
            raise ImageInputError(f"The {what} {name} does not exist.")
        try:
            if path.stat().st_size > MAX_INPUT_BYTES:
                raise ImageInputError(f"The {what} {name} is larger than {MAX_INPUT_BYTES // 2**20} MiB.")
            data = path.read_bytes()
        except OSError as exc:
            raise ImageInputError(f"The {what} {name} can't be read ({exc.strerror or exc}).") from None
    else:
        data, name = source, "upload"
        if len(data) > MAX_INPUT_BYTES:
            raise ImageInputError(f"The {what} is larger than {MAX_INPUT_BYTES // 2**20} MiB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > MAX_INPUT_PIXELS:
                    raise ImageInputError(
                        f"The {what} is {img.width}x{img.height} pixels; use a picture under {MAX_INPUT_PIXELS // 1_000_000} megapixels."
                    )
                img.seek(0)
                rgb = img.convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning, OSError, SyntaxError) as exc:
        if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            raise ImageInputError(f"The {what} is too large to decode safely; use a smaller picture.") from None
        raise ImageInputError(f"The {what} {name} is not a picture that can be read (PNG, JPEG, WebP, GIF, ...).") from None
    return rgb


def load_image(source: str | Path | bytes, *, what: str = "image") -> torch.Tensor:
    """Decode a picture file or bytes (any mode) into (1, 3, H, W) float32 in [0, 1] (see ``read_picture``)."""
    import torch

    rgb = read_picture(source, what=what)
    tensor = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
    return tensor.view(rgb.height, rgb.width, 3).permute(2, 0, 1).unsqueeze(0).float().div(255)


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] (or uint8) -> PIL RGB image."""
    import torch

    if image.dtype != torch.uint8:
        image = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    array = image.permute(1, 2, 0).contiguous().cpu().numpy()
    return Image.fromarray(array, "RGB")


def png_bytes(image: torch.Tensor, metadata: dict[str, Any]) -> bytes:
    """Encode a picture as PNG with ``metadata`` as text chunks (``vqbot`` holds all of it as JSON)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("vqbot", json.dumps(metadata, sort_keys=True))
    for key in ("prompt", "seed", "model", "clip_model", "steps"):
        if key in metadata:
            info.add_text(key, str(metadata[key]))
    info.add_text("Software", "vqbot (VQGAN+CLIP)")
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def preview_bytes(image: torch.Tensor, *, max_side: int = 512, quality: int = 80) -> bytes:
    """A small WebP of a progress picture, for chat previews."""
    pil = to_pil(image)
    pil.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    pil.save(buffer, format="WEBP", quality=quality)
    return buffer.getvalue()


def timelapse_bytes(frames: list[torch.Tensor], *, fmt: str = "webp", frame_ms: int = 80, max_side: int = 512) -> bytes:
    """An animation of the optimisation from uint8 frames (3, H, W); the last frame holds longer."""
    if not frames:
        raise ValueError("a timelapse needs at least one frame")
    pictures = []
    for frame in frames:
        pil = to_pil(frame)
        pil.thumbnail((max_side, max_side))
        pictures.append(pil)
    durations = [frame_ms] * (len(pictures) - 1) + [frame_ms * 15]
    buffer = io.BytesIO()
    fmt = fmt.lower()
    if fmt not in ("webp", "gif"):
        raise ValueError(f"timelapse format {fmt!r}; valid formats are 'webp' and 'gif'")
    kwargs = {"quality": 75} if fmt == "webp" else {"optimize": True}
    pictures[0].save(buffer, format=fmt.upper(), save_all=True, append_images=pictures[1:], duration=durations, loop=0, **kwargs)
    return buffer.getvalue()

"""Convert a taming VQGAN checkpoint (.ckpt) into inference-only safetensors.

The published checkpoints are pytorch-lightning pickles: besides the weights
they hold the training loss (LPIPS + discriminator) and optimiser state, and
sometimes objects that only load with arbitrary-code pickle. The converted
file holds only the weights inference needs and loads without pickle.
"""

from __future__ import annotations

import logging
import os
import pickle
import shlex
import tempfile
import types
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from engine.model_files import checkpoint_format
from engine.vqgan import INFERENCE_PREFIXES  # the weights inference needs: one definition

logger = logging.getLogger(__name__)

_NEEDED_PREFIXES: tuple[str, ...] = ("decoder.", "quantize.")
_WEIGHTS_ONLY_FAILURE = "Weights only load failed"


class ConvertError(Exception):
    """A checkpoint could not be converted; ``str(error)`` is a one-line message for users."""


class UntrustedCheckpointError(ConvertError):
    """The checkpoint needs full pickle to load and ``trust_pickle`` was not given."""

    def __init__(self, src: Path) -> None:
        self.src = src
        self.command = f"vqbot models convert {shlex.quote(str(src))} --trust-pickle"
        super().__init__(
            f"{src} contains Python objects besides tensors, and loading those runs code from the file. "
            f"If you trust where it came from, run: {self.command}"
        )


@dataclass(frozen=True)
class ConversionReport:
    """What a conversion kept and dropped.

    ``dropped`` counts state-dict entries by their first name component
    (``{"loss": 164}``); ``dropped_top_level`` lists the other keys of the
    checkpoint (``epoch``, ``optimizer_states``...).
    """

    src: Path
    dst: Path
    kept: int
    parameters: int
    dropped: Mapping[str, int] = field(default_factory=dict)
    dropped_top_level: tuple[str, ...] = ()
    used_pickle: bool = False


# ---------------------------------------------------------------- loading


class _MissingGlobal(dict):
    """Inert stand-in for a class or function of a module that is not installed.

    Trusted checkpoints refer to e.g. ``pytorch_lightning`` callbacks, which we
    neither need nor install. It accepts whatever pickle hands it (arguments,
    state, dict items, list items) and does nothing.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> _MissingGlobal:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.args = args
        self.items_: list[Any] = []

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def append(self, item: Any) -> None:
        self.items_.append(item)

    def extend(self, items: Any) -> None:
        self.items_.extend(items)


class _LenientUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            logger.warning(
                "Checkpoint refers to %s.%s, which is not installed; using a placeholder", module, name
            )
            return type(name, (_MissingGlobal,), {"__module__": module, "__qualname__": name})


def _lenient_load(file: Any, **kwargs: Any) -> Any:
    return _LenientUnpickler(file, **kwargs).load()


_lenient_pickle = types.ModuleType("vqbot_lenient_pickle")
_lenient_pickle.Unpickler = _LenientUnpickler  # type: ignore[attr-defined]
_lenient_pickle.Pickler = pickle.Pickler  # type: ignore[attr-defined]
_lenient_pickle.load = _lenient_load  # type: ignore[attr-defined]
_lenient_pickle.dump = pickle.dump  # type: ignore[attr-defined]


def _unreadable(src: Path, detail: str) -> ConvertError:
    return ConvertError(
        f"{src} is not a readable PyTorch checkpoint ({detail}). "
        "It may be truncated or damaged: delete it and download it again."
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_checkpoint(src: Path, *, trust_pickle: bool) -> tuple[Any, bool]:
    """Load a checkpoint on the CPU; return ``(object, used_pickle)``.

    Tries ``weights_only=True`` first. Files that need full pickle load only
    with ``trust_pickle`` (else ``UntrustedCheckpointError``); modules the file
    refers to that are not installed are replaced by inert placeholders.
    Raises ``ConvertError`` naming the file if it is missing, truncated or not
    a torch checkpoint.
    """
    src = Path(src)
    if not src.is_file():
        raise ConvertError(f"{src} does not exist. Check the path, or download the model first.")
    fmt = checkpoint_format(src)
    if fmt is None:
        raise _unreadable(src, "neither a torch zip archive nor a legacy torch pickle")
    mmap = fmt == "zip"
    try:
        return torch.load(src, map_location="cpu", weights_only=True, mmap=mmap), False
    except pickle.UnpicklingError as exc:
        if _WEIGHTS_ONLY_FAILURE not in str(exc):
            raise _unreadable(src, _first_line(exc)) from exc
        logger.info("%s needs full pickle to load: %s", src, _first_line(exc))
    except Exception as exc:  # torch raises RuntimeError, EOFError, struct.error... for bad files
        raise _unreadable(src, _first_line(exc)) from exc

    if not trust_pickle:
        raise UntrustedCheckpointError(src)
    logger.warning("Loading %s with full pickle (trusted by the user)", src)
    try:
        obj = torch.load(
            src, map_location="cpu", weights_only=False, mmap=mmap, pickle_module=_lenient_pickle
        )
    except Exception as exc:
        raise _unreadable(src, _first_line(exc)) from exc
    return obj, True


# ---------------------------------------------------------------- selecting weights


def _group(key: str) -> str:
    return key.split(".", 1)[0] if "." in key else key


def inference_state_dict(
    checkpoint: Any, *, source: str = "checkpoint"
) -> tuple[dict[str, torch.Tensor], dict[str, int], tuple[str, ...]]:
    """Pick the inference weights out of a loaded checkpoint.

    ``checkpoint`` is a lightning checkpoint dict (weights under
    ``state_dict``) or a flat ``{name: tensor}`` dict. Returns
    ``(weights, dropped_counts_by_prefix, dropped_top_level_keys)``; raises
    ``ConvertError`` if it holds no VQGAN weights.
    """
    if not isinstance(checkpoint, Mapping):
        raise ConvertError(
            f"{source} holds a {type(checkpoint).__name__}, not a checkpoint "
            "(a dict with a state_dict of tensors). Check that it is a taming VQGAN .ckpt file."
        )
    top_level: tuple[str, ...] = ()
    if isinstance(checkpoint.get("state_dict"), Mapping):
        state = checkpoint["state_dict"]
        top_level = tuple(str(k) for k in checkpoint if k != "state_dict")
    elif checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state = checkpoint
    else:
        keys = ", ".join(sorted(str(k) for k in checkpoint)[:8]) or "nothing"
        raise ConvertError(
            f"{source} has no state_dict and is not a dict of tensors (it has {keys}). "
            "Check that it is a taming VQGAN .ckpt file."
        )

    kept: dict[str, torch.Tensor] = {}
    dropped: Counter[str] = Counter()
    for key, value in state.items():
        name = str(key)
        if not name.startswith(INFERENCE_PREFIXES):
            dropped[_group(name)] += 1
        elif not isinstance(value, torch.Tensor):
            dropped[f"{_group(name)} (not a tensor)"] += 1
        else:
            kept[name] = value

    missing = [p.rstrip(".") for p in _NEEDED_PREFIXES if not any(k.startswith(p) for k in kept)]
    if missing:
        raise ConvertError(
            f"{source} holds no VQGAN {' or '.join(missing)} weights (its groups are: "
            f"{', '.join(sorted({_group(str(k)) for k in state})) or 'none'}). "
            "Check that it is a taming VQGAN .ckpt file."
        )
    for prefix in INFERENCE_PREFIXES:
        if not any(k.startswith(prefix) for k in kept):
            logger.warning("%s has no %s* weights", source, prefix)
    return kept, dict(sorted(dropped.items())), top_level


def _contiguous_unshared(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous tensors that share no memory (safetensors refuses shared ones)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in tensors.items():
        t = tensor.detach().contiguous()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:
            t = t.clone()
        elif ptr is not None:
            seen.add(ptr)
        out[key] = t
    return out


# ---------------------------------------------------------------- converting


def convert_checkpoint(
    src: Path,
    dst: Path,
    *,
    trust_pickle: bool,
    on_report: Callable[[ConversionReport], None] | None = None,
) -> Path:
    """Write the inference weights of taming checkpoint ``src`` to ``dst`` (.safetensors).

    Keeps ``encoder.``, ``decoder.``, ``quantize.``, ``quant_conv.`` and
    ``post_quant_conv.`` tensors, drops ``loss.*`` and training state, writes
    atomically with metadata ``{"format": "pt", "source": src.name}``. The
    report (also logged) goes to ``on_report``. Raises ``UntrustedCheckpointError``
    when the file needs pickle and ``trust_pickle`` is False, ``ConvertError``
    for files that are not VQGAN checkpoints.
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ConvertError(f"Source and destination are the same file ({src}). Choose another destination.")
    checkpoint, used_pickle = load_checkpoint(src, trust_pickle=trust_pickle)
    weights, dropped, top_level = inference_state_dict(checkpoint, source=str(src))
    tensors = _contiguous_unshared(weights)

    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt", "source": src.name})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

    report = ConversionReport(
        src=src,
        dst=dst,
        kept=len(tensors),
        parameters=sum(t.numel() for t in tensors.values()),
        dropped=dropped,
        dropped_top_level=top_level,
        used_pickle=used_pickle,
    )
    logger.info(
        "Converted %s -> %s: kept %d tensors (%d parameters), dropped %s; other checkpoint keys: %s",
        src, dst, report.kept, report.parameters,
        ", ".join(f"{k}: {n}" for k, n in dropped.items()) or "nothing",
        ", ".join(top_level) or "none",
    )
    if on_report is not None:
        on_report(report)
    return dst

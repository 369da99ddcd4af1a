"""Settings from the environment and ``.env`` (every key is documented in .env.example).

Every value is checked when the command starts: a bad one is refused with one sentence
that names the setting and its valid choices, before anything slow happens.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.catalog import default_model_dir, get_model
from jobspec.params import DEFAULT_CLIP, DEFAULT_CLIP_PRETRAINED, DEFAULT_VQGAN
from vqbot_cli.errors import UsageError, shown

# The engine's choices, spelled here so settings are checked without importing torch
# (tests/cli/test_settings.py holds them equal to engine.models.PRECISIONS and engine.compiling.COMPILE_MODES).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
COMPILE_MODES = ("auto", "none", "default", "reduce-overhead")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEVICES = "auto, cpu, cuda, cuda:N (N a GPU number) or mps"
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]{1,3})?")
_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
MAX_ENV_FILE_BYTES = 1 << 20
DEFAULT_ENV_FILE = Path(".env")


def check_device(value: str, *, what: str) -> str:
    """``value`` as a device name torch understands, or UsageError naming the valid forms."""
    name = value.strip().lower()
    if not _DEVICE.fullmatch(name):
        raise UsageError(f"{what} must be {DEVICES}, not {shown(value)}.")
    return name


def check_choice(value: str, choices: tuple[str, ...], *, what: str, upper: bool = False) -> str:
    """``value`` if it is one of ``choices`` (compared ignoring case and spaces), else UsageError."""
    cleaned = value.strip().upper() if upper else value.strip().lower()
    if cleaned not in choices:
        raise UsageError(f"{what} must be one of {', '.join(choices)}, not {shown(value)}.")
    return cleaned


def switch(key: str, env: Mapping[str, str] | None = None) -> bool:
    """An on/off setting: 1, true, yes, on / 0, false, no, off (any case); unset or empty is on."""
    value = (os.environ if env is None else env).get(key, "").strip().lower()
    if not value or value in _ON:
        return True
    if value in _OFF:
        return False
    raise UsageError(f"{key} must be 1 or 0 (also on/off, true/false, yes/no), not {shown(value)}.")


def number(key: str, default: float, low: float, high: float, *, whole: bool = False,
           env: Mapping[str, str] | None = None) -> float:
    """A numeric setting in [low, high]; unset or empty gives ``default``."""
    text = (os.environ if env is None else env).get(key, "").strip()
    if not text:
        return default
    kind = "a whole number" if whole else "a number"
    try:
        value = float(int(text)) if whole else float(text)
    except (ValueError, OverflowError):
        value = float("nan")
    if not low <= value <= high:  # also refuses nan and inf
        raise UsageError(f"{key} must be {kind} from {low:g} to {high:g}, not {shown(text)}.")
    return value


def load_env_file(path: Path, *, required: bool) -> None:
    """Put the ``KEY=value`` lines of ``path`` into the environment (real environment variables win).

    A missing file is fine unless ``required`` (named with ``--env-file``); a file that isn't
    text, or a line that isn't ``KEY=value``, is refused with its line number.
    """
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    if not path.exists():
        if required:
            raise UsageError(f"The settings file {shown(path)} does not exist; check --env-file.")
        return
    if not path.is_file():
        raise UsageError(f"The settings file {shown(path)} is not a file; --env-file names a file like .env.")
    try:
        data = path.read_bytes()[: MAX_ENV_FILE_BYTES + 1]
    except OSError as exc:
        raise UsageError(f"The settings file {shown(path)} can't be read ({exc.strerror or exc}).") from None
    if len(data) > MAX_ENV_FILE_BYTES:
        raise UsageError(f"The settings file {shown(path)} is over {MAX_ENV_FILE_BYTES >> 20} MiB; is it a settings file?")
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark, as some editors write, is not part of the first key
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UsageError(f"The settings file {shown(path)} is not UTF-8 text (line {line}).") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise UsageError(f"Line {binding.original.line} of the settings file {shown(path)} is not KEY=value: "
                             f"{shown(binding.original.string.strip())}.")
    for key, value in dotenv_values(stream=io.StringIO(text)).items():
        if value is None or key in os.environ:
            continue
        if "\0" in value or "\0" in key or "=" in key or not key:
            raise UsageError(f"The setting {shown(key)} in {shown(path)} has a NUL character or a bad name.")
        os.environ[key] = value


class SecretStr:
    """A secret that never shows in logs, reprs or tracebacks."""

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "SecretStr('**********')" if self._value else "SecretStr('')"

    __str__ = __repr__


@dataclass(frozen=True)
class Settings:
    discord_token: SecretStr
    database: Path  # the SQLite file (VQBOT_DATABASE as a path); see database_spec for what to open
    model_dir: Path
    device: str
    precision: str
    compile: str
    fused_kernels: bool
    vqgan: str
    vqgan_config: Path | None
    vqgan_checkpoint: Path | None
    clip: str
    clip_pretrained: str
    log_level: str
    database_spec: str = "data/vqbot.sqlite3"  # VQBOT_DATABASE as given: a file, sqlite:///path or postgresql://

    @classmethod
    def from_env(cls, env_file: Path | None = DEFAULT_ENV_FILE, *, required: bool = False) -> Settings:
        """Read ``env_file`` (if present, or insist on it with ``required``; real environment variables
        win) and the environment; raise UsageError for the first bad value."""
        if env_file is not None:
            load_env_file(env_file, required=required)
        get = os.environ.get

        def optional_path(key: str) -> Path | None:
            value = (get(key) or "").strip()
            return Path(value).expanduser() if value else None

        vqgan = (get("VQBOT_VQGAN") or "").strip() or DEFAULT_VQGAN
        try:
            vqgan = get_model(vqgan).name
        except ValueError as exc:
            raise UsageError(f"VQBOT_VQGAN: {exc}") from None
        config, checkpoint = optional_path("VQBOT_VQGAN_CONFIG"), optional_path("VQBOT_VQGAN_CHECKPOINT")
        if (config is None) != (checkpoint is None):
            raise UsageError("VQBOT_VQGAN_CONFIG and VQBOT_VQGAN_CHECKPOINT go together; set both or neither.")
        clip = (get("VQBOT_CLIP") or "").strip() or DEFAULT_CLIP
        pretrained = get("VQBOT_CLIP_PRETRAINED")
        if clip.startswith("local-dir:"):  # such a folder holds its own weights; a tag would be recorded falsely
            pretrained = ""
        from db.open import backend_of, sqlite_path

        spec = (get("VQBOT_DATABASE") or "").strip() or "data/vqbot.sqlite3"
        try:
            sqlite = backend_of(spec) == "sqlite"
        except ValueError as exc:
            raise UsageError(f"VQBOT_DATABASE: {exc}") from None
        return cls(
            discord_token=SecretStr((get("DISCORD_TOKEN") or "").strip()),
            database=sqlite_path(spec) if sqlite else Path("data/vqbot.sqlite3"),
            database_spec=spec,
            model_dir=default_model_dir(),
            device=check_device(get("VQBOT_DEVICE") or "auto", what="VQBOT_DEVICE"),
            precision=check_choice(get("VQBOT_PRECISION") or "auto", PRECISIONS, what="VQBOT_PRECISION"),
            compile=check_choice(get("VQBOT_COMPILE") or "auto", COMPILE_MODES, what="VQBOT_COMPILE"),
            fused_kernels=switch("VQBOT_FUSED_KERNELS"),
            vqgan=vqgan,
            vqgan_config=config,
            vqgan_checkpoint=checkpoint,
            clip=clip,
            clip_pretrained=DEFAULT_CLIP_PRETRAINED if pretrained is None else pretrained.strip(),
            log_level=check_choice(get("VQBOT_LOG_LEVEL") or "INFO", LOG_LEVELS, what="VQBOT_LOG_LEVEL", upper=True),
        )

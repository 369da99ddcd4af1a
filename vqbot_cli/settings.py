"""Settings from the environment and ``.env`` (every key is documented in .env.example)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.catalog import default_model_dir
from jobspec.params import DEFAULT_CLIP, DEFAULT_CLIP_PRETRAINED, DEFAULT_VQGAN


def switched_on(value: str | None) -> bool:
    """An on/off setting that is on unless set to 0, false, no or off (any case); unset is on."""
    return (value or "1").strip().lower() not in ("0", "false", "no", "off")


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
    database: Path
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

    @classmethod
    def from_env(cls, env_file: Path | None = Path(".env")) -> Settings:
        """Read ``.env`` (if present; real environment variables win) and the environment."""
        if env_file is not None and env_file.is_file():
            from dotenv import load_dotenv

            load_dotenv(env_file, override=False)
        get = os.environ.get
        optional_path = lambda key: Path(get(key)).expanduser() if get(key) else None
        return cls(
            discord_token=SecretStr(get("DISCORD_TOKEN", "")),
            database=Path(get("VQBOT_DATABASE") or "data/vqbot.sqlite3").expanduser(),
            model_dir=default_model_dir(),
            device=get("VQBOT_DEVICE") or "auto",
            precision=get("VQBOT_PRECISION") or "auto",
            compile=get("VQBOT_COMPILE") or "auto",
            fused_kernels=switched_on(get("VQBOT_FUSED_KERNELS")),
            vqgan=get("VQBOT_VQGAN") or DEFAULT_VQGAN,
            vqgan_config=optional_path("VQBOT_VQGAN_CONFIG"),
            vqgan_checkpoint=optional_path("VQBOT_VQGAN_CHECKPOINT"),
            clip=get("VQBOT_CLIP") or DEFAULT_CLIP,
            clip_pretrained=get("VQBOT_CLIP_PRETRAINED", DEFAULT_CLIP_PRETRAINED),
            log_level=(get("VQBOT_LOG_LEVEL") or "INFO").upper(),
        )

"""How the bot behaves, as its operator sets it: cadences, caps and defaults (no secrets here).

Not to be confused with a server's settings (db.GuildSettings), which its admins change with
/config (bot.commands.server_settings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DISCORD_CDN_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")


@dataclass(frozen=True)
class BotConfig:
    """Everything the bot needs besides the store and the token.

    Times are seconds. Tests shorten or lengthen them; production uses the defaults.
    """

    data_dir: Path = Path("data")
    # progress and delivery
    edit_interval_s: float = 4.0  # at most one progress edit per card this often
    poll_interval_s: float = 2.0  # how often the delivery loop looks for changes it was not told about
    backoff_initial_s: float = 5.0  # first wait after a 429 or 5xx
    backoff_max_s: float = 300.0
    card_max_age_s: float = 3600.0  # a card older than this when its job starts is replaced
    upload_limit_bytes: int = 10 * 1024 * 1024
    # attachments
    attachment_hosts: tuple[str, ...] = DISCORD_CDN_HOSTS
    max_attachment_bytes: int = 8 * 1024 * 1024
    max_attachment_pixels: int = 16_000_000
    # job defaults
    default_steps: int = 300
    default_side: int = 512
    default_cutouts: int = 32
    models: tuple[str, ...] = ("vqgan_imagenet_f16_16384",)
    clip_model: str = "ViT-B-32-quickgelu"
    clip_pretrained: str = "openai"
    extra_params: dict[str, object] = field(default_factory=dict)

    @property
    def attachments_dir(self) -> Path:
        return self.data_dir / "attachments"

    @property
    def timelapse_dir(self) -> Path:
        return self.data_dir / "timelapses"

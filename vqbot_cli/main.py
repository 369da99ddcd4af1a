"""The ``vqbot`` command: wires settings, database, bot and engine together."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from vqbot_cli.settings import Settings

# Errors that are the user's to fix: printed as one line, exit status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError)


def _user_error_types() -> tuple[type[BaseException], ...]:
    """The error types modules raise for bad input or missing files (imported lazily: torch is slow)."""
    types: list[type[BaseException]] = list(USER_ERRORS)
    for module, names in (
        ("engine.vqgan", ("ModelLoadError",)),
        ("engine.download", ("DownloadError",)),
        ("engine.convert", ("ConvertError",)),
    ):
        if module in sys.modules:
            types.extend(getattr(sys.modules[module], n) for n in names)
    return tuple(types)


def build_parser() -> argparse.ArgumentParser:
    from vqbot_cli.db_commands import add_db_commands
    from vqbot_cli.imagine import add_imagine_command
    from vqbot_cli.models import add_models_command

    parser = argparse.ArgumentParser(prog="vqbot", description="VQGAN+CLIP pictures, on Discord and locally.")
    parser.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    sub = parser.add_subparsers(dest="command", required=True)
    add_imagine_command(sub)
    add_models_command(sub)
    add_db_commands(sub)
    try:
        from vqbot_cli.run import add_run_commands
    except ImportError:  # the bot is optional for local use
        pass
    else:
        add_run_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from pathlib import Path

    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings.from_env(Path(args.env_file))
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.root.handlers:  # open_clip logs chatty warnings straight to the root logger
        handler.addFilter(lambda record: record.name != "root" or record.levelno >= logging.ERROR)
    for noisy in ("httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args, settings) or 0)
    except KeyboardInterrupt:
        print("vqbot: interrupted", file=sys.stderr)
        return 130
    except _user_error_types() as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, KeyError):
            message = str(exc.args[0]) if exc.args else message
        print(f"vqbot: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

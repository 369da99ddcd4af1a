"""The ``vqbot`` command: wires settings, database, bot and engine together."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from vqbot_cli.errors import OutputError, error_line, shown
from vqbot_cli.settings import DEFAULT_ENV_FILE, Settings

# Errors that are the user's to fix: printed as one line, exit status 2. OSError: a path given that the
# system refuses (too long, no permission, a loop of links, a disk that fails), said with the path.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)
EXIT_USAGE = 2  # bad input or setup: nothing was done
EXIT_OUTPUT = 1  # the picture was made but not written where asked (the message says where it is)


def _user_error_types() -> tuple[type[BaseException], ...]:
    """The error types modules raise for bad input or missing files (imported lazily: torch is slow)."""
    types: list[type[BaseException]] = list(USER_ERRORS)
    for module, names in (
        ("engine.vqgan", ("ModelLoadError",)),
        ("engine.download", ("DownloadError",)),
        ("engine.convert", ("ConvertError",)),
        ("db.errors", ("StoreUnavailable",)),
    ):
        if module in sys.modules:
            types.extend(getattr(sys.modules[module], n) for n in names)
    return tuple(types)


class Parser(argparse.ArgumentParser):
    """argparse with one ``vqbot: error:`` line for bad arguments (not a usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(error_line(f"{message} (see `{self.prog} --help`)."), file=sys.stderr)
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    from vqbot_cli.db_commands import add_db_commands
    from vqbot_cli.doctor import add_doctor_command, version
    from vqbot_cli.imagine import add_imagine_command
    from vqbot_cli.models import add_models_command
    from vqbot_cli.presence import add_health_command

    parser = Parser(prog="vqbot", description="VQGAN+CLIP pictures, on Discord and locally.")
    parser.add_argument("--env-file", type=str, help=f"settings file (default: {DEFAULT_ENV_FILE} when it exists)")
    parser.add_argument("--version", action="version", version=f"vqbot {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_imagine_command(sub)
    add_models_command(sub)
    add_db_commands(sub)
    add_health_command(sub)
    add_doctor_command(sub)
    try:
        from vqbot_cli.run import add_run_commands
    except ImportError:  # the bot is optional for local use
        pass
    else:
        add_run_commands(sub)
    return parser


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{shown(exc.filename)}: {exc.strerror}."
    return str(exc).strip() or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    from pathlib import Path

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.env_file is not None and not args.env_file.strip():
            raise ValueError("--env-file needs a file name.")
        env_file = Path(args.env_file) if args.env_file is not None else DEFAULT_ENV_FILE
        settings = Settings.from_env(env_file, required=args.env_file is not None)
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        for handler in logging.root.handlers:  # open_clip logs chatty warnings straight to the root logger
            handler.addFilter(lambda record: record.name != "root" or record.levelno >= logging.ERROR)
        for noisy in ("httpx", "huggingface_hub"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        return int(args.func(args, settings) or 0)
    except KeyboardInterrupt:
        print("vqbot: interrupted", file=sys.stderr)
        return 130
    except OutputError as exc:
        print(error_line(str(exc)), file=sys.stderr)
        return EXIT_OUTPUT
    except _user_error_types() as exc:
        print(error_line(_message(exc)), file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

"""Where ``vqbot imagine`` writes its files: checked before the work starts, never lost after it.

``check_output`` refuses, before any model loads, an output that can't be written (a folder,
a device, a wrong suffix, a folder without write permission). ``write_outputs`` writes each
file atomically; should that still fail (the disk filled up, the folder went away), the file
goes to the temporary folder instead and ``OutputError`` says where it is.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from vqbot_cli.errors import OutputError, UsageError, shown, visible


def check_output(path: Path, suffixes: tuple[str, ...], *, what: str) -> None:
    """Refuse an output path that can't take the file (UsageError, one sentence)."""
    path = path.expanduser()
    if path.is_dir():
        raise UsageError(f"{what} {shown(path)} is a folder; give a file name such as {shown(path / ('out' + suffixes[0]))}.")
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"{what} must be a {' or '.join(suffixes)} file, not {shown(path.name)}.")
    if path.exists() and not path.is_file():
        raise UsageError(f"{what} {shown(path)} exists and is not a regular file; give another name.")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".vqbot-check-"):
            pass
    except OSError as exc:
        raise UsageError(f"{what} {shown(path)} can't be written: {shown(parent)} "
                         f"{'is not a folder' if isinstance(exc, (FileExistsError, NotADirectoryError)) else 'refuses new files'} "
                         f"({exc.strerror or exc}).") from None


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (through a temporary file beside it)."""
    target = Path(os.path.realpath(path.expanduser()))  # an existing symlink's target, not the link
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _save_elsewhere(data: bytes, suffix: str, seed: int) -> Path | None:
    for folder in (Path(tempfile.gettempdir()), Path.home()):
        try:
            fd, name = tempfile.mkstemp(dir=folder, prefix=f"vqbot-{seed}-", suffix=suffix)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return Path(name)
        except OSError:
            continue
    return None


def write_outputs(outputs: Sequence[tuple[Path, bytes]], *, seed: int) -> None:
    """Write every file; raise OutputError (after trying all) naming what failed and where it went instead."""
    problems = []
    for path, data in outputs:
        try:
            write_atomically(path, data)
        except OSError as exc:
            saved = _save_elsewhere(data, path.suffix, seed)
            reason = exc.strerror or str(exc)
            where = f"it is saved as {visible(str(saved))} instead" if saved else "and no other folder took it"
            problems.append(f"Could not write {visible(str(path))} ({reason}); {where}.")
    if problems:
        raise OutputError(" ".join(problems))

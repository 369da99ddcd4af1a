"""A database that can't be used stops `vqbot worker`, `run` and `sync` at once with one sentence, before any model loads.

The models are set up to fail too (a catalogue model that isn't downloaded, downloads off): an error
about the database shows that it was checked first, not after tens of seconds of loading.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.cli.vqbot_process import error_line, vqbot

MODELS_THAT_WOULD_FAIL = {"VQBOT_VQGAN": "wikiart_16384", "VQBOT_AUTO_DOWNLOAD": "0"}


def start(command: str, database: Path, tmp_path: Path, *, permissions_apply: bool = False) -> str:
    env = {**MODELS_THAT_WOULD_FAIL, "VQBOT_DATABASE": str(database), "DISCORD_TOKEN": "not.a.real.token"}
    return error_line(vqbot(command, cwd=tmp_path, env=env, permissions_apply=permissions_apply))


def test_a_folder_given_as_the_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    assert "is a folder; give the path of a database file in it" in start("worker", tmp_path / "data", tmp_path)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    notes = tmp_path / "notes.sqlite3"
    notes.write_text("shopping list: eggs, flour\n" * 100)
    assert "is not an SQLite database; choose another file for vqbot's database" in start("worker", notes, tmp_path)


def test_a_database_from_a_newer_vqbot_is_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite3"
    with sqlite3.connect(newer) as conn:
        conn.execute("CREATE TABLE from_the_future (x)")
        conn.execute("PRAGMA user_version = 999")
    assert "newer than this vqbot understands" in start("worker", newer, tmp_path)


def test_a_database_in_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        line = start("worker", folder / "vqbot.sqlite3", tmp_path, permissions_apply=True)
    finally:
        folder.chmod(0o755)
    assert "can't open or create the database" in line and "writable by the user that runs vqbot" in line


def test_a_read_only_database_file_is_refused(tmp_path: Path) -> None:
    database = tmp_path / "vqbot.sqlite3"
    sqlite3.connect(database).close()
    database.chmod(0o444)
    assert "vqbot.sqlite3" in start("worker", database, tmp_path, permissions_apply=True)


def test_a_database_under_a_file_instead_of_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file where the folder should be")
    assert "can't create the folder" in start("worker", tmp_path / "data" / "vqbot.sqlite3", tmp_path)


@pytest.mark.parametrize("command", ["run", "sync"])
def test_the_bot_commands_check_the_database_before_connecting(command: str, tmp_path: Path) -> None:
    notes = tmp_path / "notes.sqlite3"
    notes.write_text("not a database")
    assert "is not an SQLite database" in start(command, notes, tmp_path)

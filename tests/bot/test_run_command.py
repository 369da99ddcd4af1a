"""`vqbot run` says what is missing instead of printing a traceback."""

from __future__ import annotations

from vqbot_cli.main import main


def empty_env_file(folder):
    """A settings file with nothing in it (a missing --env-file is itself an error)."""
    path = folder / "empty.env"
    path.write_text("")
    return path


def test_run_without_a_token_says_where_to_put_it(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    assert main(["--env-file", str(empty_env_file(tmp_path)), "run"]) == 2
    err = capsys.readouterr().err
    assert "DISCORD_TOKEN is not set" in err and "Traceback" not in err


def test_run_without_weights_names_the_command_that_fetches_them(tmp_path, monkeypatch, capsys):
    env = tmp_path / ".env"
    env.write_text(f"DISCORD_TOKEN=abc.def.ghi\nVQBOT_MODEL_DIR={tmp_path / 'models'}\n"
                   f"VQBOT_DATABASE={tmp_path / 'db.sqlite3'}\nVQBOT_AUTO_DOWNLOAD=0\n")
    for key in ("DISCORD_TOKEN", "VQBOT_MODEL_DIR", "VQBOT_DATABASE", "VQBOT_VQGAN_CONFIG", "VQBOT_VQGAN_CHECKPOINT",
                "VQBOT_AUTO_DOWNLOAD"):
        monkeypatch.delenv(key, raising=False)
    assert main(["--env-file", str(env), "run"]) == 2
    err = capsys.readouterr().err
    assert "vqbot models download" in err and "abc.def.ghi" not in err


def test_worker_with_a_bad_batch_size_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VQBOT_MAX_BATCH", "lots")
    assert main(["--env-file", str(empty_env_file(tmp_path)), "worker"]) == 2
    assert "VQBOT_MAX_BATCH" in capsys.readouterr().err

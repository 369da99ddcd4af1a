"""`vqbot models list` shows each model's download size beside its state."""

from __future__ import annotations

from vqbot_cli.main import main


def test_models_list_shows_sizes(tmp_path, capsys) -> None:
    env = tmp_path / "empty.env"
    env.write_text("")
    assert main(["--env-file", str(env), "models", "list", "--model-dir", str(tmp_path / "models")]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert "1.0 GB" in rows["vqgan_imagenet_f16_16384"] and "not downloaded" in rows["vqgan_imagenet_f16_16384"]
    assert "0.4 GB" in rows["vqgan_gumbel_f8_8192"]

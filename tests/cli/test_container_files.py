"""The Dockerfile, .dockerignore and docker-compose.yml say what the README promises (no Docker engine
runs where vqbot is developed, so these are read, not built: README says what was tried)."""

from __future__ import annotations

import fnmatch
import re
import shlex

import yaml

from tests.cli.vqbot_process import REPO


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_the_image_runs_the_torch_the_tests_run_on() -> None:
    pinned = re.search(r"pip install .*(torch==\S+ torchvision==\S+)", (REPO / ".ci/run").read_text())
    assert pinned is not None
    runs = [rest for keyword, rest in instructions() if keyword == "RUN"]
    assert any(f"pip install {pinned.group(1)}" in rest for rest in runs), runs
    (base,) = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert base.startswith("python:3.11-")  # the Python the tests run on; the wheel brings CUDA


def test_the_volumes_belong_to_the_unprivileged_user_before_they_are_declared() -> None:
    steps = instructions()
    keywords = [keyword for keyword, _ in steps]
    volume = keywords.index("VOLUME")
    chown = next(i for i, (keyword, rest) in enumerate(steps) if keyword == "RUN" and "chown" in rest)
    assert chown < volume and "/models" in steps[chown][1] and "/data" in steps[chown][1]
    assert set(yaml.safe_load(steps[volume][1])) == {"/models", "/data"}
    user = keywords.index("USER")
    assert user > chown and steps[user][1] not in ("root", "0")


def test_the_healthcheck_asks_vqbot_health() -> None:
    (check,) = [rest for keyword, rest in instructions() if keyword == "HEALTHCHECK"]
    assert "--start-period=" in check
    assert check.split("CMD", 1)[1].strip() == '["vqbot", "health"]'


def ignored(path: str, patterns: list[str]) -> bool:
    verdict = False
    for pattern in patterns:
        negate, pattern = pattern.startswith("!"), pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.split("/")[0], pattern):
            verdict = not negate
    return verdict


def test_secrets_weights_data_and_caches_stay_out_of_the_build_but_the_code_goes_in() -> None:
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for path in (".env", ".env.local", ".git", "models", "data", ".whl", "__pycache__", ".pytest_cache",
                 ".mypy_cache", ".ruff_cache", "data/vqbot.sqlite3"):
        assert ignored(path, patterns), path
    copied = [source for keyword, rest in instructions() if keyword == "COPY" for source in shlex.split(rest)[:-1]]
    assert copied and all((REPO / source).exists() and not ignored(source, patterns) for source in copied), copied


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_has_postgres_and_a_more_workers_profile() -> None:
    services = compose()["services"]
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:") and "healthcheck" in postgres
    assert "ports" not in postgres  # reachable from the compose network only
    workers = services["workers"]
    assert workers["profiles"] == ["more-workers"] and workers["command"][:2] == ["worker", "--gpus"]
    for name in ("vqbot", "workers"):
        service = services[name]
        assert service["image"] == "vqbot:latest" and service["restart"] == "unless-stopped"
        # VQBOT_DATABASE from .env wins over the SQLite default, so the postgres profile can be used
        assert service["environment"]["VQBOT_DATABASE"] == "${VQBOT_DATABASE:-/data/vqbot.sqlite3}"
        assert {"./models:/models", "./data:/data"} <= set(service["volumes"])

"""``vqbot doctor``: what this machine and its settings are ready for, and what to do about the rest.

One plain line per finding, ``ok``, ``warn`` or ``FAIL``, each problem followed by a ``->`` line
that says what to do. Nothing is changed: no database is created or upgraded, nothing is
downloaded, Discord is only asked (with a bounded wait) who the token is.

Exit status: 0 when nothing FAILed (warnings, such as no GPU, are fine), 1 when something must be
fixed before ``vqbot run`` can work, 2 for bad settings (as every command).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from vqbot_cli.errors import visible
from vqbot_cli.settings import Settings

DISCORD_TIMEOUT_S = 5.0
DATABASE_TIMEOUT_S = 10.0
EXIT_READY, EXIT_PROBLEMS = 0, 1
CLIP_SIZES = {"ViT-B-32": 605_000_000, "ViT-B-16": 599_000_000, "ViT-L-14": 1_710_000_000}  # fp32 weights


@dataclass(frozen=True)
class Finding:
    level: str  # "ok", "warn", "FAIL" or "info"
    topic: str
    text: str
    fix: str = ""

    def lines(self) -> list[str]:
        out = [f"{self.level:<4} {self.topic:<9} {visible(self.text)}"]
        if self.fix:
            out.append(f"{'':<14} -> {visible(self.fix)}")
        return out


def version() -> str:
    """This vqbot's version: the installed package's, else the checkout's pyproject.toml."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("vqbot")
    except PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text())["project"]["version"]) + " (source checkout)"
        except (OSError, KeyError, ValueError):
            return "unknown"


def add_doctor_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("doctor", help="check this machine and .env: versions, GPU, models, database, Discord")
    p.add_argument("--offline", action="store_true", help="don't ask Discord about the token")
    p.set_defaults(func=doctor_command)


def doctor_command(args: argparse.Namespace, settings: Settings) -> int:
    findings: list[Finding] = []
    for check in (_versions, _gpu, _triton, _models, _database):
        findings.extend(check(settings))
    findings.extend(_discord(settings, offline=args.offline))
    for finding in findings:
        print("\n".join(finding.lines()))
    failed = sum(f.level == "FAIL" for f in findings)
    warned = sum(f.level == "warn" for f in findings)
    print(f"{failed} problem(s) to fix, {warned} warning(s)" if failed or warned else "everything looks ready")
    return EXIT_PROBLEMS if failed else EXIT_READY


# ---------------------------------------------------------------- the machine
def _versions(settings: Settings) -> list[Finding]:
    import torch

    cuda = torch.version.cuda or "none (a CPU-only build)"
    text = (f"vqbot {version()}, Python {platform.python_version()}, torch {torch.__version__} (CUDA {cuda}), "
            f"{platform.system()} {platform.machine()}")
    found = [Finding("info", "versions", text)]
    if not torch.__version__.startswith("2.14."):
        found.append(Finding("warn", "torch", f"torch {torch.__version__} is not the version vqbot is tested with "
                                              "(2.14.1)", "pip install torch==2.14.1 torchvision==0.29.1"))
    return found


def _gpu(settings: Settings) -> list[Finding]:
    import torch

    device = settings.device
    if not torch.cuda.is_available():
        fix = ("this torch has no CUDA: pip install torch==2.14.1 (the PyPI wheel carries CUDA 13.0)"
               if torch.version.cuda is None else
               "install the NVIDIA driver (580 or newer for CUDA 13.0); in Docker, start with --gpus all")
        level = "FAIL" if device.startswith("cuda") else "warn"
        return [Finding(level, "gpu", f"no CUDA GPU visible (VQBOT_DEVICE={device}): pictures are made on the "
                                      "CPU, minutes each", fix)]
    found = []
    for index in range(torch.cuda.device_count()):
        try:
            free, total = torch.cuda.mem_get_info(index)
            name = torch.cuda.get_device_name(index)
        except RuntimeError as exc:
            found.append(Finding("FAIL", "gpu", f"cuda:{index} can't be used ({str(exc).splitlines()[0]})",
                                 "check nvidia-smi; another process may hold the GPU in exclusive mode"))
            continue
        level = "ok" if free >= 4 << 30 else "warn"
        found.append(Finding(level, "gpu", f"cuda:{index} {name}: {free / 2**30:.1f} GiB free of {total / 2**30:.1f}",
                             "" if level == "ok" else "under 4 GiB free: other processes use this GPU (nvidia-smi)"))
    return found


def _triton(settings: Settings) -> list[Finding]:
    import torch

    if not torch.cuda.is_available():
        return [Finding("info", "triton", "not used without a CUDA GPU (torch.compile's GPU kernels need one)")]
    if shutil.which(os.environ.get("CC") or "gcc") is None and shutil.which("cc") is None:
        return [Finding("FAIL", "triton", "no C compiler: Triton builds its kernel launchers with one",
                        "install gcc (apt-get install gcc libc6-dev), or VQBOT_COMPILE=none")]
    problem = _probe_triton()
    if problem:
        return [Finding("FAIL", "triton", f"Triton can't build a kernel here: {problem}",
                        "VQBOT_COMPILE=none runs uncompiled (slower) until it is fixed")]
    return [Finding("ok", "triton", "builds and runs a kernel on cuda:0")]


TRITON_PROBE = """
import torch
add = torch.compile(lambda x: x * 2 + 1)
x = torch.arange(16, device="cuda", dtype=torch.float32)
assert torch.equal(add(x), x * 2 + 1), "the compiled kernel computed a wrong result"
"""
TRITON_TIMEOUT_S = 180.0


def _probe_triton() -> str:
    """'' when a tiny kernel compiles (Inductor, so Triton) and runs on cuda:0, else the first line of why not.
    In a child process with a time limit: a compiler that hangs must not hang the doctor."""
    import subprocess

    try:
        done = subprocess.run([sys.executable, "-c", TRITON_PROBE], capture_output=True, text=True,
                              timeout=TRITON_TIMEOUT_S, errors="replace")
    except subprocess.TimeoutExpired:
        return f"compiling a tiny kernel took over {TRITON_TIMEOUT_S:g} s"
    if done.returncode == 0:
        return ""
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else f"exit status {done.returncode}")[:200]


# ---------------------------------------------------------------- models
def _models(settings: Settings) -> list[Finding]:
    from vqbot_cli.model_plan import gigabytes, model_needs

    found = []
    if settings.vqgan_config or settings.vqgan_checkpoint:
        for key, path in (("VQBOT_VQGAN_CONFIG", settings.vqgan_config),
                          ("VQBOT_VQGAN_CHECKPOINT", settings.vqgan_checkpoint)):
            ok = path is not None and path.is_file()
            found.append(Finding("ok" if ok else "FAIL", "models", f"{key} {path}" + ("" if ok else " is missing"),
                                 "" if ok else f"fix {key} in .env"))
    else:
        models = tuple(m.strip() for m in (os.environ.get("VQBOT_MODELS") or settings.vqgan).split(",") if m.strip())
        auto = (os.environ.get("VQBOT_AUTO_DOWNLOAD") or "1").strip().lower() not in ("0", "false", "no", "off")
        try:
            needs = model_needs(settings, models)
        except ValueError as exc:
            return [Finding("FAIL", "models", f"VQBOT_MODELS: {exc}", "use names from `vqbot models list`")]
        for need in needs:
            if need.ready:
                found.append(Finding("ok", "models", f"{need.name} is in {settings.model_dir}"))
            else:
                found.append(Finding(
                    "info" if auto else "FAIL", "models",
                    f"{need.name} is not in {settings.model_dir}: "
                    + (f"the first vqbot run downloads it ({gigabytes(need.download_bytes)})" if auto else
                       f"{gigabytes(need.download_bytes)} to download, and VQBOT_AUTO_DOWNLOAD=0"),
                    "" if auto else f"vqbot models download {need.name}"))
        missing = sum(n.download_bytes for n in needs)
        free = _free_bytes(settings.model_dir)
        if missing and free is not None and free < missing * 1.1:
            found.append(Finding("FAIL", "disk", f"{gigabytes(free)} free for models in {settings.model_dir}, "
                                                 f"{gigabytes(missing)} needed", "free space, or set VQBOT_MODEL_DIR"))
    found.append(_clip(settings))
    return found


def _free_bytes(folder: Path) -> int | None:
    for candidate in (folder, *folder.resolve().parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return None


def _clip(settings: Settings) -> Finding:
    from vqbot_cli.model_plan import gigabytes

    name, tag = settings.clip, settings.clip_pretrained
    if name.startswith("local-dir:"):
        folder = Path(name[len("local-dir:"):]).expanduser()
        ok = (folder / "open_clip_config.json").is_file()
        return Finding("ok" if ok else "FAIL", "clip", f"{name}" + ("" if ok else ": no open_clip_config.json there"),
                       "" if ok else "VQBOT_CLIP=local-dir: names a folder with open_clip_config.json and weights")
    if tag and Path(tag).expanduser().is_file():
        return Finding("ok", "clip", f"{name} with the weights file {tag}")
    try:
        import open_clip
        from huggingface_hub import try_to_load_from_cache

        cfg = open_clip.get_pretrained_cfg(name, tag) if tag else {}
    except Exception as exc:  # noqa: BLE001 - open_clip's own complaint is the finding
        return Finding("FAIL", "clip", f"{name} {tag}: {str(exc).splitlines()[0] if str(exc) else exc!r}")
    if not cfg:
        return Finding("FAIL", "clip", f"open_clip has no weights {tag or '(no tag)'} for {name}",
                       "set VQBOT_CLIP_PRETRAINED (e.g. openai for ViT-B-32-quickgelu)")
    repo = str(cfg.get("hf_hub", "")).strip("/")
    cached = repo and any(isinstance(try_to_load_from_cache(repo, f), str)
                          for f in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))
    if cached:
        return Finding("ok", "clip", f"{name} {tag} is in the Hugging Face cache")
    size = next((s for prefix, s in CLIP_SIZES.items() if name.startswith(prefix)), None)
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip() not in ("", "0")
    text = f"{name} {tag} is not cached: downloaded on first use" + (f" ({gigabytes(size)})" if size else "")
    return Finding("FAIL" if offline else "info", "clip", text + (", but HF_HUB_OFFLINE is set" if offline else ""),
                   "unset HF_HUB_OFFLINE for the first start, or use a local-dir: model" if offline else "")


# ---------------------------------------------------------------- database and Discord
def _database(settings: Settings) -> list[Finding]:
    from db.errors import StoreError
    from db.inspection import inspect_database

    try:
        report = asyncio.run(asyncio.wait_for(inspect_database(settings.database_spec), DATABASE_TIMEOUT_S))
    except (StoreError, ValueError, OSError) as exc:
        return [Finding("FAIL", "database", str(exc), "fix VQBOT_DATABASE, or the server it names")]
    except TimeoutError:
        return [Finding("FAIL", "database", f"no answer within {DATABASE_TIMEOUT_S:g} s from {report_where(settings)}",
                        "check that the server runs and the address in VQBOT_DATABASE")]
    if not report.exists:
        return [Finding("ok", "database", f"{report.where} does not exist yet; the first vqbot run creates it")]
    jobs = ", ".join(f"{n} {state}" for state, n in sorted(report.jobs.items())) or "no jobs"
    text = f"{report.backend} {report.where}, schema {report.schema} of {report.latest}: {jobs}"
    if report.schema > report.latest:
        return [Finding("FAIL", "database", text + " (made by a newer vqbot)", "upgrade vqbot")]
    if report.schema < report.latest:
        return [Finding("ok", "database", text + "; upgraded at the next start")]
    return [Finding("ok", "database", text)]


def report_where(settings: Settings) -> str:
    from db.open import backend_of

    if backend_of(settings.database_spec) == "postgres":
        from db.postgres.connection import where

        return where(settings.database_spec)
    return str(settings.database)


def _discord(settings: Settings, *, offline: bool) -> list[Finding]:
    from vqbot_cli.discord_check import DiscordUnreachable, check_discord

    if not settings.discord_token:
        return [Finding("FAIL", "discord", "DISCORD_TOKEN is not set (vqbot imagine works without it)",
                        "put the bot token in .env; docs/discord.md says where to find it")]
    if offline:
        return [Finding("info", "discord", "token set; not checked (--offline)")]
    try:
        me = asyncio.run(check_discord(settings.discord_token.get_secret_value(), timeout_s=DISCORD_TIMEOUT_S,
                                       guilds=True))
    except DiscordUnreachable as exc:
        sentence, _, fix = str(exc).partition("; ")
        return [Finding("FAIL", "discord", sentence, fix)]
    guilds = me.guilds or ()
    shown = ", ".join(guilds[:10]) + (f" and {len(guilds) - 10} more" if len(guilds) > 10 else "")
    found = [Finding("ok", "discord", f"token of {me.bot_name} (application {me.application_name}, "
                                      f"id {me.application_id})")]
    found.append(Finding("ok" if guilds else "warn", "discord",
                         f"in {len(guilds)} server(s)" + (f": {shown}" if guilds else ""),
                         "" if guilds else "invite the bot (docs/discord.md), then vqbot sync"))
    return found

